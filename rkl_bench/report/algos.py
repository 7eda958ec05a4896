"""Algorithm names: the keys results carry and the labels Table II prints.

Results use the learner registry's names (``td3_rkl``, ``td3_bc``, ...), or
a config's variant keys (``td3_rkl@kernel``, a column of its own after the
paper's five); spellings such as ``TD3+BC`` or ``td3-bc`` are folded to the
same key so a hand-written result row is not split into a column of its own.
"""

from __future__ import annotations

ALGO_ORDER = ("bc", "brac", "cdc", "td3_bc", "td3_rkl")
"""Table II's columns, in the paper's order."""
ALGO_LABELS = {
    "bc": "BC", "brac": "BRAC", "cdc": "CDC", "td3_bc": "TD3+BC", "td3_rkl": "TD3+RKL",
    # Fig. 5's pure-BC learners (rkl_bench/report/fig5.py has the longer legend names)
    "bc_weighted_rkl": "BC-wRKL", "bc_mse": "BC-MSE", "bc_forward_kl": "BC-FKL", "bc_reverse_kl": "BC-RKL",
}
OURS = "td3_rkl"
"""The method the relative gain and the probability of improvement are about."""


def is_ours(algo: str) -> bool:
    """TD3+RKL or a variant of it (``td3_rkl@tuned``): the method a gain is about, never a baseline."""
    return algo.partition("@")[0] == OURS


def canonical_algo(name: str) -> str:
    """``TD3+BC`` / ``td3-bc`` / ``td3_bc`` -> ``td3_bc``; unknown names are only lower-cased."""
    return name.strip().lower().replace("+", "_").replace("-", "_")


def algo_label(algo: str) -> str:
    """``td3_bc`` -> ``TD3+BC``; a variant ``td3_rkl@kernel`` -> ``TD3+RKL (kernel)``."""
    base, _, variant = algo.partition("@")
    label = ALGO_LABELS.get(base, base)
    return f"{label} ({variant})" if variant else label


def column_order(present: set[str]) -> list[str]:
    """The paper's five columns (always, so absent ones show as missing), then any others A-Z."""
    return list(ALGO_ORDER) + sorted(present - set(ALGO_ORDER))
