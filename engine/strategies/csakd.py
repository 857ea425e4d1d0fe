"""CSAKD's online distillation (official: the student's loss in train_CSAKD.py): response distillation on
the HR-HSI and feature distillation on the fused feature, on top of the fidelity terms.

Teacher objective: ``losses.FidelityLoss`` (L_rec + w_sam·L_SAM + w_beba·L_BEBA). Student objective:
``losses.StudentLoss`` with the detached teacher output and fused feature; without a teacher
(``--kd_mode none``) the fidelity terms alone. Bit-for-bit the official sums under ``--compat official``.
"""

from __future__ import annotations

import torch

from losses import StudentLoss
from models.outputs import FusionOutput

from .base import DistillationStrategy, Objective, register


@register
class CSAKDStrategy(DistillationStrategy):
    """The paper's strategy, ``--kd_strategy csakd`` (the default). No trainable parameters of its own.

    Args:
        w_sam, w_beba: fidelity weights (official 0.1 each); w_kd, w_feat: distillation weights (0.1 each).
        joint: False is the official ``--joint_loss 0`` (both totals = L_rec).
        compat: None or "official" (SAM/BEBA variants, docs/decisions.md #2, #3).
    """

    name = "csakd"
    needs = frozenset({"feat"})

    def __init__(self, w_sam: float = 0.1, w_beba: float = 0.1, w_kd: float = 0.1, w_feat: float = 0.1,
                 joint: bool = True, compat: str | None = None) -> None:
        super().__init__()
        self.student_loss = StudentLoss(w_sam=w_sam, w_beba=w_beba, w_kd=w_kd, w_feat=w_feat, joint=joint,
                                        compat=compat)

    @classmethod
    def from_config(cls, cfg: dict) -> CSAKDStrategy:
        return cls(w_sam=cfg["w_sam"], w_beba=cfg["w_beba"], w_kd=cfg["w_kd"], w_feat=cfg["w_feat"],
                   joint=bool(cfg["joint_loss"]), compat=cfg.get("compat"))

    def teacher_objective(self, teacher: FusionOutput, gt: torch.Tensor) -> Objective:
        """L_T: fidelity of the teacher's (B, C, H, W) output; parts {"rec", "sam", "beba"}."""
        return self.student_loss.fidelity(teacher.out, gt)

    def student_objective(self, student: FusionOutput, teacher: FusionOutput | None, gt: torch.Tensor) -> Objective:
        """L_S with parts {"rec", "sam", "beba", "kd", "feat"}; without a teacher the fidelity terms alone."""
        if teacher is None:
            return self.student_loss.fidelity(student.out, gt)
        return self.student_loss(student.out, student.feat, gt, teacher.out, teacher.feat)
