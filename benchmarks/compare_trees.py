"""Learner speed of two checkouts, measured interleaved on one machine in one run.

    nice -n 5 .venv/bin/python benchmarks/compare_trees.py BEFORE_TREE AFTER_TREE \
        [--order ABBAAB] [--learners bc,td3_bc] [--rounds 5] [--steps 300]

Runs each tree's own ``benchmarks/speed.py`` (learner section only, one
thread) as a subprocess, alternating the trees in ``--order`` so that a
machine that speeds up or slows down during the run weighs on both alike.
Each run measures its own matrix-multiply bound, so the comparison is of
each run's share of its bound (CPU clock: the thread time the benchmark ran,
the steadier figure on a shared machine), and of the raw steps/s ratio
after / before. Prints the CPU model first: figures from different machines
are compared only as ratios from one run.

Why a script and not a test: speed depends on the machine, and a timed test
fails on a busy one. This is how a refactoring shows it made no learner
slower (docs/speed.md).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import cpu_model  # noqa: E402

ROW = re.compile(
    r"^(?P<learner>\w+)\s+cpu\s+(?P<plain>\d+)\s+(?P<fast>\d+)\s+[\d.]+x\s+(?P<bound>\d+)\s"
)


def run_speed(tree: Path, learners: str, rounds: int, steps: int) -> dict[str, dict[str, float]]:
    """One ``speed.py`` run from ``tree``: {learner: {plain, fast, bound}} on the CPU clock."""
    script = tree / "benchmarks" / "speed.py"
    if not script.is_file():
        raise SystemExit(f"error: {tree} has no benchmarks/speed.py")
    cmd = [sys.executable, str(script), "--threads", "1", "--rounds", str(rounds),
           "--steps", str(steps), "--learners", learners,
           "--skip", "threads,sac,eval,generate"]
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"error: speed.py in {tree} exited {out.returncode}:\n{out.stderr[-2000:]}")
    rows = {}
    for line in out.stdout.splitlines():
        match = ROW.match(line)
        if match:
            rows[match["learner"]] = {k: float(match[k]) for k in ("plain", "fast", "bound")}
    missing = set(learners.split(",")) - set(rows)
    if missing:
        raise SystemExit(f"error: speed.py in {tree} printed no cpu row for {sorted(missing)}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--order", default="ABBAAB", help="A = before, B = after")
    parser.add_argument("--learners", default="bc,td3_bc,td3_rkl,brac,cdc")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    if not args.order or set(args.order) - {"A", "B"}:
        raise SystemExit("error: --order takes only the letters A (before) and B (after)")
    trees = {"A": args.before.resolve(), "B": args.after.resolve()}
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; load average {os.getloadavg()}")
    for letter, tree in trees.items():
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip() or "?"
        print(f"{letter} = {tree} ({head})")

    runs: list[tuple[str, dict[str, dict[str, float]]]] = []
    for i, letter in enumerate(args.order):
        rows = run_speed(trees[letter], args.learners, args.rounds, args.steps)
        runs.append((letter, rows))
        text = "  ".join(f"{k} fast {v['fast']:.0f} plain {v['plain']:.0f} bound {v['bound']:.0f}"
                         for k, v in rows.items())
        print(f"run {i + 1} ({letter}): {text}", flush=True)

    print("\nper learner: medians over runs, CPU clock (after/before ratios of the medians)")
    print(f"{'learner':8} {'path':5} {'before':>7} {'after':>7} {'ratio':>6} "
          f"{'share before':>13} {'share after':>12}")
    for learner in args.learners.split(","):
        for path in ("fast", "plain"):
            rate = {L: statistics.median(r[learner][path] for l2, r in runs if l2 == L) for L in "AB"}
            share = {L: statistics.median(r[learner][path] / r[learner]["bound"]
                                          for l2, r in runs if l2 == L) for L in "AB"}
            print(f"{learner:8} {path:5} {rate['A']:7.0f} {rate['B']:7.0f} "
                  f"{rate['B'] / rate['A']:6.2f} {share['A']:13.0%} {share['B']:12.0%}")
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
