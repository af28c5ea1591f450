#!/usr/bin/env python3
"""Side by side in one run: the JS peer, orderlane's webhook path and orderlane's /healthz (the
runtime floor), each under `wrangler dev` with fresh local state, driven by wrk (2 threads,
CONNS connections, SECS seconds) with a pool of distinct signed orders. Reports req/s, p50/p99
and CPU ms per request of the whole wrangler process session (node + workerd), alternating
ROUNDS times. Beside it, orderlane with every lane in `auto` and stock loaded: the orders are
routed ready, queued and POSTed by the fulfilment consumer to a local sink (its CPU counted
too). usage: compare.py CHECKOUT PEER_DIR [ROUNDS] [SECS] [CONNS]
Needs: wrk; the checkout built (its README build) and the peer's `npm install` done.
`make compare` does both and runs this from the project root."""
import http.server, json, os, signal, socket, subprocess, sys, tempfile, threading, time, urllib.request

HERE = os.path.dirname(os.path.realpath(__file__))
checkout, peer = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
secs = int(sys.argv[4]) if len(sys.argv) > 4 else 10
conns = int(sys.argv[5]) if len(sys.argv) > 5 else 16
HZ = os.sysconf("SC_CLK_TCK")
SECRET_OL, SECRET_PEER = "bench-secret-ol", "test_secret_key"


def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def session_ticks(sid):
    """CPU ticks of every process in the session, by role: wrangler's node process, the
    workerd that runs wrangler's own proxy and inspector proxy, the workerd that runs the
    Worker with its D1, KV and queues, and the rest (npm, esbuild)."""
    t = {"node": 0, "proxy": 0, "runtime": 0, "other": 0}
    for pid in os.listdir("/proc"):
        if not pid.isdigit(): continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
            f = stat.rsplit(")", 1)[1].split()
            comm = stat.split("(", 1)[1].rsplit(")", 1)[0]
            cmd = open(f"/proc/{pid}/cmdline").read()
        except Exception:
            continue
        if int(f[3]) != sid:  # field 6 (session) after the comm field
            continue
        role = ("runtime" if "--inspector-addr" in cmd else "proxy") if comm == "workerd" else \
            "node" if comm == "node" else "other"
        t[role] += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])  # utime stime cutime cstime
    return t


def env_for(cwd):
    env = dict(os.environ, CI="true", WRANGLER_SEND_METRICS="false", NO_COLOR="1", ORDERLANE_SKIP_BUILD="1")
    env["PATH"] = os.path.join(cwd, "node_modules", ".bin") + os.pathsep + os.path.expanduser("~/.cargo/bin") + os.pathsep + env["PATH"]
    return env


def start(cwd, db, vars_, p, setup=()):
    """`setup`: wrangler commands run against the fresh local state before the Worker starts."""
    state = tempfile.mkdtemp(prefix="bench-state-")
    env = env_for(cwd)
    subprocess.run(["npx", "wrangler", "d1", "migrations", "apply", db, "--local", "--persist-to", state],
                   cwd=cwd, env=env, capture_output=True, check=True)
    for cmd in setup:
        subprocess.run(["npx", "wrangler", *cmd, "--local", "--persist-to", state], cwd=cwd, env=env,
                       capture_output=True, check=True)
    args = ["npx", "wrangler", "dev", "--ip", "127.0.0.1", "--port", str(p), "--persist-to", state,
            "--show-interactive-dev-session=false"]
    for k, v in vars_.items(): args += ["--var", f"{k}:{v}"]
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=open(state + "/dev.log", "w"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    for _ in range(240):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{p}/healthz", timeout=3); break
        except urllib.error.HTTPError:
            break  # the peer answers 404 on /healthz: it is up
        except Exception:
            time.sleep(0.5)
    time.sleep(2)
    return proc, state


def stop(proc):
    try: os.killpg(proc.pid, signal.SIGTERM); proc.wait(15)
    except Exception:
        try: os.killpg(proc.pid, signal.SIGKILL)
        except Exception: pass


def drive(proc, url, pool=None):
    args = ["wrk", "-t2", f"-c{conns}", f"-d{secs}s"]
    env = dict(os.environ)
    if pool:
        args += ["-s", os.path.join(HERE, "shopify-pool.lua")]; env["POOL_FILE"] = pool
    t0 = session_ticks(proc.pid)
    out = subprocess.run(args + [url], capture_output=True, text=True, env=env).stdout
    t1 = session_ticks(proc.pid)
    ms = {k: (t1[k] - t0[k]) / HZ * 1000 for k in t0}
    reqs = int(next(l.split()[0] for l in out.splitlines() if "requests in" in l))
    res = next((l for l in out.splitlines() if l.startswith("RESULT")), "")
    if not pool:
        lat = next((l for l in out.splitlines() if l.strip().startswith("Latency")), "")
        res = f"rps={reqs / secs:.1f} (avg latency {lat.split()[1] if lat else '?'})"
    per = lambda v: v / max(reqs, 1)
    return (f"{res} requests={reqs} cpu_ms_per_req={per(sum(ms.values())):.3f}"
            f" (node {per(ms['node']):.2f}, proxy {per(ms['proxy']):.2f}, runtime {per(ms['runtime']):.2f})")


class Sink(http.server.BaseHTTPRequestHandler):
    """The warehouse: accepts every fulfilment request."""
    count = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        Sink.count += 1
        self.send_response(200); self.send_header("content-type", "application/json"); self.end_headers()
        self.wfile.write(b'{"status":"accepted"}')

    def log_message(self, *a):
        pass


def states(cwd, state):
    out = subprocess.run(["npx", "wrangler", "d1", "execute", "orderlane", "--local", "--persist-to", state, "--json",
                          "--command", "SELECT state, COUNT(*) AS n FROM orders GROUP BY state"],
                         cwd=cwd, env=env_for(cwd), capture_output=True, text=True).stdout
    try:
        return " ".join(f"{r['state']}={r['n']}" for r in json.loads(out)[0]["results"])
    except Exception:
        return "?"


pools = {}
for name, secret in (("ol", SECRET_OL), ("peer", SECRET_PEER)):
    pools[name] = tempfile.mktemp(prefix=f"pool-{name}-")
    subprocess.run([sys.executable, os.path.join(HERE, "pool.py"), secret, "6000", pools[name]], check=True)

sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
threading.Thread(target=sink.serve_forever, daemon=True).start()
OL_VARS = {"SHOPIFY_WEBHOOK_SECRET": SECRET_OL, "ADMIN_TOKENS": "bench:bench-token-123456",
           "FULFILMENT_SECRET": "x", "ALLOWED_SHOPS": "bench.myshopify.com", "FULFILMENT_URL": ""}
LANES = ["pos", "wholesale", "eu", "default"]
SKUS = ["CASE-LEATHER-PREM", "LENS-PROTECT-2YR", "SKU2006-001", "SKU2006-020", "SKU2006-035"]

for r in range(rounds):
    p = port(); proc, _ = start(peer, "peer", {}, p)
    try: print(f"round {r + 1} peer-js   webhook : {drive(proc, f'http://127.0.0.1:{p}/webhooks/shopify', pools['peer'])}", flush=True)
    finally: stop(proc)
    p = port()
    proc, state = start(checkout, "orderlane", OL_VARS, p)
    try:
        print(f"round {r + 1} orderlane healthz : {drive(proc, f'http://127.0.0.1:{p}/healthz')}", flush=True)
        print(f"round {r + 1} orderlane webhook : {drive(proc, f'http://127.0.0.1:{p}/webhooks/shopify', pools['ol'])}"
              f" [{states(checkout, state)}]", flush=True)
    finally: stop(proc)
    p = port()
    # Every lane in `auto` by the KV flag and the stock loaded in D1, as an operator can with
    # wrangler alone: the lane Worker runs by itself, as the peer does, with no admin API behind it.
    stock = ", ".join(f"('{s}', 10000000, 0, 'bench')" for s in SKUS)
    setup = [["kv", "key", "put", "--binding", "FLAGS", f"segment:{lane}:mode", "auto"] for lane in LANES] + \
        [["d1", "execute", "orderlane", "--command", f"INSERT INTO stock (sku, available, updated_ms, updated_by) VALUES {stock}"]]
    proc, state = start(checkout, "orderlane", dict(OL_VARS, FULFILMENT_URL=f"http://127.0.0.1:{sink.server_port}/fulfilments"), p,
                        setup)
    try:
        before = Sink.count
        line = drive(proc, f'http://127.0.0.1:{p}/webhooks/shopify', pools['ol'])
        print(f"round {r + 1} orderlane auto    : {line} sent_to_sink={Sink.count - before}"
              f" [{states(checkout, state)}]", flush=True)
    finally: stop(proc)
