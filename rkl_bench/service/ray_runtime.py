"""Starting Ray (or joining a cluster) for one ``rkl-bench run``, loopback-only by default.

* No ``--address``: a new embedded local Ray (never one already running on
  the machine) with ``num_cpus`` = the machine's cores, the dashboard off, every Ray process on 127.0.0.1. Ray would
  otherwise advertise the machine's outward address (on Linux it resolves
  "127.0.0.1" to a routable IP so that other nodes could join), so the
  local mode turns that off with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``,
  which Ray reads when it is imported.
* ``--address``: join that cluster as a driver; its nodes and dashboard are
  its own business.
* Ray already initialised in this process (tests, notebooks): used as it is
  and left running.

Usage statistics are always off (``RAY_USAGE_STATS_ENABLED=0``): a benchmark
run must not talk to anything but its own cluster. Tune's warning about
frequent experiment-state snapshots is off too: every result row comes with
a checkpoint by design (a restarted trial must resume right after its last
row), and with ``checkpoints.keep`` set Tune snapshots on such checkpoints.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from typing import Iterator

from rkl_bench.errors import RklBenchError

LOOPBACK = "127.0.0.1"
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
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


def check_dashboard_available() -> None:
    """The dashboard needs packages ``ray[tune]`` lacks; say so before Ray starts."""
    missing = [name for name in DASHBOARD_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise RklBenchError(
            f"--dashboard needs Ray's dashboard packages ({', '.join(missing)} missing); "
            "install ray[default] at the installed Ray version, or run without --dashboard"
        )


@contextlib.contextmanager
def ray_session(address: str | None = None, dashboard: bool = False, num_cpus: int | None = None) -> Iterator[None]:
    """Ray for the duration of the block (see the module docstring)."""
    configure_ray_environment(local=address is None)
    import ray

    if ray.is_initialized():
        yield
        return
    if address is None:
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
    else:
        try:
            ray.init(address=address)
        except ConnectionError as exc:
            raise RklBenchError(f"cannot join the Ray cluster at {address} ({exc}); check --address") from None
    try:
        yield
    finally:
        ray.shutdown()
