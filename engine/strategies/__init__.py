"""Distillation strategies, selectable by ``--kd_strategy`` (see :mod:`engine.strategies.base`)."""

from engine.strategies.base import STRATEGIES, DistillationStrategy, Objective, register

__all__ = ["STRATEGIES", "DistillationStrategy", "Objective", "register"]
