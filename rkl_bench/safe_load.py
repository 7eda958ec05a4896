"""Reading back torch files without ever running code from them.

Everything this package saves with ``torch.save`` (training checkpoints, SAC
state, actor weights, shipped agents) holds tensors, numbers, strings and
plain containers only, so it loads with ``torch.load(weights_only=True)``:
torch's restricted unpickler then refuses any other global, so a tampered
file (a pickle whose ``__reduce__`` calls ``os.system``) is an error and its
payload never runs. :func:`load_torch_file` is that load plus one clear
:class:`~rkl_bench.errors.RklBenchError` line. The line names the globals the
file asks for and never repeats torch's advice to retry with
``weights_only=False`` (which would run the payload).

``allow`` widens the allow-list by exact objects for one load; it is used for
SAC state files written before they held tensors only (numpy arrays:
``numpy._core.multiarray._reconstruct``, ``ndarray``, ``dtype`` and the
float64 dtype class, which build arrays from raw bytes and call nothing else).

This module sits below every layer (like ``errors``): the forge and the
training loop both use it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import torch

from rkl_bench.errors import RklBenchError


def numpy_array_globals() -> list[Any]:
    """The globals a pickled float64/int64 numpy array needs (nothing that calls code)."""
    import numpy as np

    return [np._core.multiarray._reconstruct, np.ndarray, np.dtype,
            np.dtypes.Float64DType, np.dtypes.Int64DType, np.dtypes.Float32DType]


def load_torch_file(path: str | Path, fix: str, allow: Sequence[Any] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; any failure is one error line ending in ``fix``."""
    path = Path(path)
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise RklBenchError(f"cannot read {path} ({exc.strerror or exc}); {fix}") from None
    return load_torch_bytes(payload, path, fix, allow)


def load_torch_bytes(payload: bytes, path: str | Path, fix: str, allow: Sequence[Any] = ()) -> Any:
    """:func:`load_torch_file` on bytes already read from ``path`` (named in the error)."""
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch raises several types; the message is ours
        unsafe = _unsafe_globals(payload)
        if unsafe:
            raise RklBenchError(
                f"{path} was not written by rkl_bench: it asks for code ({', '.join(unsafe[:4])}) "
                f"beyond tensors and plain data, so it was not loaded; {fix}"
            ) from None
        raise RklBenchError(f"{path} is not a readable torch file (truncated or another format); {fix}") from None


def _unsafe_globals(payload: bytes) -> list[str]:
    """The globals a torch file references beyond the weights-only allow-list (read from its opcodes, nothing run)."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(payload)))
    except Exception:  # noqa: BLE001 - not a torch zip at all
        return []
