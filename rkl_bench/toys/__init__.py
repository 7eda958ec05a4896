"""The paper's toy experiments, runnable as ``rkl-bench toy fig2|fig3``.

* ``fig2`` (:mod:`rkl_bench.toys.fig2`): which action each BC regulariser
  picks on a state whose dataset actions have two modes (Fig. 2, Section III-C).
* ``fig3`` (:mod:`rkl_bench.toys.fig3`): the behaviour model's learned
  aleatoric uncertainty on 1-D data whose spread varies with the state
  (Fig. 3, Section V-B).

Both use the learners' own regularisers and behaviour model, write a PNG into
``out_dir`` and return the figure's numbers as a JSON-ready dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rkl_bench.errors import RklBenchError

TOYS = ("fig2", "fig3")


def run_toy(which: str, out_dir: Path, seed: int) -> dict[str, Any]:
    """Run one toy, save its figure under ``out_dir``, return its numbers."""
    import torch

    torch.set_num_threads(1)  # tiny problems; the machine is shared
    if which == "fig2":
        from rkl_bench.toys.fig2 import run_fig2

        return {"toy": which, "seed": seed, **run_fig2(Path(out_dir), seed)}
    if which == "fig3":
        from rkl_bench.toys.fig3 import run_fig3

        return {"toy": which, "seed": seed, **run_fig3(Path(out_dir), seed)}
    raise RklBenchError(f"unknown toy {which!r}; choose one of: {', '.join(TOYS)}")
