"""Scratch directories of a killed process are removed by the next one made."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from rkl_bench import scratch


def test_a_killed_process_scratch_is_swept_and_a_live_one_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    scratch.tempfile.tempdir = None  # re-read TMPDIR
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", "import sys, time; from rkl_bench.scratch import scratch_dir; "
             "d = scratch_dir('pairs_'); (d / 'state.pt').write_bytes(b'x' * 1000); print(d, flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp_path)},
        )
        theirs = Path(child.stdout.readline().strip())
        assert theirs.is_dir() and theirs.parent.parent == scratch.scratch_root()
        mine = scratch.scratch_dir("checkpoint_")
        assert theirs.is_dir(), "a running process's scratch must be kept"
        child.send_signal(signal.SIGKILL)
        child.wait()
        again = scratch.scratch_dir("checkpoint_")
        assert not theirs.parent.exists(), "a killed process's scratch must be removed"
        assert mine.is_dir() and again.is_dir() and mine.parent == again.parent
    finally:
        scratch.tempfile.tempdir = None
