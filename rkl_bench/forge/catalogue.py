"""What the forge can make, and what is already made: ``rkl-bench datasets list``."""

from __future__ import annotations

from rkl_bench.data.d4rl import read_metadata
from rkl_bench.data.registry import forge_path
from rkl_bench.forge.make import FILE_KINDS, PROFILES
from rkl_bench.forge.policies import POLICY_ROOT
from rkl_bench.forge.train_policy import FORGE_ENVS

MIXES = ("random-medium-replay", "random-medium-expert", "random-expert")


def forge_prefix(profile: str) -> str:
    """``forge-v5/`` for the full profile, ``forge-v5-<profile>/`` otherwise."""
    return "forge-v5/" if profile == "full" else f"forge-v5-{profile}/"


def catalogue() -> list[dict[str, object]]:
    """One row per env x kind: which profiles are made, with their versions."""
    rows: list[dict[str, object]] = []
    for env in FORGE_ENVS:
        shipped = (POLICY_ROOT / env / "card.json").is_file()
        for kind in (*FILE_KINDS, *MIXES):
            parts = ("random", kind.removeprefix("random-")) if kind in MIXES else (kind,)
            made = {}
            for profile in PROFILES:
                paths = [forge_path(env, part, profile) for part in parts]
                if all(p.is_file() for p in paths):
                    made[profile] = "+".join(str(read_metadata(p).get("version", "?")) for p in paths)
            rows.append({
                "name": f"forge-v5/{env}-{kind}", "env": env, "kind": kind,
                "needs_policy": any(part != "random" for part in parts),
                "policy_shipped": shipped, "made": made,
            })
    return rows


def format_catalogue() -> str:
    rows = catalogue()
    width = max(len("dataset"), *(len(str(row["name"])) for row in rows))
    lines = [f"{'dataset':<{width}}  {'policies':<8}  made (profile: version)"]
    for row in rows:
        policy = "-" if not row["needs_policy"] else ("shipped" if row["policy_shipped"] else "missing")
        made = ", ".join(f"{p}: {v}" for p, v in row["made"].items()) or "-"  # type: ignore[union-attr]
        lines.append(f"{row['name']:<{width}}  {policy:<8}  {made}")
    lines.append("")
    lines.append("Profiles: " + ", ".join(f"{p.name} ({p.rows:,} rows per component)" for p in PROFILES.values())
                 + ", or rows<N> for any other size (forge-v5-rows250k/...). Name a profile by prefix: "
                 "forge-v5/ (full), forge-v5-quick/, forge-v5-tiny/.")
    return "\n".join(lines)
