#!/usr/bin/env python3
"""Background-job throughput for scripts/bench (a benchmark, not a test).

Starts a mail sink on 127.0.0.1 (records the arrival time of every POST), an edge-host
(release) pointed at it, at a throwaway database and at a jobs channel of its own, and
measures three things, printing Markdown lines for BENCHMARKS.md:

1. end to end: N registrations (POST /auth/register, argon2id included) from C concurrent
   clients, until every welcome e-mail reached the sink: jobs/s, and the latency from the
   registration's commit (`created_at`) to the e-mail's arrival (p50/p99);
2. notifier only: M jobs inserted with SQL, their ids PUBLISHed in one pipeline: jobs/s;
3. sweep only: M jobs inserted with SQL, delivered by POST /internal/jobs/sweep: jobs/s.

scripts/bench imports `measure()`; run alone (`python3 scripts/lib/bench_jobs.py --help`) it
needs a migrated database of its own. edge-host is started through scripts/lib/edge_host.py
(its ready file, not its banner). Only the Python standard library, psql and redis-cli are
used. Everything is bounded by deadlines and listens on loopback.
"""

import argparse
import datetime
import http.server
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edge_host  # noqa: E402


class BenchError(Exception):
    """A measurement that cannot be trusted or could not be made; the message says which."""


class Sink:
    """A mail webhook that answers 200 and records (arrival time, recipient, key)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.received = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                if "chunked" in self.headers.get("transfer-encoding", ""):
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline().strip():
                                pass
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(int(self.headers.get("content-length", "0")))
                arrived = time.time()
                try:
                    to = json.loads(body).get("to", "")
                except ValueError:
                    to = ""
                with sink.lock:
                    sink.received.append((arrived, to, self.headers.get("idempotency-key")))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.origin = "http://127.0.0.1:%d" % self.server.server_address[1]

    def matching(self, prefix):
        with self.lock:
            return [r for r in self.received if r[1].startswith(prefix)]

    def wait_for(self, prefix, count, deadline_s):
        deadline = time.time() + deadline_s
        while time.time() < deadline:
            got = self.matching(prefix)
            if len(got) >= count:
                return got
            time.sleep(0.01)
        raise BenchError("only %d of %d e-mails (%s...) within %d s"
                         % (len(self.matching(prefix)), count, prefix, deadline_s))


def start_host(host_bin, db_url, sink, token, log_path, base_env=None):
    """edge-host serving spin.toml against `db_url`, mailing to `sink`, on a channel of its own;
    every other variable comes from `base_env` (default: this process's environment)."""
    env = dict(os.environ if base_env is None else base_env)
    run = "bench%d" % os.getpid()
    env.update({
        "SPIN_VARIABLE_DB_URL": db_url,
        "SPIN_VARIABLE_MAIL_WEBHOOK_URL": sink.origin + "/mail",
        "SPIN_VARIABLE_MAIL_WEBHOOK_ORIGIN": sink.origin,
        "SPIN_VARIABLE_JOBS_CHANNEL": run + "-jobs",
        "SPIN_VARIABLE_REDIS_KEY_PREFIX": run,
        "SPIN_VARIABLE_JOBS_SWEEP_TOKEN": token,
        "SPIN_VARIABLE_RATE_LIMIT_REGISTER_ADDRESS": "1000000/60",
    })
    try:
        host = edge_host.start(Path(host_bin), edge_host.REPO_ROOT / "spin.toml", cwd=edge_host.REPO_ROOT,
                               env=env, log_path=Path(log_path))
    except edge_host.EdgeHostError as err:
        raise BenchError(str(err)) from err
    return host, run + "-jobs"


def post(url, body=None, headers=None, want=200):
    """POST JSON; the decoded answer, or a BenchError naming the request and what came back."""
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, text = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read()
    if status != want:
        raise BenchError("POST %s answered %d, not %d: %s" % (url, status, want, text[:500].decode(errors="replace")))
    return json.loads(text or b"{}")


def parse_ts(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def insert_jobs(db_url, prefix, count):
    out = subprocess.run(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db_url, "-c",
         "INSERT INTO jobs (kind, payload) SELECT 'welcome_email', jsonb_build_object("
         "'to', '%s' || g || '@example.com', 'subject', 'Welcome', 'body', 'Hello') "
         "FROM generate_series(1, %d) g RETURNING id" % (prefix, count)],
        check=True, capture_output=True, text=True).stdout.split()
    if len(out) != count:
        raise BenchError("inserted %d jobs, psql returned %d ids" % (count, len(out)))
    return out


def measure(host_bin, db_url, redis_url, work, registrations=200, clients=8, jobs=2000, base_env=None):
    """The three measurements as a Markdown table (header included); `base_env` as in start_host."""
    sink = Sink()
    token = secrets.token_hex(32)
    host, channel = start_host(host_bin, db_url, sink, token, os.path.join(work, "jobs-host.log"), base_env)
    url = host.url
    lines = []
    try:
        # 1. End to end, registrations included.
        n, c = registrations, clients
        run = "reg%d" % os.getpid()

        def register(i):
            body = post(url + "/auth/register", {
                "username": "%s_%d" % (run, i),
                "email": "%s_%d@example.com" % (run, i),
                "password": "correct horse battery"}, want=201)
            return parse_ts(body["created_at"]), time.time()

        started = time.time()
        with ThreadPoolExecutor(max_workers=c) as pool:
            committed = list(pool.map(register, range(n)))
        registered = time.time()
        mails = sink.wait_for(run + "_", n, 180)
        last_mail = max(m[0] for m in mails)
        keys = {m[2] for m in mails}
        commit_of = {"%s_%d@example.com" % (run, i): committed[i][0] for i in range(n)}
        latencies = [(m[0] - commit_of[m[1]]) * 1000 for m in mails]
        lines.append(
            "| end to end: %d registrations, %d clients | %.1f jobs/s | registrations alone %.1f/s "
            "| commit to e-mail p50 %.0f ms, p99 %.0f ms | %d e-mails, %d distinct keys |"
            % (n, c, n / (last_mail - started), n / (registered - started),
               statistics.median(latencies), percentile(latencies, 99), len(mails), len(keys)))

        # 2. The notifier alone: jobs already committed, ids published in one pipeline.
        prefix = "pub%d_" % os.getpid()
        ids = insert_jobs(db_url, prefix, jobs)
        commands = "".join("PUBLISH %s %s\n" % (channel, i) for i in ids)
        started = time.time()
        subprocess.run(["redis-cli", "-u", redis_url], input=commands, check=True,
                       capture_output=True, text=True)
        mails = sink.wait_for(prefix, jobs, 180)
        elapsed = max(m[0] for m in mails) - started
        lines.append("| notifier: %d committed jobs, ids published at once | %.0f jobs/s | | | %d e-mails, %d distinct keys |"
                     % (jobs, jobs / elapsed, len(mails), len({m[2] for m in mails})))

        # 3. The sweep alone (one instance, jobs delivered one after another).
        prefix = "sweep%d_" % os.getpid()
        insert_jobs(db_url, prefix, jobs)
        started = time.time()
        delivered = 0
        while delivered < jobs and time.time() - started < 180:
            tally = post(url + "/internal/jobs/sweep", headers={"x-sweep-token": token})
            delivered += tally["delivered"]
        mails = sink.wait_for(prefix, jobs, 30)
        elapsed = max(m[0] for m in mails) - started
        lines.append("| sweep: %d committed jobs, POST /internal/jobs/sweep | %.0f jobs/s | | | %d e-mails |"
                     % (jobs, jobs / elapsed, len(mails)))
    finally:
        host.stop()
    return "\n".join(["| background jobs | throughput | | latency | check |", "|---|---:|---|---|---|"] + lines)


def main():
    parser = argparse.ArgumentParser(description="Background-job throughput (see the module's docstring).")
    parser.add_argument("--host-bin", required=True, help="edge-host binary (release for real figures)")
    parser.add_argument("--db-url", required=True, help="a migrated database of the run's own")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--work", required=True, help="directory for the host's log")
    parser.add_argument("--registrations", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    try:
        print(measure(args.host_bin, args.db_url, args.redis_url, args.work,
                      args.registrations, args.clients, args.jobs))
    except BenchError as err:
        sys.exit("bench_jobs: error: %s" % err)


if __name__ == "__main__":
    main()
