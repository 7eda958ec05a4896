"""The paper's toys (Fig. 2, Fig. 3) through ``run_toy`` and the CLI: numbers and files."""

import contextlib
import io
import json
import statistics

import pytest

from rkl_bench.cli import main
from rkl_bench.errors import RklBenchError
from rkl_bench.toys import run_toy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC and path.stat().st_size > 10_000


@pytest.fixture(scope="module")
def fig2(tmp_path_factory):
    out = tmp_path_factory.mktemp("fig2")
    return run_toy("fig2", out, seed=0), out


@pytest.fixture(scope="module")
def fig3(tmp_path_factory):
    """Through the CLI verb, as a user runs it: JSON on stdout, exit status 0."""
    out = tmp_path_factory.mktemp("fig3")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = main(["toy", "fig3", "--out", str(out), "--seed", "0"])
    assert status == 0
    return json.loads(buf.getvalue()), out


# ------------------------------------------------------------------ Fig. 3
def test_fig3_learned_sigma_follows_the_true_spread(fig3):
    result, _ = fig3
    assert result["toy"] == "fig3" and result["points"] >= 2000
    assert result["spearman_sigma_vs_true_spread"] > 0.9
    assert abs(result["learned_sigma_peak_state"] - result["true_spread_peak_state"]) < 0.2
    lo, hi = result["learned_sigma_range"]
    assert hi / lo > 4  # it rises and falls, not a constant


def test_fig3_writes_its_figure(fig3):
    result, out = fig3
    png = out / "fig3_aleatoric_uncertainty.png"
    assert result["figure"] == str(png)
    assert _is_png(png)


# ------------------------------------------------------------------ Fig. 2
def _nearest_mode_distance(result, mu):
    return min(abs(mu - m) for m in result["modes"])


def test_fig2_mse_settles_between_the_modes(fig2):
    result, _ = fig2
    mean = result["dataset_mean_action"]
    assert abs(result["final_mu"]["mse"] - mean) < 0.05
    assert all(abs(mu - mean) < 0.05 for mu in result["final_mu_from_inits"]["mse"])
    assert result["distance_to_nearest_mode"]["mse"] > 0.5  # out of distribution


def test_fig2_kernel_rkl_seeks_a_mode(fig2):
    result, _ = fig2
    assert result["distance_to_nearest_mode"]["kernel"] < 0.03
    assert result["distance_to_nearest_mode"]["kernel_alpha0"] < 0.03
    for start, mu in zip(result["inits"], result["final_mu_from_inits"]["kernel"]):
        assert _nearest_mode_distance(result, mu) < 0.03
        if abs(start) >= 0.2:  # a clear start: the mode on its own side
            assert mu * start > 0


def test_fig2_squared_rkl_below_alpha_one_is_mean_seeking_like_mse(fig2):
    result, _ = fig2
    mean, final = result["dataset_mean_action"], result["final_mu"]
    assert abs(final["squared_alpha0"] - mean) < 0.06
    assert abs(final["squared_alpha0.5"] - mean) < 0.06
    assert abs(final["squared_alpha0.9"] - mean) < 0.12  # 10x weaker curvature, noisier


def test_fig2_squared_rkl_at_alpha_one_has_no_restoring_force(fig2):
    """Ends wherever minibatch noise leaves it: tracks its start, neither mean nor mode."""
    result, _ = fig2
    finals = result["final_mu_from_inits"]["squared_alpha1"]
    assert statistics.pstdev(finals) > 0.2  # MSE and kernel runs collapse to 1-2 points
    assert statistics.mean(_nearest_mode_distance(result, mu) for mu in finals) > 0.1
    ranks = sorted(range(len(finals)), key=finals.__getitem__)
    assert ranks[0] in (0, 1) and ranks[-1] == len(finals) - 1  # lowest start stays low, highest stays high


def test_fig2_squared_rkl_above_alpha_one_runs_to_a_bound(fig2):
    result, _ = fig2
    assert abs(result["final_mu"]["squared_alpha1.5"]) > 0.98


def test_fig2_global_negatives_push_away_from_the_dataset_mean(fig2):
    result, _ = fig2
    e_s, e_d = result["dataset_mean_action"], result["mixed_dataset_mean_action"]
    final = result["final_mu"]
    assert e_d > 0.3
    assert final["squared_alpha1_global"] < -0.98  # linear push, to the bound opposite E_D[a]
    # alpha = 0.5: minimiser of (1 - a) mu^2 - 2 mu (E_s - a E_D)
    assert final["squared_alpha0.5_global"] == pytest.approx((e_s - 0.5 * e_d) / 0.5, abs=0.07)
    assert result["distance_to_nearest_mode"]["kernel_global"] < 0.03


def test_fig2_writes_its_figure_and_json_ready_numbers(fig2):
    result, out = fig2
    assert _is_png(out / "fig2_bc_regularisers.png")
    json.dumps(result)


def test_unknown_toy_is_a_clear_error(tmp_path):
    with pytest.raises(RklBenchError, match="unknown toy 'fig9'; choose one of: fig2, fig3"):
        run_toy("fig9", tmp_path, seed=0)
