"""The data layer: bytes on disk -> :class:`OfflineDataset`.

One module per job: ``d4rl`` (hdf5 read/write), ``minari_io`` (local Minari),
``validate`` (bad input -> one clear line), ``mixing`` (concatenation with
provenance), ``registry`` (spec -> file -> dataset), ``envs`` (env families and
gymnasium ids), ``scores`` (D4RL normalisation), ``info`` (``datasets info``).
Importing this package never imports gymnasium, Ray or the learners.
"""

from rkl_bench.data.d4rl import (
    episode_returns,
    qlearning_rows,
    read_d4rl_hdf5,
    read_metadata,
    write_d4rl_hdf5,
)
from rkl_bench.data.dataset import Batch, OfflineDataset, Provenance, TensorSampler
from rkl_bench.data.envs import ENV_FAMILIES, env_family, guess_env_family, gym_env_id, gym_env_id_for
from rkl_bench.data.info import dataset_info, format_info
from rkl_bench.data.minari_io import read_minari
from rkl_bench.data.mixing import concat_datasets
from rkl_bench.data.registry import (
    KINDS,
    DatasetName,
    d4rl_dataset_dir,
    find_d4rl_file,
    forge_dir,
    forge_path,
    forge_prefix,
    load_dataset,
    parse_dataset_name,
)
from rkl_bench.data.scores import REF_MAX_SCORE, REF_MIN_SCORE, normalized_score

__all__ = [
    "Batch",
    "DatasetName",
    "ENV_FAMILIES",
    "KINDS",
    "OfflineDataset",
    "Provenance",
    "REF_MAX_SCORE",
    "REF_MIN_SCORE",
    "TensorSampler",
    "concat_datasets",
    "d4rl_dataset_dir",
    "dataset_info",
    "env_family",
    "episode_returns",
    "find_d4rl_file",
    "forge_dir",
    "forge_path",
    "forge_prefix",
    "format_info",
    "guess_env_family",
    "gym_env_id",
    "gym_env_id_for",
    "load_dataset",
    "normalized_score",
    "parse_dataset_name",
    "qlearning_rows",
    "read_d4rl_hdf5",
    "read_metadata",
    "read_minari",
    "write_d4rl_hdf5",
]
