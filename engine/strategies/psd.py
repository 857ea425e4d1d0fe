"""PSDNet's privileged-teacher progressive distillation as a strategy, ``--kd_strategy psd`` (with ``--arch psd``;
official counterpart: the loss of ``Meiqi-Gong/PSDNet``'s ``optimize1.py``; docs/other-seeds.md §2, §3.3).

The teacher is the privileged :class:`models.psd.PSDNet` (the GT in place of its stage-1 estimate at the stage-2
input); the student the same network without it, which never sees the GT. Per-stage L1 deep supervision for
both; the student adds λ·Σ_k MSE(F_k^S, F̂_k^T) over the stage-2 and stage-3 features (λ = ``--psd_feat_weight``,
authors' 1e-6: so small that the student gains mostly from its deep supervision). Teacher first, then frozen,
is the authors' schedule (train online or any run's teacher, then ``--kd_mode offline --teacher_ckpt``);
online co-training is the option.
"""

from __future__ import annotations

import torch
from torch import nn

from losses.progressive import PSD_FEATURE_WEIGHT, stage_feature_mse, stage_l1
from models.outputs import FusionOutput
from utils.config import Option, Range

from ..options import RELATED
from .base import DistillationStrategy, Objective, register


def _stage_parts(images: list[torch.Tensor], gt: torch.Tensor) -> Objective:
    """Σ_k L1(Y_k, Y) over [Y1, Y2, Y3]; parts {"l1_1", "l1_2", "l1_3"}."""
    terms = [stage_l1([y], gt) for y in images]
    return sum(terms), {f"l1_{k}": t.detach() for k, t in enumerate(terms, start=1)}


@register
class PSDStrategy(DistillationStrategy):
    """``--kd_strategy psd``. No trainable parameters of its own.

    Args:
        feat_weight: λ of the stage-feature MSE (default the authors' 1e-6).
    """

    name = "psd"
    options = (Option("psd_feat_weight", type=float, default=PSD_FEATURE_WEIGHT, range=Range(0), group=RELATED,
                      strategy="psd", teacher_only=True,
                      help="psd: weight λ of the stage-feature MSE (authors' 1e-6)"),)
    needs = frozenset({"inter_outs", "stage_feats"})

    def __init__(self, feat_weight: float = PSD_FEATURE_WEIGHT) -> None:
        super().__init__()
        self.feat_weight = feat_weight

    @classmethod
    def from_config(cls, cfg: dict, teacher: nn.Module | None = None) -> PSDStrategy:
        return cls(cfg.get("psd_feat_weight", PSD_FEATURE_WEIGHT))

    def forward_teacher(self, teacher: nn.Module, lrhsi: torch.Tensor, hrmsi: torch.Tensor,
                        gt: torch.Tensor) -> FusionOutput:
        """The privileged teacher takes the GT (B, C, H, W) at its stage-2 input."""
        return self.run("teacher", teacher, lrhsi, hrmsi, gt)

    def teacher_objective(self, teacher: FusionOutput, gt: torch.Tensor) -> Objective:
        """L_T = Σ_k L1(Y_k^T, Y)."""
        return _stage_parts([*teacher.inter_outs, teacher.out], gt)

    def student_objective(self, student: FusionOutput, teacher: FusionOutput | None, gt: torch.Tensor) -> Objective:
        """L_S = Σ_k L1(Y_k^S, Y) + λ·Σ_k MSE(F_k^S, F̂_k^T); parts {"l1_1", "l1_2", "l1_3", "feat"}."""
        total, parts = _stage_parts([*student.inter_outs, student.out], gt)
        if teacher is None:
            return total, parts
        feat = stage_feature_mse(student.stage_feats, teacher.stage_feats)
        return total + self.feat_weight * feat, {**parts, "feat": feat.detach()}
