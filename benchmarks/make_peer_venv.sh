#!/usr/bin/env bash
# Create benchmarks/.venv-d3rlpy: d3rlpy for benchmarks/peer_agreement.py.
#
# A separate virtualenv because d3rlpy 2.8 pins gymnasium 1.0 (rkl_bench runs
# gymnasium 1.4). It holds only what benchmarks/peer_d3rlpy_worker.py imports:
# d3rlpy, torch (CPU), numpy, h5py, gymnasium. rkl_bench is NOT installed here.
#
# torch must stay ==2.13.0, as in requirements.txt: a CPU wheel of it lies on
# the machine's disk (pip's find-links); a looser pin pulls a multi-GB CUDA
# build from PyPI. It is installed first, so d3rlpy's own "torch>=2.5" is
# already met and pip does not go looking for another build.
#
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv-d3rlpy
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
pip_install() {
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true
}
pip_install torch==2.13.0
pip_install d3rlpy==2.8.1 torch==2.13.0 numpy==2.4.6 gymnasium==1.0.0 h5py==3.16.0
"$VENV/bin/python" -c "
import torch, d3rlpy, gymnasium, numpy, h5py
assert torch.__version__.startswith('2.13.0'), torch.__version__
assert d3rlpy.__version__ == '2.8.1', d3rlpy.__version__
print(f'{\"$VENV\"}: d3rlpy {d3rlpy.__version__}, torch {torch.__version__}, gymnasium {gymnasium.__version__}, numpy {numpy.__version__}')
"
