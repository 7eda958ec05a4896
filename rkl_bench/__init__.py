"""rkl_bench: an offline-RL benchmark for datasets mixed from several behaviour policies.

Layers (each a sub-package; imports point down this list only):
``data`` -> ``algos`` -> ``evaluation`` -> ``forge``/``training`` -> ``service`` -> ``report`` -> ``cli``.
"""

__version__ = "0.1.0"
