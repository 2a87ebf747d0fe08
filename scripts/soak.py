#!/usr/bin/env python3
"""Soak: a local cluster under writes, crashes, pauses and a schema change.

    scripts/soak.py [--nodes 5] [--seconds 180] [--seed 1] [--method tree|gossip]
                    [--compress] [--port-base 28100] [--dir /tmp/patina-soak]

Starts N agents (build/patina) on 127.0.0.1 with the example schema and,
for --seconds, writes random transactions to random nodes: upserts,
updates, deletes, INSERT OR REPLACE and 1500-row bulk writes on overlapping
keys (conflicts on purpose), plus inserts of unique "ack" rows that nobody
deletes. Meanwhile it stops random nodes (SIGKILL, SIGTERM) and restarts them
1-20 s later, or freezes them with SIGSTOP for 2-10 s (a paused VM). At 40%
of the run node 1 gets a new table and column (schema files + `patina
reload`) and writes to them; at 70% every other node gets them (nodes that
are down pick them up when they start). Subscribers (a filter, a join and a
GROUP BY) follow the nodes, resume after restarts and re-subscribe when a
subscription is gone.

At the end every node runs again and the script waits (at most 180 s) until
every `patina sync digest` agrees, then checks that every acknowledged
"ack" row is on every node and that each subscriber's rows, built from its
events alone, equal the query's rows. Exit 0 when all of that holds, 1
otherwise. Loopback only; every agent it starts is stopped by its PID.

This found that a SIGSTOP longer than watchdog.stall_ms ended the node
(fixed in core/watchdog.cpp).
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "patina")
SCHEMA = os.path.join(ROOT, "tools", "example_schema.sql")
STATES = ["created", "started", "stopped", "destroyed"]
EXTRA_TABLE = "CREATE TABLE events (id INTEGER NOT NULL PRIMARY KEY, machine TEXT, kind TEXT NOT NULL DEFAULT '');\n"
SUB_QUERIES = [
    "SELECT id, state, cpus, region FROM machines WHERE app = 'web'",
    "SELECT m.id, m.state, s.port FROM machines m JOIN services s ON s.app = m.app WHERE m.id LIKE 'm1%'",
    "SELECT app, count(*) AS n, sum(cpus) AS c FROM machines GROUP BY app",
]


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


class Cluster:
    def __init__(self, args):
        self.args = args
        self.procs = {}
        self.migrated = set()

    def node_dir(self, n):
        return os.path.join(self.args.dir, f"node{n}")

    def api_port(self, n):
        return self.args.port_base + n

    def gossip_port(self, n):
        return self.args.port_base + 100 + n

    def configure(self, n):
        d = self.node_dir(n)
        os.makedirs(os.path.join(d, "schema"), exist_ok=True)
        shutil.copy(SCHEMA, os.path.join(d, "schema", "00-example.sql"))
        gossip = ""
        if self.args.method == "gossip":
            gossip += 'broadcast = "gossip"\n'
        if self.args.compress:
            gossip += "compression.enabled = true\n"
        boot = ", ".join(f'"127.0.0.1:{self.gossip_port(m)}"' for m in (1, 2))
        with open(os.path.join(d, "config.toml"), "w") as f:
            f.write(f"""[db]
path = "{d}/state.db"
schema_paths = ["{d}/schema"]
[api]
addr = "127.0.0.1:{self.api_port(n)}"
[gossip]
addr = "127.0.0.1:{self.gossip_port(n)}"
plaintext = true
bootstrap = [{boot}]
{gossip}
[admin]
path = "{d}/admin.sock"
[perf]
min_sync_backoff = 1
max_sync_backoff = 3
""")

    def start(self, n):
        out = open(os.path.join(self.node_dir(n), "agent.log"), "a")
        self.procs[n] = subprocess.Popen([BIN, "agent", "-c", os.path.join(self.node_dir(n), "config.toml")],
                                         stdout=out, stderr=subprocess.STDOUT)

    def stop(self, n, sig):
        p = self.procs.pop(n, None)
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            log(f"node{n} did not stop on {sig.name}; SIGKILL")
            p.kill()
            p.wait()

    def pause(self, n, seconds):
        p = self.procs.get(n)
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        p.send_signal(signal.SIGCONT)

    def stop_all(self):
        for n in list(self.procs):
            self.stop(n, signal.SIGTERM)

    def post(self, n, path, body, timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.api_port(n), timeout=timeout)
        try:
            c.request("POST", path, json.dumps(body), {"content-type": "application/json"})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def query(self, n, sql):
        _, data = self.post(n, "/v1/queries", sql, 30)
        rows = []
        for line in data.decode().splitlines():
            o = json.loads(line)
            if "row" in o:
                rows.append(o["row"][1])
            if "error" in o:
                raise RuntimeError(o["error"])
        return rows

    def digest(self, n):
        r = subprocess.run([BIN, "sync", "digest", "--admin-path", os.path.join(self.node_dir(n), "admin.sock")],
                           capture_output=True, text=True, timeout=30)
        try:
            return json.loads(r.stdout)["digest"]
        except (ValueError, KeyError):
            return ""

    def migrate(self, n):
        """The new table and column in node n's schema files, then `patina reload` if it runs."""
        d = os.path.join(self.node_dir(n), "schema")
        path = os.path.join(d, "00-example.sql")
        with open(path) as f:
            src = f.read()
        if "note TEXT" not in src:
            src = src.replace("updated_at INTEGER NOT NULL DEFAULT 0", "updated_at INTEGER NOT NULL DEFAULT 0,\n    note TEXT")
            with open(path, "w") as f:
                f.write(src)
            with open(os.path.join(d, "10-extra.sql"), "w") as f:
                f.write(EXTRA_TABLE)
        if n not in self.procs:
            self.migrated.add(n)  # applied when it starts
            return
        r = subprocess.run([BIN, "reload", "--admin-path", os.path.join(self.node_dir(n), "admin.sock")],
                           capture_output=True, text=True, timeout=60)
        log(f"migrate node{n}: exit {r.returncode} {r.stderr.strip()[:200]}")
        if r.returncode == 0:
            self.migrated.add(n)


class Observer(threading.Thread):
    """Follows one subscription; its rows come from the events alone."""

    def __init__(self, cluster, node, sql):
        super().__init__(daemon=True)
        self.cluster, self.node, self.sql = cluster, node, sql
        self.rows, self.sub_id, self.last = {}, None, 0
        self.fresh = self.resumes = 0
        self.gaps = []
        self.lock = threading.Lock()
        self.stopping = False

    def run(self):
        deadline = time.time() + 3600
        while not self.stopping and time.time() < deadline:
            try:
                self.stream()
            except (OSError, ValueError, http.client.HTTPException):
                pass
            time.sleep(0.3)

    def stream(self):
        c = http.client.HTTPConnection("127.0.0.1", self.cluster.api_port(self.node), timeout=5)
        if self.sub_id is None:
            c.request("POST", "/v1/subscriptions", json.dumps(self.sql), {"content-type": "application/json"})
        else:
            c.request("GET", f"/v1/subscriptions/{self.sub_id}?from={self.last}")
        r = c.getresponse()
        if r.status != 200:
            r.read()
            if r.status in (400, 404):  # gone (a crash discards subscriptions): start over
                with self.lock:
                    self.sub_id, self.rows, self.last = None, {}, 0
            return
        with self.lock:
            if self.sub_id is None:
                self.sub_id = r.getheader("corro-query-id")
                self.fresh += 1
            else:
                self.resumes += 1
        while not self.stopping:
            line = r.readline()
            if not line:
                return
            o = json.loads(line)
            with self.lock:
                if "row" in o:
                    self.rows[o["row"][0]] = o["row"][1]
                elif "eoq" in o:
                    self.last = o["eoq"].get("change_id") or self.last
                elif "change" in o:
                    kind, rowid, cells, change_id = o["change"]
                    if self.last and change_id != self.last + 1:
                        self.gaps.append((self.last, change_id))
                    self.last = change_id
                    if kind == "delete":
                        self.rows.pop(rowid, None)
                    else:
                        self.rows[rowid] = cells
                elif "error" in o:
                    # Shutting down, or dropped for lagging: resume from the last id.
                    return

    def snapshot(self):
        with self.lock:
            return sorted(json.dumps(v) for v in self.rows.values())


def random_tx(rng, n, cluster, acked):
    if rng.random() < 0.2:
        key = f"ack-{len(acked)}-{rng.randint(0, 10**9)}"
        return [["INSERT INTO machines (id, app, state) VALUES (?, 'ack', 'started')", [key]]], key
    if n in cluster.migrated and rng.random() < 0.3:
        return [["INSERT OR REPLACE INTO events (id, machine, kind) VALUES (?, ?, ?)",
                 [rng.randint(0, 500), f"m{rng.randint(0, 60)}", rng.choice(STATES)]],
                ["UPDATE machines SET note = ? WHERE id = ?", [f"n{rng.randint(0, 99)}", f"m{rng.randint(0, 60)}"]]], None
    stmts = []
    for _ in range(rng.randint(1, 4)):
        k = f"m{rng.randint(0, 60)}"
        op = rng.random()
        if op < 0.3:
            stmts.append(["INSERT INTO machines (id, app, region, state, cpus) VALUES (?, ?, ?, ?, ?) "
                          "ON CONFLICT(id) DO UPDATE SET state = excluded.state, cpus = excluded.cpus",
                          [k, rng.choice(["web", "db", "api"]), rng.choice(["ams", "iad", "syd"]), rng.choice(STATES),
                           rng.randint(1, 8)]])
        elif op < 0.5:
            stmts.append(["UPDATE machines SET state = ?, updated_at = ? WHERE id = ?",
                          [rng.choice(STATES), rng.randint(0, 10**9), k]])
        elif op < 0.62:
            stmts.append(["DELETE FROM machines WHERE id = ?", [k]])
        elif op < 0.72:
            stmts.append(["INSERT OR REPLACE INTO machines (id, app, state, address) VALUES (?, ?, ?, ?)",
                          [k, "web", rng.choice(STATES), f"10.0.0.{rng.randint(1, 250)}"]])
        elif op < 0.8:
            stmts.append(["UPDATE machines SET memory_mb = memory_mb + 1 WHERE app = ?", [rng.choice(["web", "db", "api"])]])
        elif op < 0.9:
            stmts.append(["INSERT INTO services (app, name, port) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET port = excluded.port",
                          [rng.choice(["web", "db"]), f"s{rng.randint(0, 9)}", rng.randint(1, 65535)]])
        elif op < 0.97:
            stmts.append(["DELETE FROM services WHERE app = ? AND name = ?", ["web", f"s{rng.randint(0, 9)}"]])
        else:
            base = rng.randint(0, 10**6)
            stmts.append([f"INSERT OR REPLACE INTO machines (id, app, state) SELECT 'bulk' || ((value + {base}) % 3000), "
                          "'bulk', 'started' FROM generate_series(1, 1500)", []])
    return stmts, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--method", choices=["tree", "gossip"], default="tree")
    ap.add_argument("--compress", action="store_true")
    ap.add_argument("--port-base", type=int, default=28100)
    ap.add_argument("--dir", default="/tmp/patina-soak")
    args = ap.parse_args()
    if not os.access(BIN, os.X_OK):
        sys.exit(f"soak: {BIN} is missing; build first (scripts/setup.sh)")
    rng = random.Random(args.seed)
    shutil.rmtree(args.dir, ignore_errors=True)
    cluster = Cluster(args)
    N = args.nodes
    observers = []
    failures = []
    try:
        for n in range(1, N + 1):
            cluster.configure(n)
            cluster.start(n)
        time.sleep(3)
        observers = [Observer(cluster, 1 + i % N, q) for i, q in enumerate(SUB_QUERIES)]
        observers += [Observer(cluster, N - i % N, q) for i, q in enumerate(SUB_QUERIES)]
        for o in observers:
            o.start()
        acked, ok, errors, stops, down = [], 0, 0, 0, {}
        t0 = time.time()
        next_fault = t0 + 8
        while time.time() - t0 < args.seconds:
            now = time.time()
            elapsed = now - t0
            for n, until in list(down.items()):
                if now >= until:
                    cluster.start(n)
                    del down[n]
                    log(f"{elapsed:6.1f}s restart node{n}")
            if now >= next_fault and len(down) < 2:
                n = rng.randint(1, N)
                if n not in down:
                    x = rng.random()
                    if x < 0.25:
                        secs = rng.uniform(2, 10)
                        log(f"{elapsed:6.1f}s pause node{n} for {secs:.1f}s")
                        cluster.pause(n, secs)
                    else:
                        sig = signal.SIGKILL if x < 0.8 else signal.SIGTERM
                        cluster.stop(n, sig)
                        down[n] = now + rng.uniform(1, 20)
                        stops += 1
                        log(f"{elapsed:6.1f}s stop node{n} with {sig.name}")
                next_fault = time.time() + rng.uniform(3, 12)
            if elapsed > args.seconds * 0.4 and 1 not in cluster.migrated and 1 not in down:
                cluster.migrate(1)
            if elapsed > args.seconds * 0.7:
                for m in range(2, N + 1):
                    if m not in cluster.migrated:
                        cluster.migrate(m)
            n = rng.randint(1, N)
            if n in down:
                continue
            tx, key = random_tx(rng, n, cluster, acked)
            try:
                status, body = cluster.post(n, "/v1/transactions", tx)
                if status == 200:
                    ok += 1
                    if key:
                        acked.append(key)
                else:
                    errors += 1
                    log(f"node{n} answered {status}: {body[:200]!r}")
            except (OSError, http.client.HTTPException):
                errors += 1  # the node went down under the request
            time.sleep(rng.uniform(0, 0.02))
        for n in list(down):
            cluster.start(n)
        for m in range(1, N + 1):
            if m not in cluster.migrated:
                cluster.migrate(m)
        log(f"load done: {ok} transactions acknowledged, {errors} failed, {stops} stops")

        deadline = time.time() + 180
        digests = {}
        while time.time() < deadline:
            time.sleep(3)
            digests = {n: cluster.digest(n) for n in range(1, N + 1)}
            if len(set(digests.values())) == 1 and all(digests.values()):
                break
        else:
            failures.append(f"digests never agreed: {digests}")
        if not failures:
            log(f"converged: digest {digests[1]}")
            time.sleep(3)  # subscribers take the last events
            for o in observers:
                truth = sorted(json.dumps(r) for r in cluster.query(o.node, o.sql))
                got = o.snapshot()
                verdict = "matches" if truth == got else "DIFFERS"
                log(f"subscriber node{o.node} [{o.sql[:40]}…]: {verdict} ({len(truth)} rows, {o.fresh} subscribed, "
                    f"{o.resumes} resumed, {len(o.gaps)} id gaps)")
                if truth != got:
                    failures.append(f"subscriber on node{o.node} differs from its query")
                if o.gaps:
                    failures.append(f"subscriber on node{o.node} saw change id gaps {o.gaps[:3]}")
            for n in range(1, N + 1):
                have = {r[0] for r in cluster.query(n, "SELECT id FROM machines WHERE app = 'ack'")}
                missing = [k for k in acked if k not in have]
                if missing:
                    failures.append(f"node{n} lacks {len(missing)} acknowledged rows, e.g. {missing[:3]}")
            log(f"{len(acked)} acknowledged ack rows checked on {N} nodes")
    finally:
        for o in observers:
            o.stopping = True
        cluster.stop_all()
    for f in failures:
        log(f"FAIL: {f}")
    log("soak passed" if not failures else "soak FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
