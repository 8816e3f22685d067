"""Runs schemathesis against a fresh edge-host: every check, a fixed number of examples per
operation, a fixed seed and a time limit, so the run is bounded and repeatable.

Used by scripts/schemathesis (which makes the venv); needs the services' environment
(`eval "$(scripts/services env)"`: db_url, redis_url, jwt_signing_key...) and built
components. The host gets a key prefix of its own and rate limits high enough that the
generated requests are judged by the spec, not refused by the limiter (limits have their own
e2e tests); a registered user's access token is sent with every request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import edge_host  # noqa: E402

ROOT = edge_host.REPO_ROOT
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "20"))
TIME_LIMIT_S = int(os.environ.get("SCHEMATHESIS_TIME_LIMIT", "110"))
SEED = os.environ.get("SCHEMATHESIS_SEED", "13")


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def main() -> int:
    schemathesis = Path(sys.argv[1])
    suffix = f"{os.getpid()}{int(time.time())}"
    variables = {
        "redis_key_prefix": f"st{suffix}",
        "rate_limit_api": "100000/60",
        "rate_limit_login_address": "100000/60",
        "rate_limit_login_pair": "100000/60",
        "rate_limit_login_username": "100000/60",
        "rate_limit_register_address": "100000/60",
        "rate_limit_sweep_address": "100000/60",
        # The sweep route answers 503 without a token configured; with one, a missing or
        # wrong X-Sweep-Token is a 401, which is what the spec says.
        "jobs_sweep_token": f"sweep-{suffix}",
    }
    extra = [arg for name, value in variables.items() for arg in ("--variable", f"{name}={value}")]
    log = Path(tempfile.mkstemp(prefix="schemathesis-edge-host-", suffix=".log")[1])
    with edge_host.start(edge_host.require_binary(edge_host.default_binary()), ROOT / "spin.toml",
                         log_path=log, extra_args=extra) as host:
        user = {"username": f"st{suffix}"[:32], "email": f"st{suffix}@example.com",
                "password": "a fine schemathesis secret"}
        post_json(f"{host.url}/auth/register", user)
        # tests/schemathesis/hooks.py logs this user in for a fresh token (logout-all in the
        # run revokes the old ones).
        env = dict(os.environ, ST_BASE_URL=host.url, ST_USERNAME=user["username"],
                   ST_PASSWORD=user["password"], SCHEMATHESIS_HOOKS="hooks",
                   PYTHONPATH=str(ROOT / "tests" / "schemathesis"), PYTHONDONTWRITEBYTECODE="1")
        # Its replay cache (.schemathesis/) goes under .data, not into the work tree.
        work = ROOT / ".data" / "schemathesis"
        work.mkdir(parents=True, exist_ok=True)
        command = [str(schemathesis), "--config-file", str(ROOT / "tests/schemathesis/schemathesis.toml"),
                   "run", str(ROOT / "openapi.yaml"), "--url", host.url,
                   "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", SEED,
                   "--generation-deterministic", "--request-timeout", "10"]
        print(f"schemathesis: {MAX_EXAMPLES} examples per operation, seed {SEED}, "
              f"limit {TIME_LIMIT_S} s, against {host.url}", file=sys.stderr, flush=True)
        try:
            status = subprocess.run(command, cwd=work, env=env, timeout=TIME_LIMIT_S).returncode
        except subprocess.TimeoutExpired:
            print(f"schemathesis: error: did not finish within {TIME_LIMIT_S} s", file=sys.stderr)
            return 1
        if status != 0:
            print(f"schemathesis: edge-host log: {log}", file=sys.stderr)
        else:
            log.unlink(missing_ok=True)
        return status


if __name__ == "__main__":
    sys.exit(main())
