//! Group commit: who writes a delivery's batch, and with whom.
//!
//! Each D1 call has a fixed cost (a round trip to the database's primary in production, a
//! hop through the local runtime here) whatever it carries. Deliveries that one isolate has
//! ready to write while another batch is in flight share the next batch: the first of them
//! *leads* (its request makes the call), the rest *join* (their statements ride in it). A
//! D1 batch is one transaction, so a shared batch is the members' batches run one after the
//! other, all or nothing: a guard that fails for one member (a duplicate, a lost race, stock
//! short) fails them all, and each member then writes its own batch alone, exactly as it
//! would have without company. Nothing here ever decides *what* is written.
//!
//! A delivery that finds nothing in flight writes at once (`Solo`): a quiet isolate adds no
//! latency. A leader waits for the batch in flight to finish (it is woken by it), at most
//! [`LEAD_WAIT_MS`], then [`GATHER_MS`] more for company unless its group is full (a commit
//! delay, as databases use: under load the deliveries that arrive meanwhile ride in the same
//! call, and it costs nothing when the isolate is quiet); a member waits for its leader's answer at most [`JOIN_WAIT_MS`], then
//! writes alone. A request can be cancelled (its client went away) while it leads, so no
//! other request ever depends on it for longer than those bounds: groups and batches that
//! outlive [`STALE_MS`] are forgotten.
//!
//! Requests of one isolate share this state; it lives in a thread-local at the edge.

/// Deliveries in one shared batch (each brings 6–15 statements and a body of ~11 KB: at most
/// ~250 statements and ~200 KB, inside D1's per-invocation and per-statement limits).
pub const MAX_MEMBERS: usize = 16;
/// How long a leader waits for the batch in flight before it writes anyway.
pub const LEAD_WAIT_MS: u32 = 250;
/// How long a leader woken by the batch before it still gathers (see the module comment).
pub const GATHER_MS: u32 = 4;
/// How long a member waits for its leader's answer before it writes alone.
pub const JOIN_WAIT_MS: u32 = 2_000;
/// A group still open, or a batch still in flight, after this long is presumed abandoned.
pub const STALE_MS: i64 = 1_000;

/// What a delivery ready to write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Write now, alone ([`Groups::finish`] when done).
    Solo,
    /// Open group `id`: wait to be woken (or [`LEAD_WAIT_MS`]), [`Groups::close`] it, write
    /// the whole group's batch, [`Groups::finish`], answer the members.
    Lead(u64),
    /// Ride in group `id`'s batch and wait for the answer. `wake`: the group is now full,
    /// so its leader should not wait for more.
    Join { id: u64, wake: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Open {
    id: u64,
    members: usize,
    since_ms: i64,
}

/// The isolate's open group and batches in flight.
#[derive(Debug, Default)]
pub struct Groups {
    open: Option<Open>,
    /// Batches being written: (group id, or 0 for a solo batch; started at).
    in_flight: Vec<(u64, i64)>,
    next: u64,
}

impl Groups {
    /// A delivery has its statements ready at `now_ms`.
    pub fn arrive(&mut self, now_ms: i64) -> Role {
        self.forget_stale(now_ms);
        if let Some(open) = self.open.as_mut() {
            if open.members < MAX_MEMBERS {
                open.members += 1;
                return Role::Join { id: open.id, wake: open.members == MAX_MEMBERS };
            }
        }
        // Nothing in flight: write at once. A full group not yet closed (its leader already
        // woken): write alone rather than wait behind it.
        if self.in_flight.is_empty() || self.open.is_some() {
            self.in_flight.push((0, now_ms));
            return Role::Solo;
        }
        self.next += 1;
        self.open = Some(Open { id: self.next, members: 1, since_ms: now_ms });
        Role::Lead(self.next)
    }

    /// Leader of `id` stops waiting and writes. Later arrivals start a new group.
    pub fn close(&mut self, id: u64, now_ms: i64) {
        if self.open.is_some_and(|o| o.id == id) {
            self.open = None;
        }
        self.in_flight.push((id, now_ms));
    }

    /// The batch of group `id` (0: a solo batch) is written or failed. Returns the open
    /// group whose leader should now stop waiting, if any.
    pub fn finish(&mut self, id: u64) -> Option<u64> {
        if let Some(i) = self.in_flight.iter().position(|(g, _)| *g == id) {
            self.in_flight.remove(i);
        }
        self.open.map(|o| o.id)
    }

    /// Batches in flight (for tests and the invariant checks).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The open group's id and size.
    pub fn open(&self) -> Option<(u64, usize)> {
        self.open.map(|o| (o.id, o.members))
    }

    /// True when group `id` is open and has room: its leader, woken, may gather a while.
    pub fn has_room(&self, id: u64) -> bool {
        self.open.is_some_and(|o| o.id == id && o.members < MAX_MEMBERS)
    }

    fn forget_stale(&mut self, now_ms: i64) {
        self.in_flight.retain(|(_, at)| now_ms - at < STALE_MS && now_ms >= *at);
        if self.open.is_some_and(|o| now_ms - o.since_ms >= STALE_MS || now_ms < o.since_ms) {
            self.open = None;
        }
    }
}

/// What a member does once its group's batch is answered: the number of deliveries the
/// batch wrote, 0 when it failed, `None` when no answer came in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Its statements are written, in a batch of this many deliveries.
    Written(u32),
    /// Write its own batch alone: the shared one failed or never answered. If the shared
    /// batch did commit after all, the member's unique delivery key fails the lone batch and
    /// the delivery is read as a duplicate: a delivery is never written twice.
    Alone,
}

pub fn after(answer: Option<u32>) -> After {
    match answer {
        Some(n) if n > 0 => After::Written(n),
        _ => After::Alone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_isolate_writes_at_once() {
        let mut g = Groups::default();
        assert_eq!(g.arrive(0), Role::Solo);
        assert_eq!(g.finish(0), None);
        assert_eq!(g.arrive(10), Role::Solo);
    }

    #[test]
    fn arrivals_behind_a_batch_in_flight_share_the_next() {
        let mut g = Groups::default();
        assert_eq!(g.arrive(0), Role::Solo);
        assert_eq!(g.arrive(1), Role::Lead(1));
        assert_eq!(g.arrive(2), Role::Join { id: 1, wake: false });
        assert_eq!(g.arrive(3), Role::Join { id: 1, wake: false });
        // The solo batch is written: the open group's leader is woken.
        assert_eq!(g.finish(0), Some(1));
        g.close(1, 4);
        assert_eq!(g.open(), None);
        // While group 1 is written, the next arrival opens group 2.
        assert_eq!(g.arrive(5), Role::Lead(2));
        assert_eq!(g.finish(1), Some(2));
    }

    #[test]
    fn a_full_group_wakes_its_leader_and_the_next_arrival_writes_alone() {
        let mut g = Groups::default();
        assert_eq!(g.arrive(0), Role::Solo);
        assert_eq!(g.arrive(0), Role::Lead(1));
        for i in 2..MAX_MEMBERS {
            assert_eq!(g.arrive(0), Role::Join { id: 1, wake: false }, "member {i}");
        }
        assert_eq!(g.arrive(0), Role::Join { id: 1, wake: true });
        assert_eq!(g.open(), Some((1, MAX_MEMBERS)));
        assert_eq!(g.arrive(0), Role::Solo);
    }

    #[test]
    fn an_abandoned_batch_or_group_holds_no_one_up_past_the_stale_bound() {
        let mut g = Groups::default();
        assert_eq!(g.arrive(0), Role::Solo); // its request is cancelled: never finishes
        assert_eq!(g.arrive(1), Role::Lead(1)); // cancelled too: never closes
        assert_eq!(g.arrive(2), Role::Join { id: 1, wake: false });
        assert_eq!(g.arrive(STALE_MS + 1), Role::Solo, "both forgotten: write at once");
        assert_eq!(g.in_flight(), 1);
    }

    #[test]
    fn a_member_writes_alone_unless_its_group_answered_written() {
        assert_eq!(after(Some(3)), After::Written(3));
        assert_eq!(after(Some(0)), After::Alone);
        assert_eq!(after(None), After::Alone);
    }
}

/// The protocol the edge follows (`edge::group`), run over random arrivals, batch durations,
/// guard failures (repeated delivery keys) and cancelled requests, against a model of D1 in
/// which a batch is one transaction that a repeated key fails. Checked: no group outgrows
/// [`MAX_MEMBERS`]; every request that is not cancelled finishes within a fixed bound and its
/// delivery is then written (by it or by an earlier copy); with no cancellation, no one ever
/// waits for a timer.
#[cfg(test)]
mod model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const MAX_BATCH_MS: i64 = 200;

    #[derive(Debug, Clone)]
    enum Step {
        Arrive { key: u8, dur: i64 },
        Pass(i64),
        Cancel { which: usize, commits: bool },
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Phase {
        Leading { id: u64, until: i64, woken: bool },
        Joined { id: u64, until: i64 },
        Writing,
        Done,
    }

    struct Req {
        key: u8,
        dur: i64,
        at: i64,
        phase: Phase,
        cancelled: Option<bool>,
        done_at: i64,
    }

    struct Batch {
        /// The group accounted in `Groups` (0: solo); `None`: a member writing alone.
        group: Option<u64>,
        members: Vec<usize>,
        done_at: i64,
    }

    #[derive(Default)]
    struct World {
        t: i64,
        g: Groups,
        reqs: Vec<Req>,
        batches: Vec<Batch>,
        gathering: BTreeMap<u64, Vec<usize>>,
        written: BTreeMap<u8, u32>,
        timers_fired: u32,
    }

    impl World {
        fn arrive(&mut self, key: u8, dur: i64) {
            let i = self.reqs.len();
            self.reqs.push(Req { key, dur, at: self.t, phase: Phase::Writing, cancelled: None, done_at: 0 });
            match self.g.arrive(self.t) {
                Role::Solo => self.start(Some(0), vec![i]),
                Role::Lead(id) => {
                    self.reqs[i].phase =
                        Phase::Leading { id, until: self.t + i64::from(LEAD_WAIT_MS), woken: false };
                    self.gathering.insert(id, vec![i]);
                }
                Role::Join { id, wake } => {
                    let Some(members) = self.gathering.get_mut(&id) else {
                        return self.start(None, vec![i]);
                    };
                    members.push(i);
                    assert!(members.len() <= MAX_MEMBERS, "group {id} has {} members", members.len());
                    let leader = members[0];
                    self.reqs[i].phase = Phase::Joined { id, until: self.t + i64::from(JOIN_WAIT_MS) };
                    if wake {
                        self.wake(leader, id);
                    }
                }
            }
        }

        /// The edge's leader, woken: it gathers [`GATHER_MS`] more while its group has room.
        fn wake(&mut self, leader: usize, id: u64) {
            if let Phase::Leading { id: led, woken: false, .. } = self.reqs[leader].phase {
                if led == id {
                    let gather = if self.g.has_room(id) { i64::from(GATHER_MS) } else { 0 };
                    self.reqs[leader].phase = Phase::Leading { id, until: self.t + gather, woken: true };
                }
            }
        }

        fn start(&mut self, group: Option<u64>, members: Vec<usize>) {
            let lead = members[0];
            self.reqs[lead].phase = Phase::Writing;
            let done_at = self.t + self.reqs[lead].dur;
            self.batches.push(Batch { group, members, done_at });
        }

        /// The next due event: (time, what).
        fn next(&self) -> Option<(i64, Event)> {
            let mut best: Option<(i64, Event)> = None;
            let mut consider = |at: i64, e: Event| {
                if best.as_ref().is_none_or(|(b, _)| at < *b) {
                    best = Some((at, e));
                }
            };
            for (i, r) in self.reqs.iter().enumerate() {
                if r.cancelled.is_some() {
                    continue;
                }
                match r.phase {
                    Phase::Leading { until, .. } | Phase::Joined { until, .. } => {
                        consider(until, Event::Timer(i))
                    }
                    _ => {}
                }
            }
            for (b, batch) in self.batches.iter().enumerate() {
                consider(batch.done_at, Event::Batch(b));
            }
            best
        }

        fn pass(&mut self, ms: i64) {
            let end = self.t + ms;
            while let Some((at, e)) = self.next().filter(|(at, _)| *at <= end) {
                self.t = self.t.max(at);
                match e {
                    Event::Timer(i) => self.timer(i),
                    Event::Batch(b) => self.complete(b),
                }
            }
            self.t = end;
        }

        fn timer(&mut self, i: usize) {
            match self.reqs[i].phase {
                Phase::Leading { id, woken, .. } => {
                    if !woken {
                        self.timers_fired += 1;
                    }
                    self.g.close(id, self.t);
                    let members = self.gathering.remove(&id).unwrap_or_else(|| vec![i]);
                    self.start(Some(id), members);
                }
                Phase::Joined { .. } => {
                    self.timers_fired += 1;
                    self.start(None, vec![i]);
                }
                _ => {}
            }
        }

        /// One transaction: a key already written, or twice in the batch, fails it whole.
        fn commit(&mut self, keys: &[u8]) -> bool {
            let mut seen = std::collections::BTreeSet::new();
            let ok = keys.iter().all(|k| !self.written.contains_key(k) && seen.insert(*k));
            if ok {
                for k in keys {
                    *self.written.entry(*k).or_default() += 1;
                }
            }
            ok
        }

        fn complete(&mut self, b: usize) {
            let batch = self.batches.remove(b);
            let lead = batch.members[0];
            let keys: Vec<u8> = batch.members.iter().map(|m| self.reqs[*m].key).collect();
            if let Some(commits) = self.reqs[lead].cancelled {
                // The leader's request is gone: the call may or may not have reached D1, and
                // nothing after it runs (no finish, no answers).
                if commits {
                    self.commit(&keys);
                }
                return;
            }
            let ok = self.commit(&keys);
            if let Some(g) = batch.group {
                if let Some(next) = self.g.finish(g) {
                    if let Some(leader) = self.gathering.get(&next).map(|m| m[0]) {
                        self.wake(leader, next);
                    }
                }
            }
            let shared = batch.members.len() > 1;
            for (n, m) in batch.members.iter().copied().enumerate() {
                let waiting = n == 0
                    || matches!(self.reqs[m].phase, Phase::Joined { id, .. } if Some(id) == batch.group);
                if !waiting || self.reqs[m].cancelled.is_some() {
                    continue;
                }
                if ok || !shared {
                    self.reqs[m].phase = Phase::Done;
                    self.reqs[m].done_at = self.t;
                } else {
                    self.start(None, vec![m]);
                }
            }
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Event {
        Timer(usize),
        Batch(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..12, 1i64..=MAX_BATCH_MS).prop_map(|(key, dur)| Step::Arrive { key, dur }),
            3 => (0i64..120).prop_map(Step::Pass),
            1 => (any::<usize>(), any::<bool>()).prop_map(|(which, commits)| Step::Cancel { which, commits }),
        ]
    }

    fn run(steps: &[Step], cancel: bool) -> World {
        let mut w = World::default();
        for s in steps {
            match *s {
                Step::Arrive { key, dur } => w.arrive(key, dur),
                Step::Pass(ms) => w.pass(ms),
                Step::Cancel { which, commits } if cancel => {
                    let live: Vec<usize> = (0..w.reqs.len())
                        .filter(|i| w.reqs[*i].phase != Phase::Done && w.reqs[*i].cancelled.is_none())
                        .collect();
                    if !live.is_empty() {
                        w.reqs[live[which % live.len()]].cancelled = Some(commits);
                    }
                }
                Step::Cancel { .. } => {}
            }
        }
        w.pass(60_000);
        w
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_live_delivery_is_written_once_within_the_bound(
            steps in proptest::collection::vec(step(), 1..80),
        ) {
            let w = run(&steps, true);
            let bound =
                i64::from(JOIN_WAIT_MS).max(i64::from(LEAD_WAIT_MS + GATHER_MS) + MAX_BATCH_MS) + MAX_BATCH_MS;
            for (i, r) in w.reqs.iter().enumerate() {
                prop_assert!(w.written.get(&r.key).copied().unwrap_or(0) <= 1);
                if r.cancelled.is_some() {
                    continue;
                }
                prop_assert_eq!(r.phase, Phase::Done, "request {} never finished", i);
                prop_assert!(r.done_at - r.at <= bound, "request {} took {} ms", i, r.done_at - r.at);
                prop_assert_eq!(w.written.get(&r.key).copied(), Some(1), "request {}'s delivery is not written", i);
            }
        }

        #[test]
        fn with_no_cancellation_no_one_waits_for_a_timer(
            steps in proptest::collection::vec(step(), 1..80),
        ) {
            let w = run(&steps, false);
            prop_assert_eq!(w.timers_fired, 0);
        }
    }

    #[test]
    fn a_burst_behind_a_batch_is_written_in_one_shared_batch() {
        let mut w = World::default();
        for key in 0..6 {
            w.arrive(key, 50);
        }
        assert_eq!(w.batches.len(), 1, "the first writes alone, the rest gather");
        w.pass(50);
        assert_eq!(w.batches.len(), 0, "the solo batch is written; the leader gathers a while longer");
        w.arrive(6, 50);
        w.pass(i64::from(GATHER_MS));
        assert_eq!(w.batches.len(), 1);
        assert_eq!(w.batches[0].members.len(), 6, "the late arrival rode along");
        w.pass(1_000);
        assert!(w.reqs.iter().all(|r| r.phase == Phase::Done));
        assert_eq!(w.timers_fired, 0);
    }
}
