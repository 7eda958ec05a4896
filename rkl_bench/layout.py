"""The names of the files rkl_bench writes: one contract for the code that writes them and the code that reads them.

The training layer and the service write these files; the report, the
results archive and ``--resume`` read them back. Keeping every name here (a
module that imports nothing) lets each reader depend on the layout instead
of on the writer: building a report never loads Ray. The names on disk are
part of the result-row contract (docs/architecture.md); changing one breaks
experiments and checkpoints already written.

One file may have one name only. Two kinds of ``checkpoint.pt`` exist
(a single run's whole state, and a Tune trial checkpoint's learner state), so
they get two constants with the same value.
"""

from __future__ import annotations

# A single run's directory (``rkl-bench train``).
RUN_FILE = "run.json"
"""The run's spec (what a resume compares) and its summary."""
METRICS_FILE = "metrics.jsonl"
"""One result row per evaluation."""
RUN_CHECKPOINT_FILE = "checkpoint.pt"
"""The run's whole state: learner, sampler, random streams, the step."""

# A Tune trial's directory (``rkl-bench run`` / ``tune``).
RESULT_FILE = "result.json"
"""Tune's per-trial log: one JSON line per reported result row."""
PARAMS_FILE = "params.json"
TRIAL_CHECKPOINT_FILE = "checkpoint.pt"
"""Inside each ``checkpoint_<n>/``: the trial's learner state (plus ``pair_<i>.pt`` in a staged search trial)."""
SEARCH_PROGRESS_FILE = "search_progress.json"
"""A staged search trial's position (stage, pair) in its checkpoints."""
GROUP_CHECKPOINT_FILE = "checkpoint_seed{seed}.pt"
"""Inside each ``checkpoint_<n>/`` of a trial of seeds trained together (``seeds_per_trial``): each seed's state."""
GROUP_LAMBDAS_FILE = "lambdas_seed{seed}.npz"
"""Beside ``lambdas.npz`` (the trial's first seed's) in such a trial's directory: each seed's lambda(s)."""

# Either kind of run directory.
LAMBDAS_FILE = "lambdas.npz"
"""lambda(s) of every dataset row, one array per dataset component (TD3+RKL, weighted BC)."""
RESULT_FILES = (METRICS_FILE, RESULT_FILE)
"""The files a report reads result rows from, in the order it looks for them."""

# An experiment directory.
EXPERIMENT_RECORD_FILE = "rkl_bench_experiment.json"
"""What defines a grid (its config and dataset specs) and the digests of the Tune state it trusts."""
TUNER_FILE = "tuner.pkl"
SEARCH_RECORD_FILE = "rkl_bench_search.json"
"""What defines a search (its experiment config and objective), written before it starts."""
BEST_CONFIG_FILE = "best_config.yaml"
TRIALS_FILE = "trials.csv"
SEARCH_SUMMARY_FILE = "search_summary.json"
"""The study's trials, values and importances: what the search figures are drawn from."""
STUDY_FILE = "optuna.db"
"""A search's Optuna study (SQLite) unless ``search.storage`` names another; in a bucket, a snapshot of it."""

# A results archive (``rkl-bench results export``).
ARCHIVE_FILE = "archive.json"
ROWS_FILE = "rows.jsonl"

# A report directory.
FIGURES_DIR = "figures"
