"""Ray's token authentication when joining a cluster by address (``rkl-bench run --address``).

Ray 2.60 turns token authentication on for ``ray start --head`` when the
machine has a token (``~/.ray/auth_token``; any local ``ray.init`` makes
one), and every process that talks to the cluster must then run with
``RAY_AUTH_MODE=token`` and the cluster's token. Ray enables that by itself
only for a local cluster it finds on its own (``address="auto"``), never for
an explicit address: a driver started the usual way fails with
``InvalidAuthToken``. Turning token mode on blindly is wrong too: a driver in
token mode on a cluster without authentication connects, but the cluster's
workers cannot call back into it and every trial dies.

So before ``ray.init`` the driver asks the cluster (:func:`cluster_needs_token`:
a GCS client in a short helper process, ``ray_auth_probe.py``, with token
mode off) and then:

* the cluster is open: nothing changes;
* it wants a token: the driver takes it where Ray looks, in Ray's order
  (``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` names,
  ``~/.ray/auth_token``), checks that the cluster accepts it (a second probe,
  token mode on) and sets ``RAY_AUTH_MODE=token`` for Ray and for every
  process it starts; no token, or one the cluster refuses, is one error line
  saying which;
* ``RAY_AUTH_MODE`` set by the user is respected as it is (``token`` with
  no token at hand is one error line).

The token is never printed or written anywhere by this module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rkl_bench.errors import RklBenchError
from rkl_bench.service.private_apis import reload_ray_auth_mode

AUTH_MODE_VAR = "RAY_AUTH_MODE"
TOKEN_VAR = "RAY_AUTH_TOKEN"
TOKEN_PATH_VAR = "RAY_AUTH_TOKEN_PATH"
PROBE_TIMEOUT_S = 20.0
TOKEN_HELP = (
    "give this driver the cluster's token: RAY_AUTH_TOKEN=<token>, RAY_AUTH_TOKEN_PATH=<file>, or the "
    "head's token in ~/.ray/auth_token (`ray get-auth-token` on the head prints it; docs/cluster.md)"
)


def default_token_file() -> Path:
    """Where Ray keeps a machine's token when no variable names another."""
    return Path.home() / ".ray" / "auth_token"


def token_source() -> str | None:
    """Where Ray would read the token from, in its own order (for messages); None when nowhere."""
    if os.environ.get(TOKEN_VAR, "").strip():
        return TOKEN_VAR
    named = os.environ.get(TOKEN_PATH_VAR)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise RklBenchError(f"{TOKEN_PATH_VAR}={named}: no such file; point it at the cluster's token file or unset it")
        return f"{TOKEN_PATH_VAR} ({path})"
    if default_token_file().is_file():
        return "~/.ray/auth_token"
    return None


def cluster_needs_token(address: str, token_mode: bool = False, timeout: float = PROBE_TIMEOUT_S) -> bool | None:
    """Whether the GCS at ``address`` refuses this process's credentials (token mode off, or on
    with the token Ray finds): True refused, False accepted, None no answer (left to ``ray.init``)."""
    from rkl_bench.service import ray_auth_probe

    env = {**os.environ, AUTH_MODE_VAR: "token" if token_mode else "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        done = subprocess.run([sys.executable, ray_auth_probe.__file__, address], env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (subprocess.TimeoutExpired, OSError):
        return None
    verdict = done.stdout.strip().splitlines()[-1:] or [""]
    return {"refused": True, "accepted": False}.get(verdict[0])


def prepare_token_auth(address: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Before ``ray.init(address=...)``: token mode on if and only if the cluster wants it (see the
    module doc). Returns where the token comes from, or None when the driver joins without one."""
    mode = os.environ.get(AUTH_MODE_VAR)
    if mode is not None:
        if mode.strip().lower() != "token":
            return None
        source = token_source()
        if source is None:
            raise RklBenchError(f"{AUTH_MODE_VAR}=token, but no token was found; {TOKEN_HELP}")
        return source
    if not cluster_needs_token(address, timeout=timeout):
        return None
    source = token_source()
    if source is None:
        raise RklBenchError(
            f"the Ray cluster at {address} uses token authentication and this driver has no token; {TOKEN_HELP}")
    if cluster_needs_token(address, token_mode=True, timeout=timeout):
        raise RklBenchError(
            f"the Ray cluster at {address} refused the token from {source}: it is not this cluster's; {TOKEN_HELP}")
    os.environ[AUTH_MODE_VAR] = "token"  # for Ray in this process and every process it starts
    reload_ray_auth_mode()  # Ray imported already (tests): it caches its config
    return source


def join_hint(source: str | None) -> str:
    """What a failed join's error line adds about the token."""
    if source is None:
        mode = os.environ.get(AUTH_MODE_VAR)
        return f" (this driver joined without a token{f', {AUTH_MODE_VAR}={mode}' if mode else ''})"
    return f" (this driver used the token from {source})"
