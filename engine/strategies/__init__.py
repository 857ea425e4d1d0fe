"""Distillation strategies, selectable by ``--kd_strategy`` (see :mod:`engine.strategies.base`).

A strategy module registers itself when imported; import it here so that its name is a flag choice.
"""

from engine.strategies import csakd  # noqa: F401 - registers "csakd"
from engine.strategies.base import STRATEGIES, DistillationStrategy, Objective, register


def build_strategy(cfg: dict) -> DistillationStrategy:
    """The strategy named by ``cfg["kd_strategy"]`` (default ``csakd``), configured from ``cfg``."""
    name = cfg.get("kd_strategy") or "csakd"
    if name not in STRATEGIES:
        raise ValueError(f"--kd_strategy {name!r}: unknown; expected one of {sorted(STRATEGIES)}")
    return STRATEGIES[name].from_config(cfg)


__all__ = ["STRATEGIES", "DistillationStrategy", "Objective", "build_strategy", "register"]
