"""Starting, stopping and asking edge-host, for every Python tool in the repository.

scripts/bench, scripts/lib/bench_jobs.py, k8s/validate_k8s.py and k8s/tests use this module
instead of each carrying its own copy. Two things it deliberately does not do:

* parse the `Serving http://...` banner: the host writes `--ready-file PATH` (JSON
  `{"url": ..., "pid": ...}`, renamed into place so it is never seen half-written) once it
  serves, and that file is the only signal used here;
* rank routes: `edge-host routes --json` answers with the host's own router, so tools
  cannot drift from what the host does.

Only the standard library is used, so the validator's venv and a bare python3 both import it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

# The repository this module belongs to (scripts/lib/edge_host.py -> the root).
REPO_ROOT = Path(__file__).resolve().parents[2]

# Longest wait for the ready file. A cold compile of every component by a debug host on a
# busy 2-core machine has taken tens of seconds; two minutes leaves room without hanging CI.
DEFAULT_START_TIMEOUT_S = 120.0


class EdgeHostError(Exception):
    """edge-host is missing, did not start, or answered something unexpected."""


def default_binary(profile: str = "debug") -> Path:
    """`$EDGE_HOST_BIN`, or target/<profile>/edge-host of this repository."""
    override = os.environ.get("EDGE_HOST_BIN")
    return Path(override) if override else REPO_ROOT / "target" / profile / "edge-host"


def require_binary(binary: Path) -> Path:
    """`binary` when it is an executable file, else an error that says how to build it."""
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    profile = "--release " if binary.parent.name == "release" else ""
    raise EdgeHostError(
        f"edge-host not found at {binary}: build it with `cargo build {profile}-p edge-host` "
        "(scripts/test does this before scripts/validate-k8s), or point EDGE_HOST_BIN at one")


@dataclass
class RunningHost:
    """An edge-host process that has written its ready file.

    `url` is None when the app has no HTTP routes (Redis triggers only). Use it as a
    context manager, or call `stop()`; either way the process is gone afterwards.
    """

    process: subprocess.Popen
    url: str | None
    pid: int
    log_path: Path
    started_at: float
    ready_at: float
    # The --metrics-listen address as a URL (`http://127.0.0.1:PORT`), None without the flag.
    metrics_url: str | None = None

    @property
    def startup_s(self) -> float:
        """Seconds from launch to the ready file."""
        return self.ready_at - self.started_at

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM (the host drains and exits), SIGKILL if it is still there after `grace_s`."""
        stop_process(self.process, grace_s)

    def __enter__(self) -> "RunningHost":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_process(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`; returns once the process is gone (any server the
    tools start, edge-host or not)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start(binary: Path, manifest: Path, *, log_path: Path, extra_args: Sequence[str] = (),
          env: Mapping[str, str] | None = None, cwd: Path | None = None,
          listen: str = "127.0.0.1:0", timeout_s: float = DEFAULT_START_TIMEOUT_S,
          poll_s: float = 0.01) -> RunningHost:
    """Starts `edge-host up -f manifest --listen listen --ready-file ...` and waits for it.

    The host's stdout and stderr go to `log_path`. Waiting polls the ready file every
    `poll_s` until `timeout_s`, and stops early (with the log's tail in the error) when the
    process exits first, so a host that cannot start fails in seconds, not at the deadline.
    """
    require_binary(binary)
    ready_dir = Path(tempfile.mkdtemp(prefix="edge-host-ready-"))
    ready_file = ready_dir / "ready.json"
    command = [str(binary), "up", "-f", str(manifest), "--listen", listen,
               "--ready-file", str(ready_file), *extra_args]
    log = open(log_path, "wb")
    started_at = time.monotonic()
    try:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=dict(env) if env is not None else None, cwd=cwd)
    finally:
        log.close()  # the child holds its own descriptor
    try:
        ready = _wait_for_ready_file(process, ready_file, log_path, started_at + timeout_s, poll_s)
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait()
        raise
    finally:
        # The file has served its purpose once read; a leftover `.tmp` from a host killed
        # mid-write goes with the directory.
        shutil.rmtree(ready_dir, ignore_errors=True)
    return RunningHost(process=process, url=ready["url"], pid=ready["pid"], log_path=log_path,
                       started_at=started_at, ready_at=time.monotonic(), metrics_url=ready.get("metrics_url"))


def _wait_for_ready_file(process: subprocess.Popen, ready_file: Path, log_path: Path,
                         deadline: float, poll_s: float) -> dict:
    while True:
        if ready_file.exists():
            try:
                ready = json.loads(ready_file.read_text())
            except ValueError as err:
                raise EdgeHostError(f"edge-host wrote a ready file that is not JSON ({err}): "
                                    f"{ready_file.read_text()!r}") from err
            if not isinstance(ready, dict) or "url" not in ready or "pid" not in ready:
                raise EdgeHostError(f"edge-host's ready file lacks url or pid: {ready!r}")
            return ready
        code = process.poll()
        if code is not None:
            raise EdgeHostError(f"edge-host exited with status {code} before it was ready; "
                                f"the end of its output ({log_path}):\n{_tail(log_path)}")
        if time.monotonic() >= deadline:
            raise EdgeHostError(f"edge-host was not ready within the deadline; the end of its "
                                f"output ({log_path}):\n{_tail(log_path)}")
        time.sleep(poll_s)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(cannot read {path}: {err})"


@dataclass(frozen=True)
class RouteMatch:
    """Where the host sends one request path; `route` and `component` are None for a 404."""

    path: str
    route: str | None
    component: str | None
    params: dict[str, str]
    path_info: str | None


def _routes_json(binary: Path, manifest: Path, paths: Sequence[str]) -> list[dict]:
    require_binary(binary)
    command = [str(binary), "routes", "-f", str(manifest), "--json", *paths]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise EdgeHostError(f"`edge-host routes -f {manifest}` failed: {result.stderr.strip()}")
    try:
        return json.loads(result.stdout)
    except ValueError as err:
        raise EdgeHostError(f"`edge-host routes --json` printed something that is not JSON: {err}") from err


def route_table(binary: Path, manifest: Path) -> list[tuple[str, str]]:
    """The manifest's public HTTP routes as (route, component), in the host's matching order."""
    return [(row["route"], row["component"]) for row in _routes_json(binary, manifest, [])]


def resolve_paths(binary: Path, manifest: Path, paths: Sequence[str]) -> dict[str, RouteMatch]:
    """Which route and component the host picks for each request path (one host call)."""
    if not paths:
        return {}
    return {row["path"]: RouteMatch(row["path"], row["route"], row["component"], row["params"], row["path_info"])
            for row in _routes_json(binary, manifest, list(paths))}
