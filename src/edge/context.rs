//! One context per event: the bindings, the settings (parsed once per isolate), the route
//! matrix and the lane-mode rule. Handlers take an `&Edge` and never reach into `Env` themselves.

use std::cell::{Cell, RefCell};
use std::sync::OnceLock;

use worker::{Date, Env, Queue};

use super::config;
use super::flags::{Flag, Flags};
use super::memo;
use super::store::Store;
use crate::core::alerts::{AlertConfig, Message};
use crate::core::lifecycle::{self, KvMode};
use crate::core::rules::Matrix;

const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// How long raw bodies are kept unless an open order still needs them.
const DEFAULT_RETENTION_DAYS: i64 = 30;
/// How long a consumer waits before retrying a message after a storage or KV error.
const INFRA_RETRY_SECS: u32 = 30;

/// Every var the edge reads, parsed once per event.
pub struct Settings {
    pub fulfilment_url: Option<String>,
    pub fulfilment_secret: Option<String>,
    pub timeout_ms: u64,
    /// Multiplies every retry delay; 1 in production. Local test stacks shrink it.
    pub delay_scale: f64,
    /// Local stacks only: `POST /admin/faults`.
    pub allow_faults: bool,
    /// How long routing reuses a lane mode read from KV (`MODE_CACHE_MS`, at most 60 s).
    pub mode_cache_ms: i64,
    /// The key of the email hash (`EMAIL_HASH_KEY`, else derived from the webhook secret).
    pub email_key: Vec<u8>,
    /// How long raw bodies are kept (`BODY_RETENTION_DAYS`, default 30).
    pub body_retention_ms: i64,
    /// `ALERT_URL`, `ALERT_FORMAT`, `CONSOLE_ORIGIN` and the alert thresholds.
    pub alerts: AlertConfig,
    /// Local stacks only (`ALLOW_CLOCK_OVERRIDE=1`): a scheduled run's time stands for "now"
    /// where the cron measures ages, and admin evaluations accept a `now`.
    pub allow_clock_override: bool,
    /// The Shopify Admin API: credentials and limits.
    pub shopify: ShopifySettings,
}

/// The Admin API client's configuration (secrets `SHOPIFY_ADMIN_TOKENS`, `SHOPIFY_CLIENT_ID`).
pub struct ShopifySettings {
    /// Static tokens per shop (admin-created custom apps).
    pub tokens: Vec<(String, String)>,
    /// The client-credentials grant (Dev Dashboard apps): client id and secret.
    pub client: Option<(String, String)>,
    /// `SHOPIFY_ADMIN_ORIGIN`: replaces `https://<shop>` (local stacks and tests only).
    pub origin: Option<String>,
    pub timeout_ms: u64,
    /// How far back the first reconciliation of a shop looks.
    pub lookback_ms: i64,
    /// Pages of orders listed per shop and run.
    pub max_pages: u32,
    /// No delivery from a shop for this long raises an alert.
    pub quiet_ms: i64,
    /// Why the credentials could not be read, when they could not.
    pub problem: Option<String>,
}

impl ShopifySettings {
    fn from_env(env: &Env) -> ShopifySettings {
        let num = |name: &str, default: f64, max: f64| {
            config::text(env, name)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0 && *v <= max)
                .unwrap_or(default)
        };
        let (tokens, problem) = match crate::core::shopify::parse_admin_tokens(
            &config::text(env, "SHOPIFY_ADMIN_TOKENS").unwrap_or_default(),
        ) {
            Ok(t) => (t, None),
            Err(e) => (Vec::new(), Some(format!("SHOPIFY_ADMIN_TOKENS: {e}"))),
        };
        let client = config::text(env, "SHOPIFY_CLIENT_ID").zip(config::text(env, "SHOPIFY_WEBHOOK_SECRET"));
        ShopifySettings {
            tokens,
            client,
            origin: config::text(env, "SHOPIFY_ADMIN_ORIGIN").map(|o| o.trim_end_matches('/').to_string()),
            timeout_ms: num("SHOPIFY_TIMEOUT_MS", 10_000.0, 60_000.0) as u64,
            lookback_ms: (num("RECONCILE_LOOKBACK_HOURS", 24.0, 24.0 * 60.0) * 3_600_000.0) as i64,
            max_pages: num("RECONCILE_MAX_PAGES", 4.0, 20.0) as u32,
            quiet_ms: (num("SHOPIFY_QUIET_MINUTES", 240.0, 7.0 * 24.0 * 60.0) * 60_000.0) as i64,
            problem,
        }
    }

    /// Whether orderlane can call the Admin API for `shop` (and so mirrors its holds).
    pub fn enabled_for(&self, shop: &str) -> bool {
        self.client.is_some() || self.tokens.iter().any(|(s, _)| s == shop)
    }
}

impl Settings {
    pub fn from_env(env: &Env) -> Settings {
        Settings {
            fulfilment_url: config::text(env, "FULFILMENT_URL"),
            fulfilment_secret: config::text(env, "FULFILMENT_SECRET"),
            timeout_ms: config::text(env, "FULFILMENT_TIMEOUT_MS")
                .and_then(|v| v.parse().ok())
                .filter(|v| *v > 0)
                .unwrap_or(DEFAULT_TIMEOUT_MS),
            delay_scale: config::text(env, "RETRY_DELAY_SCALE")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| *v > 0.0 && *v <= 1.0)
                .unwrap_or(1.0),
            allow_faults: config::text(env, "ALLOW_FAULTS").as_deref() == Some("1"),
            mode_cache_ms: config::text(env, "MODE_CACHE_MS")
                .and_then(|v| v.parse::<i64>().ok())
                .filter(|v| (0..=lifecycle::KV_PROPAGATION_MS).contains(v))
                .unwrap_or(memo::MODE_CACHE_MS),
            body_retention_ms: config::text(env, "BODY_RETENTION_DAYS")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|d| d.is_finite() && *d >= 0.0 && *d <= 3650.0)
                .map(|d| (d * 86_400_000.0) as i64)
                .unwrap_or(DEFAULT_RETENTION_DAYS * 86_400_000),
            alerts: AlertConfig::from_vars(|name| config::text(env, name)),
            allow_clock_override: config::text(env, "ALLOW_CLOCK_OVERRIDE").as_deref() == Some("1"),
            shopify: ShopifySettings::from_env(env),
            email_key: crate::core::order::email_hash_key(
                config::text(env, "EMAIL_HASH_KEY").as_deref(),
                &config::text(env, "SHOPIFY_WEBHOOK_SECRET").unwrap_or_default(),
            ),
        }
    }

    /// How long an attempt may hold an order: room for the POST to start, the POST, and the
    /// D1 writes that record it.
    pub fn lease_ms(&self) -> i64 {
        lifecycle::POST_START_MS + self.timeout_ms as i64 + 20_000
    }

    /// The delay before a message is retried after a storage or KV error (scaled locally).
    pub fn infra_retry_secs(&self) -> u32 {
        ((f64::from(INFRA_RETRY_SECS) * self.delay_scale).round() as u32).max(1)
    }
}

pub struct Edge {
    pub store: Store,
    pub flags: Option<Flags>,
    pub queue: Option<Queue>,
    pub settings: &'static Settings,
    /// KV reads this event made (reported with D1's round trips in `Server-Timing`).
    pub kv_reads: Cell<u32>,
    /// Alert messages raised during this event, sent once it is done (`wait_until`).
    alerts_out: RefCell<Vec<Message>>,
}

impl Edge {
    /// `None` when the D1 binding is missing (nothing can be done without it).
    pub fn new(env: &Env) -> Option<Edge> {
        let db = env.d1(config::DB).ok()?;
        Some(Edge {
            store: Store::new(db),
            flags: env.kv(config::FLAGS).ok().map(Flags::new),
            queue: env.queue(config::FULFILMENT_QUEUE).ok(),
            settings: settings(env),
            kv_reads: Cell::new(0),
            alerts_out: RefCell::new(Vec::new()),
        })
    }

    /// Keeps a queued alert message to send after the event's work.
    pub fn queue_alert(&self, m: Message) {
        self.alerts_out.borrow_mut().push(m);
    }

    pub fn has_queued_alerts(&self) -> bool {
        !self.alerts_out.borrow().is_empty()
    }

    /// The alert messages queued during this event.
    pub fn take_alerts(&self) -> Vec<Message> {
        std::mem::take(&mut *self.alerts_out.borrow_mut())
    }

    pub fn matrix(&self) -> Result<&'static Matrix, String> {
        matrix()
    }

    /// What KV says for a lane, read now. An error is an error: callers retry later, never guess.
    pub async fn kv_mode(&self, lane: &str) -> Result<KvMode, String> {
        if take(&KV_FAILURES) {
            return Err("injected KV failure".into());
        }
        let Some(flags) = self.flags.as_ref() else { return Err("FLAGS binding missing".into()) };
        self.kv_reads.set(self.kv_reads.get() + 1);
        let flag = flags.mode(lane).await?;
        memo::remember_mode(lane, flag.clone(), now_ms());
        Ok(kv_mode_of(lane, flag))
    }

    /// What KV said for a lane at most `mode_cache_ms` ago (routing's read: the send-time
    /// check reads [`Edge::kv_mode`]).
    pub async fn kv_mode_cached(&self, lane: &str) -> Result<KvMode, String> {
        match memo::mode(lane, now_ms(), self.settings.mode_cache_ms) {
            Some(flag) => Ok(kv_mode_of(lane, flag)),
            None => self.kv_mode(lane).await,
        }
    }
}

fn kv_mode_of(lane: &str, flag: Flag) -> KvMode {
    match flag {
        Flag::Set(m) => KvMode::Set(m),
        Flag::Unset => KvMode::Unset,
        Flag::Invalid(v) => {
            worker::console_error!("KV segment:{lane}:mode holds {v:?}, not a mode: treating as manual");
            KvMode::Invalid
        }
    }
}

/// The settings, parsed once per isolate: vars and secrets are fixed for an isolate's life
/// (a change is a new deployment, and new isolates).
pub fn settings(env: &Env) -> &'static Settings {
    SETTINGS.get_or_init(|| Settings::from_env(env))
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Whether holds of `shop`'s orders are mirrored into Shopify (the Admin API is configured
/// for it). The settings exist once any event has made an `Edge`.
pub fn mirrors_holds(shop: &str) -> bool {
    SETTINGS.get().is_some_and(|s| s.shopify.enabled_for(shop))
}

/// The compiled-in route matrix, validated once per isolate.
pub fn matrix() -> Result<&'static Matrix, String> {
    static M: OnceLock<Result<Matrix, String>> = OnceLock::new();
    M.get_or_init(|| Matrix::builtin().map_err(|e| e.to_string())).as_ref().map_err(Clone::clone)
}

pub fn now_ms() -> i64 {
    Date::now().as_millis() as i64
}

/// A draw in [0, 1) for jitter.
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

pub fn random_id() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

// Fault injection for local test stacks (`ALLOW_FAULTS=1`): the next N KV reads of this
// isolate fail, as a KV outage would. Workers isolates are single-threaded.
thread_local! {
    static KV_FAILURES: Cell<u32> = const { Cell::new(0) };
    static LEADER_DROPS: Cell<u32> = const { Cell::new(0) };
    static GROUP_FAILURES: Cell<u32> = const { Cell::new(0) };
}

/// Faults a test stack can inject into this isolate, as set by `POST /admin/faults`.
#[derive(Clone, Copy, Default, serde::Deserialize, serde::Serialize)]
pub struct Faults {
    /// The next N KV reads fail, as a KV outage would.
    #[serde(default)]
    pub kv_read_failures: u32,
    /// The next N leaders of a shared write batch drop out as a cancelled request would
    /// (`edge::group`): nothing written, no member answered, 503 to their own client.
    #[serde(default)]
    pub group_leader_drops: u32,
    /// The next N shared write batches carry a statement D1 refuses (a CHECK constraint),
    /// so the whole batch fails and each member writes alone.
    #[serde(default)]
    pub group_batch_failures: u32,
}

/// Sets the faults; answers what was left of the previous ones (0 when they all fired).
pub fn inject(f: Faults) -> Faults {
    let swap = |c: &'static std::thread::LocalKey<Cell<u32>>, n: u32| c.with(|c| c.replace(n));
    Faults {
        kv_read_failures: swap(&KV_FAILURES, f.kv_read_failures),
        group_leader_drops: swap(&LEADER_DROPS, f.group_leader_drops),
        group_batch_failures: swap(&GROUP_FAILURES, f.group_batch_failures),
    }
}

fn take(counter: &'static std::thread::LocalKey<Cell<u32>>) -> bool {
    counter.with(|c| {
        let left = c.get();
        if left > 0 {
            c.set(left - 1);
        }
        left > 0
    })
}

pub fn take_injected_leader_drop() -> bool {
    take(&LEADER_DROPS)
}

pub fn take_injected_group_failure() -> bool {
    take(&GROUP_FAILURES)
}
