"""Distillation strategies, selectable by ``--kd_strategy`` (see :mod:`engine.strategies.base`).

A strategy module registers itself when imported; import it here so that its name is a flag choice.
"""

from torch import nn

from engine.strategies import csakd, hkd, psd  # noqa: F401 - register "csakd", "hkd", "psd"
from engine.strategies.base import STRATEGIES, DistillationStrategy, Objective, register


def build_strategy(cfg: dict, teacher: nn.Module | None = None) -> DistillationStrategy:
    """The strategy named by ``cfg["kd_strategy"]`` (default ``csakd``), configured from ``cfg`` and, when given, the
    built ``teacher`` (a frozen teacher's widths are its file's, not the flags')."""
    return STRATEGIES.lookup(cfg.get("kd_strategy") or "csakd").from_config(cfg, teacher)


__all__ = ["STRATEGIES", "DistillationStrategy", "Objective", "build_strategy", "register"]
