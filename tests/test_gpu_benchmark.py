"""``benchmarks/gpu.py`` at its tiny size on the CPU, as the GPU machine will run it: without the
service's and the environments' packages.

The script runs in a subprocess in which gymnasium, MuJoCo, Ray, Optuna,
Minari, h5py, tqdm and PyYAML cannot be imported (a meta-path finder refuses
them), so it is shown to need the learners, torch and numpy only. The
printed table must have every row measured: positive steps/s, seed-steps/s
= K x steps/s. A few seconds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"
BLOCKED = ("gymnasium", "mujoco", "ray", "optuna", "minari", "h5py", "tqdm", "yaml")
LAUNCHER = """
import importlib.abc, runpy, sys
BLOCKED = {blocked!r}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (refused by the test)")
        return None
sys.meta_path.insert(0, Refuse())
sys.argv = [{script!r}, *{args!r}]
code = runpy.run_path({script!r}, run_name="not_main")["main"]()
loaded = sorted({{m.split('.')[0] for m in sys.modules}} & set(BLOCKED) - {{'h5py', 'tqdm'}})
print("blocked modules loaded:", loaded)
sys.exit(code)
"""


def run_tiny(*args: str) -> str:
    launcher = LAUNCHER.format(blocked=BLOCKED, script=str(SCRIPT), args=list(args))
    done = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def table(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("row "))
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        label, rest = line[:22].strip(), line[22:].split()
        rows[label] = rest
    return rows


def test_tiny_run_on_the_cpu_prints_a_full_table_without_env_or_service_packages(monkeypatch):
    from rkl_bench.algos.precision import EMULATED_ENV, native_bf16

    monkeypatch.delenv(EMULATED_ENV, raising=False)
    out = run_tiny("--device", "cpu", "--tiny", "--ks", "2,3")
    if native_bf16("cpu") is None:
        assert "bf16 rows left out: cpu has no native bf16" in out
    assert f"torch {torch.__version__}" in out and "device: cpu (cpu)" in out
    assert "stand-ins for h5py, tqdm" in out and "blocked modules loaded: []" in out
    rows = table(out)
    expected = {"K=1 eager": 1, "K=1 compiled": 1, "K=1 graphed": 1, "K=2 vmap": 2, "K=3 vmap": 3,
                "K=2 vmap compiled": 2, "K=3 vmap compiled": 3}
    if native_bf16("cpu") is not None:
        expected.update({"K=1 compiled bf16": 1, "K=3 vmap compiled bf16": 3})
    assert set(rows) == set(expected), out
    for label, seeds in expected.items():
        steps, seed_steps, ratio = float(rows[label][0]), float(rows[label][1]), rows[label][2]
        assert steps > 0 and seed_steps == pytest.approx(seeds * steps, rel=0.01), (label, rows[label])
        assert re.fullmatch(r"\d+\.\d\dx", ratio), (label, ratio)
        status = " ".join(rows[label][5:])
        assert status in ("ok", "compile off (--tiny)"), (label, status)
    assert rows["K=1 eager"][2] == "1.00x"


def test_bf16_rows_run_where_bf16_runs(monkeypatch):
    """The bf16 rows (emulated here when the CPU lacks bf16 units): measured, and only they are added."""
    from rkl_bench.algos.precision import EMULATED_ENV

    monkeypatch.setenv(EMULATED_ENV, "1")
    rows = table(run_tiny("--device", "cpu", "--tiny", "--ks", "2", "--skip", "K=1 graphed,K=2 vmap"))
    assert set(rows) == {"K=1 eager", "K=1 compiled", "K=2 vmap compiled", "K=1 compiled bf16", "K=2 vmap compiled bf16"}
    for label in ("K=1 compiled bf16", "K=2 vmap compiled bf16"):
        assert float(rows[label][0]) > 0, rows[label]
    assert float(rows["K=2 vmap compiled bf16"][1]) == pytest.approx(2 * float(rows["K=2 vmap compiled bf16"][0]), rel=0.01)
    assert table(run_tiny("--device", "cpu", "--tiny", "--ks", "2", "--no-bf16")).keys().isdisjoint(
        {"K=1 compiled bf16", "K=2 vmap compiled bf16"})


def test_a_device_this_machine_lacks_is_one_error_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda", "--tiny"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: device 'cuda' is not available"), done.stderr
