"""The Ray cluster of a daemon: the head beside it, the nodes that join it (`cluster` extra).

outrider's scheduler and store stay in the daemon; Ray only carries attempts to the nodes
(`_executors._ray`). This module runs Ray's own processes, each as `ray start --block` in a
child process, so that stopping that one child (SIGTERM) stops everything it started and
nothing else (`ray stop` would stop every Ray process of the machine):

- `Head`: `ray start --head` beside the daemon (`outrider serve --cluster`);
- `Node`: `ray start --address` on another machine (`outrider worker --join`).

Where they listen: Ray rewrites a loopback `--node-ip-address` to the machine's first network
address and then listens on every interface; `main` (`python -m outrider._daemon._cluster
start …`) is Ray's own command line with that rewrite turned off, so a cluster bound to
127.0.0.1 stays on loopback, and one bound to a private address listens there.

Ray's processes die with the process that started them (the daemon, `outrider worker`): they
carry its `OUTRIDER_OWNER`, so its guardian stops them should it be killed.

Security: Ray's token authentication is always on. The token (32 random bytes, hex) is made
once in the data dir (`cluster.token`, 0600); Ray's processes get it in their environment,
never on a command line. Ray's own dashboard is off, and its usage reporting too.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .._paths import open_private, private_dir
from .._types._errors import UserError
from ..runners._procs import OWNER, OWNER_ENV

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "DEFAULT_PORT", "ClusterError", "Head", "Node", "cluster_env", "load_token", "main",
    "make_token", "ray_available",
]  # fmt: skip

DEFAULT_PORT = 6380
"""The head's port (Ray's GCS), unless `--port` says otherwise."""
SLOTS_RESOURCE = "outrider_slots"
"""The Ray resource a node offers outrider: its slots (attempts it runs at once)."""
_START_TIMEOUT = 120.0
"""Seconds Ray may take to start a head or a node (10-20 s is usual on a small machine)."""
_STARTED = b"Ray runtime started"


class ClusterError(UserError):
    """The cluster could not be started or joined; the message says why and what to do."""


def ray_available() -> str | None:
    """None if Ray can be used here, else why not (with the fix); Ray is not imported."""
    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed: install outrider with the `cluster` extra (outrider[cluster])"
    return None


def make_token(folder: Path) -> str:
    """The cluster's token in `folder/cluster.token`, made (0600) if there is none yet."""
    path = folder / "cluster.token"
    with contextlib.suppress(FileNotFoundError):
        return load_token(path)
    private_dir(folder)
    token = secrets.token_hex(32)
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with os.fdopen(fd, "w") as out:
        out.write(token)
    return token


def load_token(path: Path) -> str:
    """A token from a file (its first line)."""
    token = path.read_text().strip()
    if not token:
        raise ClusterError(f"The token file {path} is empty; give the head's token (--token)")
    return token


def cluster_env(token: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of this machine's Ray processes (the token; usage reports off).

    This process is named their owner, so its guardian stops them if it dies (`_procs`).
    """
    env = dict(os.environ if base is None else base)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0",
               RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")  # fmt: skip
    # A node's worker stops its tasks' processes itself (its guardian, `_executors._ray`);
    # Ray's own killing of a dead worker's children would kill that guardian first.
    env["RAY_kill_child_processes_on_worker_exit"] = "false"
    env[OWNER_ENV] = OWNER
    return env


def _temp_dir(address: str, role: str) -> str:
    """A short folder for a Ray process's sockets (a UNIX socket path has ~100 bytes)."""
    tag = hashlib.sha256(f"{os.getuid()}:{address}:{role}".encode()).hexdigest()[:10]
    return str(Path(tempfile.gettempdir()) / f"outrider-ray-{tag}")


@dataclass
class _RayProcess:
    """One `ray start --block` child and what it printed."""

    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: Ray stops what it started; SIGKILL after `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def alive(self) -> bool:
        """Whether Ray is still running."""
        return self.process.poll() is None


def _start(args: Sequence[str], token: str, log: Path, what: str) -> _RayProcess:
    """Run `ray start --block ARGS` (loopback kept) and wait until Ray says it runs."""
    private_dir(log.parent)
    fd = open_private(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "outrider._daemon._cluster", "start", "--block",
             "--disable-usage-stats", *args],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=cluster_env(token), start_new_session=True,
        )  # fmt: skip
    ray = _RayProcess(process, log)
    deadline = time.monotonic() + _START_TIMEOUT
    while _STARTED not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            ray.stop()
            said = log.read_text(errors="replace")
            if "InvalidAuthToken" in said:
                raise ClusterError(
                    f"{what} was refused: the token is not the head's; give the token "
                    "`outrider serve --cluster` printed (--token)"
                )
            tail = " / ".join(said.strip().splitlines()[-3:])
            raise ClusterError(f"{what} did not start: {tail} (its log: {log})")
        time.sleep(0.1)  # sleep-ok: Ray's start is read from its log as it writes it
    return ray


@dataclass
class Head:
    """The head of the cluster: Ray's control plane, beside the daemon; runs work too."""

    address: str
    """`host:port` nodes join and the daemon's driver connects to."""
    token: str
    ray: _RayProcess

    @classmethod
    def start(cls, folder: Path, *, bind: str, port: int = DEFAULT_PORT, slots: int = 0) -> Head:
        """Start a head listening on `bind`; its token is made in `folder` if it has none.

        Raises:
            ClusterError: Ray is missing or did not start (the message has its last words).
        """
        if (missing := ray_available()) is not None:
            raise ClusterError(missing)
        token = make_token(folder)
        address = f"{bind}:{port}"
        ray = _start(
            ["--head", "--node-ip-address", bind, "--port", str(port), "--include-dashboard",
             "false", "--num-cpus", "0", "--resources", f'{{"{SLOTS_RESOURCE}": {slots}}}',
             "--temp-dir", _temp_dir(address, "head")],
            token, folder / "cluster-head.log", f"The Ray head on {address}",
        )  # fmt: skip
        return cls(address, token, ray)

    def join_command(self) -> str:
        """What to run on another machine to add it to this cluster."""
        return f"outrider worker --join {self.address} --token {self.token}"

    def stop(self) -> None:
        """Stop the head (and whatever Ray started for it on this machine)."""
        self.ray.stop()


@dataclass
class Node:
    """A machine's node of a cluster (`outrider worker`): runs attempts the daemon sends."""

    address: str
    ray: _RayProcess

    @classmethod
    def join(
        cls,
        address: str,
        token: str,
        *,
        folder: Path,
        bind: str | None = None,
        slots: int | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Node:
        """Join the cluster whose head is at `address`.

        Args:
            address: The head's `host:port`.
            token: The head's token.
            folder: Where its log goes.
            bind: The address this node listens on (default: the head's host when it is a
                loopback address, else Ray's choice: the address that reaches the head).
            slots: Attempts it runs at once (default: its CPU count).
            labels: Labels a task can ask for (`gpu=a100`).

        Raises:
            ClusterError: Ray is missing, or the node did not start (wrong token, no head).
        """
        if (missing := ray_available()) is not None:
            raise ClusterError(missing)
        host = address.rsplit(":", 1)[0]
        bind = bind or (host if host.startswith("127.") or host == "localhost" else None)
        count = slots if slots is not None else (os.cpu_count() or 1)
        args = ["--address", address, "--resources", f'{{"{SLOTS_RESOURCE}": {count}}}',
                "--temp-dir", _temp_dir(address, f"node-{os.getpid()}")]  # fmt: skip
        if bind is not None:
            args += ["--node-ip-address", bind]
        if labels:
            args += ["--labels", ",".join(f"{k}={v}" for k, v in labels.items())]
        log = folder / f"cluster-node-{os.getpid()}.log"
        return cls(address, _start(args, token, log, f"The node joining {address}"))

    def stop(self) -> None:
        """Leave the cluster: stop this node's Ray processes (and the work they run)."""
        self.ray.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Ray's command line, a loopback `--node-ip-address` kept as given (see the module doc)."""
    from ray._private import services
    from ray.scripts.scripts import main as ray_main

    services.resolve_ip_for_localhost = lambda host: host
    sys.argv = ["ray", *(sys.argv[1:] if argv is None else argv)]
    try:
        ray_main()  # type: ignore[no-untyped-call]  # Ray's click command
    except SystemExit as done:
        return int(done.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
