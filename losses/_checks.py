"""Argument checks shared by the loss modules (one clear ``ValueError`` per misuse)."""

from __future__ import annotations

import torch

from utils.compat import check_compat

__all__ = ["check_compat", "check_pair"]


def check_pair(pred: torch.Tensor, target: torch.Tensor, where: str, names: tuple[str, str]) -> None:
    """Raise unless ``pred`` and ``target`` are 4-D (B, C, H, W) tensors of the same shape."""
    for name, t in zip(names, (pred, target), strict=True):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            found = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{where}: {name} must be a (B, C, H, W) tensor, got {found}")
    if pred.shape != target.shape:
        raise ValueError(
            f"{where}: {names[0]} and {names[1]} must have the same shape, "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
