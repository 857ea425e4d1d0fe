"""Distillation losses of the student (train_CSAKD.py). The teacher tensors are detached here, so the
teacher never receives gradient from the student's objective, whatever the caller passes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from losses._checks import check_pair


class ResponseKDLoss(nn.Module):
    """Response distillation: SmoothL1_β(student output, detached teacher output), mean reduction
    (official: ``L1Loss(decoded, co_decoded.detach())`` in train_CSAKD.py).

    Inputs (B, C, H, W) in the [-1, 1] domain; as for the reconstruction loss, β = 1 makes this
    ≈ ½·MSE between the two outputs.
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        check_pair(student, teacher, "ResponseKDLoss", ("student", "teacher"))
        return F.smooth_l1_loss(student, teacher.detach(), beta=self.beta)


class FeatureKDLoss(nn.Module):
    """Feature-map distillation on the fused features (official: ``BCEWithLogitsLoss()(cofeat_s,
    sigmoid(cofeat.detach()))`` in train_CSAKD.py).

    Inputs: student and teacher fused features (B, nf, H, W), unbounded (treated as logits).
    Loss = mean over elements of BCE(sigmoid(F_S), sigmoid(F_T)) with soft targets. It is minimised
    at F_S = F_T, where it equals the mean binary entropy of sigmoid(F_T) (> 0, at most ln 2); its
    gradient per element is (sigmoid(F_S) − sigmoid(F_T)) / numel.
    """

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
        check_pair(student_feat, teacher_feat, "FeatureKDLoss", ("student_feat", "teacher_feat"))
        return F.binary_cross_entropy_with_logits(student_feat, torch.sigmoid(teacher_feat.detach()))
