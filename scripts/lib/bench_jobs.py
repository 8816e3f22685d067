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

Only the Python standard library, psql and redis-cli are used. Everything is bounded by
deadlines and listens on loopback.
"""

import argparse
import datetime
import http.server
import json
import os
import queue
import secrets
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor


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
        sys.exit("bench_jobs: only %d of %d e-mails (%s...) within %d s"
                 % (len(self.matching(prefix)), count, prefix, deadline_s))


def start_host(args, sink, token, log_path):
    env = dict(os.environ)
    run = "bench%d" % os.getpid()
    env.update({
        "SPIN_VARIABLE_DB_URL": args.db_url,
        "SPIN_VARIABLE_MAIL_WEBHOOK_URL": sink.origin + "/mail",
        "SPIN_VARIABLE_MAIL_WEBHOOK_ORIGIN": sink.origin,
        "SPIN_VARIABLE_JOBS_CHANNEL": run + "-jobs",
        "SPIN_VARIABLE_REDIS_KEY_PREFIX": run,
        "SPIN_VARIABLE_JOBS_SWEEP_TOKEN": token,
        "SPIN_VARIABLE_RATE_LIMIT_REGISTER_ADDRESS": "1000000/60",
    })
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [args.host_bin, "up", "-f", "spin.toml", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    serving = queue.Queue()

    def copy_output():
        for line in proc.stdout:
            log.write(line)
            if "Serving http://" in line:
                serving.put(line.split("Serving ", 1)[1].split()[0])
        serving.put(None)

    threading.Thread(target=copy_output, daemon=True).start()
    try:
        url = serving.get(timeout=120)
    except queue.Empty:
        url = None
    if url is None:
        proc.kill()
        sys.exit("bench_jobs: edge-host did not start (log: %s)" % log_path)
    return proc, url, run + "-jobs"


def post(url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, json.loads(resp.read() or b"{}")


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
    assert len(out) == count, out[:3]
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host-bin", required=True)
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--registrations", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()

    sink = Sink()
    token = secrets.token_hex(32)
    host, url, channel = start_host(args, sink, token, os.path.join(args.work, "jobs-host.log"))
    lines = []
    try:
        # 1. End to end, registrations included.
        n, c = args.registrations, args.clients
        run = "reg%d" % os.getpid()

        def register(i):
            status, body = post(url + "/auth/register", {
                "username": "%s_%d" % (run, i),
                "email": "%s_%d@example.com" % (run, i),
                "password": "correct horse battery"})
            assert status == 201, (status, body)
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
        ids = insert_jobs(args.db_url, prefix, args.jobs)
        commands = "".join("PUBLISH %s %s\n" % (channel, i) for i in ids)
        started = time.time()
        subprocess.run(["redis-cli", "-u", args.redis_url], input=commands, check=True,
                       capture_output=True, text=True)
        mails = sink.wait_for(prefix, args.jobs, 180)
        elapsed = max(m[0] for m in mails) - started
        lines.append("| notifier: %d committed jobs, ids published at once | %.0f jobs/s | | | %d e-mails, %d distinct keys |"
                     % (args.jobs, args.jobs / elapsed, len(mails), len({m[2] for m in mails})))

        # 3. The sweep alone (one instance, jobs delivered one after another).
        prefix = "sweep%d_" % os.getpid()
        insert_jobs(args.db_url, prefix, args.jobs)
        started = time.time()
        delivered = 0
        while delivered < args.jobs and time.time() - started < 180:
            status, tally = post(url + "/internal/jobs/sweep", headers={"x-sweep-token": token})
            assert status == 200, (status, tally)
            delivered += tally["delivered"]
        mails = sink.wait_for(prefix, args.jobs, 30)
        elapsed = max(m[0] for m in mails) - started
        lines.append("| sweep: %d committed jobs, POST /internal/jobs/sweep | %.0f jobs/s | | | %d e-mails |"
                     % (args.jobs, args.jobs / elapsed, len(mails)))
    finally:
        host.kill()
        host.wait()
    print("| background jobs | throughput | | latency | check |")
    print("|---|---:|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
