"""MuJoCo's warnings as Python warnings, each text once per process.

MuJoCo 4 warns on every compile of gymnasium's ``half_cheetah.xml``
("compiler attribute 'settotalmass' is deprecated ..."), straight to the
process's stderr. Every HalfCheetah env a forge make, an evaluation actor
or a data check creates printed it again: over 100 copies a minute in a
grid's log, burying Tune's progress table and real errors. Routed through
:mod:`warnings` (category :class:`MujocoWarning`), each distinct text is
shown once per process, and ``-W`` or ``warnings.filterwarnings`` can
silence or promote it like any other warning. Other MuJoCo warnings (a
simulation that blows up, a full contact buffer) take the same path and
are still shown, once per distinct text.
"""

from __future__ import annotations

import threading
import warnings

_lock = threading.Lock()
_installed = False
_seen: set[str] = set()


class MujocoWarning(UserWarning):
    """A warning MuJoCo's C library raised (``mju_warning``)."""


def _warn_once(message: str) -> None:
    text = str(message).strip()
    with _lock:
        if text in _seen:
            return
        _seen.add(text)
    warnings.warn(f"MuJoCo: {text}", MujocoWarning, stacklevel=2)


def route_mujoco_warnings() -> None:
    """Install the handler (idempotent; call before making MuJoCo envs)."""
    global _installed
    with _lock:
        if _installed:
            return
        import mujoco

        mujoco.set_mju_user_warning(_warn_once)
        _installed = True
