"""The local Ray of one ``rkl-bench run`` goes away with its driver, however the driver ends.

Ray ties its GCS, raylet and monitors to the driver that started them (they
die with it, even on SIGKILL), but not the raylet's own children: a SIGKILLed
driver leaves ``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` running
(and ignoring SIGTERM), measured with Ray 2.60.

So before a local Ray starts, the driver puts a token no other process has in
its environment (``RKL_BENCH_RAY_TOKEN``); every Ray process inherits it. It
then starts this module as a small watcher in its own session, holding the
read end of a pipe whose write end only the driver has. When the driver ends
(normal exit, exception, SIGKILL) the pipe closes, and the watcher sends
SIGTERM, then SIGKILL after :data:`GRACE_S`, to every process whose
environment carries the token: exactly the processes of that Ray, never
another Ray on the machine. It ignores SIGINT, so Ctrl-C in the terminal
reaches the driver (which shuts Ray down itself) and not the watcher.

Linux only (it reads ``/proc``); elsewhere it does nothing, and after a
SIGKILLed driver ``ray stop`` cleans up (``docs/security.md``).

Run as ``python ray_reaper.py TOKEN DRIVER_PID`` (the driver is never
signalled); standard library only, so it costs a few megabytes.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

TOKEN_VAR = "RKL_BENCH_RAY_TOKEN"
GRACE_S = 3.0


def processes_with_token(token: str, spare: tuple[int, ...] = ()) -> list[int]:
    """PIDs (not this one, nor ``spare``) whose environment holds ``RKL_BENCH_RAY_TOKEN=token``."""
    needle = f"{TOKEN_VAR}={token}".encode()
    skip = {os.getpid(), *spare}
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def reap(token: str, spare: tuple[int, ...] = (), grace: float = GRACE_S) -> list[int]:
    """SIGTERM, then SIGKILL after ``grace`` seconds, every process carrying ``token``
    (but ``spare``: the driver); returns the PIDs signalled."""
    pids = processes_with_token(token, spare)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    for pid in processes_with_token(token, spare):
        _signal(pid, signal.SIGKILL)
    return pids


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    token = argv[1]
    spare = tuple(int(pid) for pid in argv[2:])
    try:
        while sys.stdin.buffer.read(4096):
            pass  # the driver never writes; EOF means it is gone
    except OSError:
        pass
    reap(token, spare)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
