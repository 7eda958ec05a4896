"""Starting Ray (or joining a cluster) for one ``rkl-bench run``, loopback-only by default.

* No ``--address``: a new embedded local Ray (never one already running on
  the machine) with ``num_cpus`` = the machine's cores, the dashboard off, every Ray process on 127.0.0.1. Ray would
  otherwise advertise the machine's outward address (on Linux it resolves
  "127.0.0.1" to a routable IP so that other nodes could join), so the
  local mode turns that off with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``,
  which Ray reads when it is imported.
* ``--address``: join that cluster as a driver; its nodes and dashboard are
  its own business. The wait is bounded (``--connect-timeout``, default
  :data:`DEFAULT_CONNECT_TIMEOUT_S`): Ray 2.60 retries a GCS that does not
  answer for ~30 s per attempt, 20 attempts and more (over 7 minutes seen
  for ``127.0.0.1:1``). A ``host:port`` that refuses connections is reported
  at once (a plain TCP probe first); otherwise ``ray.init`` runs in a helper
  thread and the driver gives up at the deadline with one error line (the
  helper is a daemon thread, left to die with the process).
* Token authentication (Ray 2.60: ``ray start --head`` turns it on when a
  token exists, and ``ray.init`` makes one in ``~/.ray/auth_token``): before joining, the
  driver asks the cluster whether it wants a token and turns Ray's token
  mode on only then (``ray_auth.py``); a missing or refused token is one
  error line before ``ray.init``.
* Ray already initialised in this process (tests, notebooks): used as it is
  and left running.

A local Ray goes away with its driver even when the driver is SIGKILLed
(``ray_reaper.py``: a watcher process and an environment token).

Usage statistics are always off (``RAY_USAGE_STATS_ENABLED=0``): a benchmark
run must not talk to anything but its own cluster. Tune's warning about
frequent experiment-state snapshots is off too: every result row comes with
a checkpoint by design (a restarted trial must resume right after its last
row), and with ``checkpoints.keep`` set Tune snapshots on such checkpoints.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

from rkl_bench.errors import RklBenchError
from rkl_bench.service.ray_auth import PROBE_TIMEOUT_S, join_hint, prepare_token_auth
from rkl_bench.service.private_apis import RAY_WORKER_LOGGER, disable_imported_cluster_mode

LOOPBACK = "127.0.0.1"
DEFAULT_CONNECT_TIMEOUT_S = 60.0
_HOST_PORT = re.compile(r"^(?:ray://)?(?P<host>\[[^\]]+\]|[^:/\[\]]+):(?P<port>\d{1,5})$")
DASHBOARD_MODULES = ("aiohttp", "aiohttp_cors", "prometheus_client")
"""What Ray's dashboard needs beyond ``ray[tune]`` (they come with ``ray[default]``)."""


def configure_ray_environment(local: bool) -> None:
    """Set the environment Ray reads at import; call before the first ``import ray``.

    If Ray was imported already (a test session), the loopback switch is also
    set on the imported constants module, which Ray consults at every lookup.
    """
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not local:
        return
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    disable_imported_cluster_mode()


def check_dashboard_available() -> None:
    """The dashboard needs packages ``ray[tune]`` lacks; say so before Ray starts."""
    missing = [name for name in DASHBOARD_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise RklBenchError(
            f"--dashboard needs Ray's dashboard packages ({', '.join(missing)} missing); "
            "install ray[default] at the installed Ray version, or run without --dashboard"
        )


@contextlib.contextmanager
def ray_session(
    address: str | None = None,
    dashboard: bool = False,
    num_cpus: int | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> Iterator[None]:
    """Ray for the duration of the block (see the module docstring)."""
    configure_ray_environment(local=address is None)
    import ray

    if ray.is_initialized():
        yield
        return
    watcher = None
    if address is None:
        watcher = start_reaper()
        try:
            ray.init(
                # "local": always a new Ray of our own. Without it ray.init() joins
                # any Ray already running on the machine (another run, a test's
                # cluster) and refuses num_cpus.
                address="local",
                num_cpus=num_cpus or os.cpu_count() or 1,
                include_dashboard=dashboard,
                dashboard_host=LOOPBACK,
                _node_ip_address=LOOPBACK,
            )
        except BaseException:
            stop_reaper(watcher)
            raise
    else:
        join_cluster(address, connect_timeout)
    try:
        yield
    finally:
        try:
            ray.shutdown()
        finally:
            if watcher is not None:
                stop_reaper(watcher)


def check_cluster_gpus(gpus: float, config: object) -> None:
    """Refuse trials that ask for ``gpus`` (``resources.gpus``) of a cluster without GPUs.

    Tune would keep such trials pending for ever; this is one error line
    instead, before any trial starts. ``config`` names the spec in the message.
    """
    if gpus <= 0:
        return
    import ray

    resources = ray.cluster_resources()
    if resources.get("GPU", 0) > 0:
        return
    raise RklBenchError(
        f"{config}: resources.gpus is {gpus:g}, but the Ray cluster has no GPUs (only {resources.get('CPU', 0):g} CPUs); "
        "set resources.gpus: 0 to train on CPUs, or join a cluster with GPUs (--address)"
    )


def start_reaper() -> "subprocess.Popen[bytes] | None":
    """Mark the local Ray about to start with a token and start its watcher (``ray_reaper.py``):
    the Ray goes away with this process, even when it is SIGKILLed."""
    from rkl_bench.service import ray_reaper

    if not os.path.isdir("/proc"):
        return None
    token = secrets.token_hex(12)
    os.environ[ray_reaper.TOKEN_VAR] = token
    try:
        return subprocess.Popen(
            [sys.executable, ray_reaper.__file__, token, str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        )
    except OSError:
        os.environ.pop(ray_reaper.TOKEN_VAR, None)
        return None


def stop_reaper(watcher: "subprocess.Popen[bytes] | None") -> None:
    """After ``ray.shutdown``: let the watcher sweep up what is left of the Ray, and wait for it."""
    from rkl_bench.service import ray_reaper

    os.environ.pop(ray_reaper.TOKEN_VAR, None)  # later children of this process are not that Ray's
    if watcher is None:
        return
    if watcher.stdin is not None:
        watcher.stdin.close()
    try:
        watcher.wait(timeout=ray_reaper.GRACE_S + 10)
    except subprocess.TimeoutExpired:
        watcher.kill()
        watcher.wait()


def join_cluster(address: str, timeout: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
    """``ray.init(address=address)``, given up after ``timeout`` seconds with one error line."""
    deadline = time.monotonic() + timeout
    _probe(address, timeout)
    source = prepare_token_auth(address, max(1.0, min(PROBE_TIMEOUT_S, deadline - time.monotonic())))
    import ray

    outcome: dict[str, Any] = {}

    def connect() -> None:
        try:
            ray.init(address=address)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = exc
        else:
            outcome["ok"] = True

    # ray.init sets its SIGTERM handler only from the main thread: set the same one here.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
    worker_log = logging.getLogger(RAY_WORKER_LOGGER)
    quiet = _DropThreadWarning()
    worker_log.addFilter(quiet)
    helper = threading.Thread(target=connect, name="rkl-bench-ray-connect", daemon=True)
    try:
        helper.start()
        helper.join(max(0.0, deadline - time.monotonic()))
    finally:
        worker_log.removeFilter(quiet)
    if helper.is_alive():
        _ABANDONED.append(helper)
        raise RklBenchError(
            f"no Ray cluster answered at {address} within {timeout:g} s; check --address "
            "(the head's GCS address, e.g. 10.0.0.5:6379) or raise --connect-timeout"
        )
    error = outcome.get("error")
    if error is not None:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RklBenchError(f"cannot join the Ray cluster at {address} ({detail}){join_hint(source)}; check --address")


_ABANDONED: list[threading.Thread] = []
"""Connecting threads given up on (still inside Ray's client): see ``cli.entry``."""


def connect_abandoned() -> bool:
    """Whether a join was given up while its thread still runs (the process should not finalise around it)."""
    return any(thread.is_alive() for thread in _ABANDONED)


class _DropThreadWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def _probe(address: str, timeout: float) -> None:
    """A ``host:port`` address must accept a TCP connection (refusal is known at once)."""
    match = _HOST_PORT.match(address.strip())
    if match is None:
        return  # "auto" and other forms: Ray resolves them
    host, port = match["host"].strip("[]"), int(match["port"])
    try:
        with socket.create_connection((host, port), timeout=max(0.1, timeout)):
            pass
    except socket.timeout:
        raise RklBenchError(
            f"no Ray cluster answered at {address} within {timeout:g} s (nothing accepted a connection); "
            "check --address or raise --connect-timeout"
        ) from None
    except OSError as exc:
        raise RklBenchError(
            f"cannot join the Ray cluster at {address} ({exc.strerror or exc}); check --address "
            "(the head's GCS address, e.g. 10.0.0.5:6379) and that the cluster is up"
        ) from None
