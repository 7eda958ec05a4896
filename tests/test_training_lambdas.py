"""lambdas.npz: a run's lambda(s) per dataset row, cut along the dataset's components."""

from __future__ import annotations

import numpy as np

from rkl_bench.data.registry import load_dataset
from rkl_bench.report.lambdas import read_lambdas
from rkl_bench.training.lambdas import component_name, save_lambdas
from test_service_support import write_smoke_datasets


class RowIndexLearner:
    """Stands in for TD3+RKL: 'lambda' of row i is i / N, so the split is checkable."""

    def __init__(self, n: int) -> None:
        self.n = n

    @property
    def dataset_lambdas(self) -> np.ndarray:
        return np.arange(self.n, dtype=np.float32) / self.n


def test_component_names():
    assert component_name("halfcheetah-random-v2") == "random"
    assert component_name("forge-v5/hopper-medium-replay") == "medium-replay"
    assert component_name("/some/file.hdf5") == "/some/file.hdf5"


def test_mixed_dataset_is_split_in_row_order_and_the_report_reads_it(tmp_path):
    write_smoke_datasets()
    dataset = load_dataset("hopper-random-expert-v2")
    sizes = [p.size for p in dataset.provenance]
    assert len(sizes) == 2
    path = save_lambdas(RowIndexLearner(len(dataset)), dataset, tmp_path)
    assert path == tmp_path / "lambdas.npz"
    arrays = read_lambdas(path)
    assert list(arrays) == ["random", "expert"]
    n = len(dataset)
    np.testing.assert_allclose(arrays["random"], np.arange(sizes[0]) / n, rtol=1e-6)
    np.testing.assert_allclose(arrays["expert"], np.arange(sizes[0], n) / n, rtol=1e-6)


def test_learners_without_weights_write_nothing(tmp_path):
    write_smoke_datasets()
    assert save_lambdas(object(), load_dataset("hopper-random-expert-v2"), tmp_path) is None
    assert not (tmp_path / "lambdas.npz").exists()
