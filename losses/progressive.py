"""PSDNet's losses for a progressive (multi-stage) network: per-stage L1 deep supervision and the feature-MSE
distillation of the stage features (docs: docs/other-seeds.md §2.5, §3.3).

Restated from the authors' code (``Meiqi-Gong/PSDNet`` dda8b2d, ``optimize1.py``): the teacher minimises
Σ_k L1(Y_k, GT) over its three stage images; the student minimises the same plus
λ·[MSE(F2_S, F2_T) + MSE(F3_S, F3_T)], λ = 1e-6 in that code. Images (B, C, H, W) in [-1, 1];
features (B, nf, H, W), unbounded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from losses._checks import check_pair

#: λ of the stage-feature MSE (authors' code). So small that the distillation term itself barely moves
#: the student: most of what the student gets from this strategy is deep supervision.
PSD_FEATURE_WEIGHT = 1e-6


def stage_l1(images: Sequence[torch.Tensor], gt: torch.Tensor) -> torch.Tensor:
    """Σ_k mean |Y_k − GT| over the stage images Y_1 … Y_K (official: the sum of three ``L1Loss`` terms)."""
    if not images:
        raise ValueError("stage_l1: expected at least one stage image, got none")
    for k, image in enumerate(images, start=1):
        check_pair(image, gt, "stage_l1", (f"stage image {k}", "gt"))
    return sum(F.l1_loss(image, gt) for image in images)


def stage_feature_mse(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ_k mean (F_k^S − F̂_k^T)² over matched stage features, the teacher's detached (official: ``MSELoss``)."""
    if len(student) != len(teacher) or not student:
        raise ValueError(f"stage_feature_mse: expected as many teacher as student stage features (≥ 1), "
                         f"got {len(teacher)} and {len(student)}")
    for k, (s, t) in enumerate(zip(student, teacher, strict=True), start=1):
        check_pair(s, t, "stage_feature_mse", (f"student feature {k}", f"teacher feature {k}"))
    return sum(F.mse_loss(s, t.detach()) for s, t in zip(student, teacher, strict=True))
