"""IQM, stratified bootstrap and probability of improvement on small known inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import trim_mean

from rkl_bench.report.aggregate import (Estimate, aggregate_metrics, aggregate_tables, improvement, iqm,
                                        probability_of_improvement, stratified_bootstrap)
from rkl_bench.report.datasets import SOURCE_D4RL, table_key
from rkl_bench.report.scores import CellStats


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 13, 20])
def test_iqm_matches_scipy_trim_mean(n):
    x = np.random.default_rng(n).normal(size=n)
    assert iqm(x) == pytest.approx(trim_mean(x, 0.25))


def test_iqm_ignores_the_outer_quartiles():
    assert iqm(np.array([-1000.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1000.0])) == pytest.approx(3.5)


def test_bootstrap_resamples_within_strata():
    # Every resample keeps four 0s and four 10s, so the mean never moves;
    # resampling across strata would spread it.
    strata = [np.zeros(4), np.full(4, 10.0)]
    means = stratified_bootstrap(strata, lambda s: s.mean(axis=1), 500, np.random.default_rng(0))
    assert means.shape == (500,) and np.all(means == 5.0)


def test_probability_of_improvement_known_values():
    assert improvement(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert improvement(np.array([1.0, 1.0]), np.array([1.0])) == 0.5  # ties count half
    assert improvement(np.array([0.0, 2.0]), np.array([1.0])) == 0.5
    point, boot = probability_of_improvement([np.array([2.0, 3.0]), np.array([0.0])], [np.array([1.0]), np.array([5.0])],
                                             300, np.random.default_rng(0))
    assert point == 0.5 and boot.shape == (300,) and np.all(boot == 0.5)


def _cells(scores: dict[tuple[str, str], list[float]]):
    cells = {}
    for (algo, env), finals in scores.items():
        key = table_key("Random", env, SOURCE_D4RL)
        cells[(algo, key)] = CellStats(algo, key, tuple(range(len(finals))), tuple(finals), (), 5, (1,), (10,), 10, ())
    return cells


def test_aggregates_are_seeded_deterministic_and_bracket_the_estimate():
    rng = np.random.default_rng(1)
    scores = {(a, env): list(rng.normal(loc, 3.0, 5)) for a, loc in (("td3_bc", 50.0), ("td3_rkl", 60.0))
              for env in ("halfcheetah", "hopper", "walker2d")}
    scores[("bc", "hopper")] = [20.0] * 5  # bc ran one dataset only: not part of the common IQM set
    first = aggregate_metrics(_cells(scores), ["bc", "td3_bc", "td3_rkl"], reps=300, seed=7)
    assert first == aggregate_metrics(_cells(scores), ["bc", "td3_bc", "td3_rkl"], reps=300, seed=7)
    assert first != aggregate_metrics(_cells(scores), ["bc", "td3_bc", "td3_rkl"], reps=300, seed=8)
    iqms = {(e.scope, e.algo): e for e in first if e.metric == "iqm"}
    assert iqms[("D4RL", "td3_rkl")].n_datasets == 1  # only hopper has all three algorithms
    for e in first:
        assert e.low <= e.estimate <= e.high
    pois = {(e.scope, e.baseline): e for e in first if e.metric == "poi"}
    assert pois[("D4RL", "td3_bc")].n_datasets == 3 and pois[("D4RL", "td3_bc")].estimate > 0.9
    assert pois[("D4RL", "bc")].estimate == 1.0 and pois[("D4RL", "bc")].n_datasets == 1
    # nothing in the mixed groups, so "all" would hold exactly the D4RL runs: not repeated
    assert {e.scope for e in first} == {"D4RL"}


def test_all_scope_appears_only_when_it_holds_more_than_one_group():
    mixed = table_key("Random-Expert", "hopper", SOURCE_D4RL)
    assert mixed.group != table_key("Random", "hopper", SOURCE_D4RL).group
    cells = _cells({(a, "hopper"): [1.0, 2.0, 3.0] for a in ("td3_bc", "td3_rkl")})
    only_d4rl = aggregate_metrics(cells, ["td3_bc", "td3_rkl"], reps=50)
    for a, finals in (("td3_bc", [4.0, 5.0, 6.0]), ("td3_rkl", [7.0, 8.0, 9.0])):
        cells[(a, mixed)] = CellStats(a, mixed, (0, 1, 2), tuple(finals), (), 3, (1,), (10,), 10, ())
    both = aggregate_metrics(cells, ["td3_bc", "td3_rkl"], reps=50)
    assert {e.scope for e in only_d4rl} == {"D4RL"}
    assert {e.scope for e in both} == {"D4RL", "mixed", "all"}
    iqm_all = next(e for e in both if e.metric == "iqm" and e.scope == "all" and e.algo == "td3_rkl")
    assert (iqm_all.n_datasets, iqm_all.n_runs) == (2, 6) and iqm_all.estimate == pytest.approx(iqm(np.array([1.0, 2, 3, 7, 8, 9])))


def test_zero_width_interval_gets_its_footnote_and_others_do_not() -> None:
    exact = Estimate("poi", "mixed", "td3_rkl", "bc", 0.5, 0.5, 0.5, 2, 12)
    spread = Estimate("poi", "mixed", "td3_rkl", "td3_bc", 0.4, 0.2, 0.6, 2, 12)
    [with_exact] = aggregate_tables([exact, spread])
    [without] = aggregate_tables([spread])
    assert any("zero width is exact" in note for note in with_exact.footnotes)
    assert not any("zero width" in note for note in without.footnotes)
