"""``rkl-bench run --export-to ARCHIVE``: each trial's rows go into a results archive as it finishes.

A grid that spans sessions, spot machines or Slurm allocations keeps its
results in an archive (``rkl-bench results export``), and everything not yet
exported when the machine goes is lost with it. Exporting by hand means
someone watches the run; a trial that ends at night waits for morning, and a
machine that goes before then takes it along. With ``--export-to`` the run
does it: a thread of the driver looks at the experiment directory every
``interval`` seconds and exports as soon as a trial (or a stack of seeds
trained together) has finished, and once more when the grid ends, however it
ends (finished, Ctrl-C, an error). What the run leaves in the archive is then
what a later ``--resume ARCHIVE`` skips.

Why a thread and not a Tune callback: a restored experiment
(``--resume`` of the experiment directory) gets the callbacks pickled when it
was first started, so a callback could not be added to it; and the
experiment directory is what ``results export`` reads anyway, so this is
that export, on a clock. Reading it is cheap (a few small ``result.json``
files per trial), and a line being appended while it is read counts as
unfinished (:func:`rkl_bench.training.archive.experiment_trials`). The rows
of a finished trial never change, and a trial's lambda(s) files are written
before its first row, so an export never sees a finished trial half-written.

The archive is checked before Ray starts, as ``--resume ARCHIVE`` is: it is
absent, or an archive of this experiment or of the whole grid this one is a
part of. Concurrent exports into one archive (two parts of a grid on one
machine) take a lock (:func:`rkl_bench.training.archive.archive_lock`). An
export that fails while the grid runs (a full disk) is one warning line, and
the grid goes on: its trials are still in the experiment directory.

Local only: the experiment directory must be on this machine (or a shared
mount). With an object store the driver's result files reach the bucket on
Tune's own schedule, so an export on a clock could miss rows; export after
the run with ``rkl-bench results export`` there.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Callable

from rkl_bench.errors import RklBenchError
from rkl_bench.training.archive import experiment_trials, export_results

DEFAULT_INTERVAL_S = 60.0


class ExportAsFinished:
    """A context manager: while inside it, finished trials of ``experiment_dir`` are exported into
    ``archive`` every ``interval`` seconds, and once more on leaving it."""

    def __init__(self, experiment_dir: Path, archive: Path, interval: float = DEFAULT_INTERVAL_S,
                 say: Callable[[str], None] | None = None) -> None:
        self.experiment_dir = experiment_dir
        self.archive = archive
        self.interval = interval
        self.say = say or (lambda line: print(line, flush=True))
        self.exported: set[tuple[str, str, int]] = set()
        self.added = 0
        self._warned: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "ExportAsFinished":
        self._thread = threading.Thread(target=self._loop, name="rkl-bench-export", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.export_new()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.export_new()

    def export_new(self) -> int:
        """Export if the experiment directory holds a finished trial not exported yet; returns the
        seed runs this call added to the archive (0 when nothing new had finished or the export failed)."""
        try:
            if not self.experiment_dir.is_dir():
                return 0
            finished, _ = experiment_trials(self.experiment_dir)
            new = {trial.key for trial in finished} - self.exported
            if not new:
                return 0
            done = export_results(self.experiment_dir, self.archive)
        except (RklBenchError, OSError) as exc:
            self._warn(f"warning: --export-to {self.archive}: {str(exc).splitlines()[0]}; the finished trials stay in "
                       f"{self.experiment_dir} (export them later with rkl-bench results export)")
            return 0
        self.exported |= new
        self.added += done.added
        if done.added:
            names = sorted({f"{algo} on {dataset.split('/')[-1]}" for algo, dataset, _seed in new})
            self.say(f"exported: {done.added} seed run(s) ({', '.join(names)}) into {self.archive}, "
                     f"{done.added + done.kept} held there")
        return done.added

    def _warn(self, line: str) -> None:
        if line not in self._warned:  # one line per distinct problem, not one a minute
            self._warned.add(line)
            print(line, file=sys.stderr, flush=True)
