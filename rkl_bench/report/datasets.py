"""Dataset names -> where they sit in Table II.

Table II has seven task groups (four D4RL kinds, then the three mixes of the
random data with another kind) and, within each, one row per environment.
Results name their dataset as the run was given it: a D4RL name
(``hopper-medium-replay-v2``, ``walker2d-random-expert-v2``) or a forge name
(``forge-v5/hopper-random-expert``, or ``forge-v5-quick/...`` for a smaller
forge profile). Both map to the same group and row; the ``source`` keeps them
apart, because forge data is not the paper's data.
Names that fit no group (``hopper-medium-v2``, a file path, ``minari:...``)
land in an "Other" section instead of being dropped.

The parsing is done here, not with ``rkl_bench.data.registry``, on purpose:
the registry rejects unknown names, while a report must place every row it
is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENVS = ("halfcheetah", "hopper", "walker2d")
ENV_LABELS = {"halfcheetah": "HalfCheetah", "hopper": "Hopper", "walker2d": "Walker2d"}

GROUPS = (
    "Random",
    "MediumReplay",
    "MediumExpert",
    "Expert",
    "Random-MediumReplay",
    "Random-MediumExpert",
    "Random-Expert",
)
"""Table II's task groups, in the paper's order."""
D4RL_GROUPS = GROUPS[:4]
"""Groups averaged in the paper's "Average on D4RL datasets" row."""
MIXED_GROUPS = GROUPS[4:]
"""Groups averaged in the paper's "Average on mixed datasets" row."""
OTHER = "Other"

SOURCE_D4RL = "d4rl-v2"
SOURCE_OTHER = "other"

_KIND_TO_GROUP = {
    "random": "Random",
    "medium-replay": "MediumReplay",
    "medium-expert": "MediumExpert",
    "expert": "Expert",
    "random-medium-replay": "Random-MediumReplay",
    "random-medium-expert": "Random-MediumExpert",
    "random-expert": "Random-Expert",
}
_GROUP_TO_KIND = {group: kind for kind, group in _KIND_TO_GROUP.items()}
_D4RL = re.compile(r"^(?P<env>[a-z0-9]+)-(?P<kind>[a-z-]+)-v2$")
_FORGE = re.compile(r"^(?P<source>forge-v5(?:-[a-z0-9]+)?)/(?P<env>[a-z0-9]+)-(?P<kind>[a-z-]+)$")


@dataclass(frozen=True, order=True)
class DatasetKey:
    """One row of the table: a Table II group and env, or an "Other" dataset.

    Ordering follows the table: group order, then env, then source (D4RL
    before forge profiles, A-Z), then the name (for "Other").
    """

    group_index: int
    env_index: int
    source_rank: int
    source: str
    """``d4rl-v2``, ``forge-v5`` (or ``forge-v5-<profile>``), or ``other``."""
    name: str
    """Canonical dataset name: ``hopper-random-v2``, ``forge-v5/hopper-random`` or the spec as given."""

    @property
    def group(self) -> str:
        return GROUPS[self.group_index] if self.group_index < len(GROUPS) else OTHER

    @property
    def env(self) -> str | None:
        return ENVS[self.env_index] if self.env_index < len(ENVS) else None

    @property
    def in_table2(self) -> bool:
        return self.group != OTHER

    @property
    def is_paper_data(self) -> bool:
        """True for D4RL v2 data, the data the paper's numbers come from."""
        return self.source == SOURCE_D4RL

    @property
    def label(self) -> str:
        """Row label as the paper prints it (``HalfCheetah-Random-Expert``), or the name."""
        if not self.in_table2:
            return self.name
        return f"{ENV_LABELS[self.env]}-{self.group}"


def dataset_key(spec: str) -> DatasetKey:
    """Place a dataset spec in the table; never raises (unknown -> "Other")."""
    text = spec.strip()
    lowered = text.lower()
    match = _D4RL.match(lowered)
    source = SOURCE_D4RL
    if match is None:
        match = _FORGE.match(lowered)
        source = match["source"] if match else SOURCE_OTHER
    if match and match["env"] in ENVS and match["kind"] in _KIND_TO_GROUP:
        return table_key(_KIND_TO_GROUP[match["kind"]], match["env"], source)
    return DatasetKey(len(GROUPS), len(ENVS), 2, SOURCE_OTHER, text)


def table_key(group: str, env: str, source: str) -> DatasetKey:
    """The key of a Table II cell position, e.g. to fill a row no run covered."""
    kind = _GROUP_TO_KIND[group]
    name = f"{env}-{kind}-v2" if source == SOURCE_D4RL else f"{source}/{env}-{kind}"
    return DatasetKey(GROUPS.index(group), ENVS.index(env), 0 if source == SOURCE_D4RL else 1, source, name)
