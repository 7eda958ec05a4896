"""The user attributes rkl-bench keeps on an Optuna study and its trials: how a search's record,
its interrupted trials and their resumes read back from the study alone, on any machine."""

RECORD_ATTR = "rkl_bench_search"
"""Study user attribute holding what defines the search (compared on ``--resume``)."""
INTERRUPTED_ATTR = "interrupted"
RERUN_ATTR = "rerun_of"
RESUME_ATTR = "resume_from"
"""User attribute of a re-asked interrupted trial: the checkpoint directory it goes on from."""
RESUMED_VALUES_ATTR = "resumed_values"
"""... and the intermediate values ``[step, value]`` it had reported before (copied into the new trial)."""
TUNE_TRIAL_ATTR = "tune_trial_id"
