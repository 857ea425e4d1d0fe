"""The teacher's and the student's training objectives of online co-training (train_CSAKD.py).

Both return ``(total, parts)``: ``total`` is the 0-d tensor to back-propagate, ``parts`` maps each
term's name to its detached, unweighted 0-d value (for logging; no host synchronisation here).
``joint=False`` is the official ``--joint_loss 0``: the total is the reconstruction term alone for
both networks; the other terms are still evaluated, without autograd, for logging (the official
script logs them too).
"""

from __future__ import annotations

import torch
from torch import nn

from losses._checks import check_compat
from losses.distillation import FeatureKDLoss, ResponseKDLoss
from losses.fidelity import BEBALoss, ReconstructionLoss, SAMLoss


def _check_weights(where: str, **weights: float) -> None:
    for name, value in weights.items():
        if not value >= 0:  # also rejects NaN
            raise ValueError(f"{where}: {name} must be a non-negative number, got {value!r}")


class FidelityLoss(nn.Module):
    """The fidelity objective L_F(X, Y) = L_rec + w_sam·L_SAM + w_beba·L_BEBA, the online teacher's whole loss
    (official: the teacher's loss in train_CSAKD.py) and the student's loss without distillation:
    L_T = L_rec(T, Y) + w_sam·L_SAM(T, Y) + w_beba·L_BEBA(T, Y) (official weights 0.1 and 0.1).

    ``forward(teacher_out, target)`` with (B, C, H, W) tensors in the [-1, 1] domain returns
    ``(total, {"rec", "sam", "beba"})``. ``compat`` selects the SAM and BEBA variants
    (docs/decisions.md #2, #3); ``joint=False`` → total = L_rec.
    """

    def __init__(
        self, w_sam: float = 0.1, w_beba: float = 0.1, joint: bool = True, compat: str | None = None
    ) -> None:
        super().__init__()
        check_compat(compat, "FidelityLoss")
        _check_weights("FidelityLoss", w_sam=w_sam, w_beba=w_beba)
        self.w_sam, self.w_beba, self.joint, self.compat = w_sam, w_beba, joint, compat
        self.rec = ReconstructionLoss()
        self.sam = SAMLoss(compat)
        self.beba = BEBALoss(compat)

    def weighted_terms(
        self, pred: torch.Tensor, target: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(weighted, parts)``: {rec, sam, beba} as w·L in the official summation order (attached to the
        graph, for per-term gradients) and as unweighted detached values."""
        rec = self.rec(pred, target)
        with torch.set_grad_enabled(self.joint and torch.is_grad_enabled()):
            sam = self.sam(pred, target)
            beba = self.beba(pred, target)
        weighted = {"rec": rec, "sam": self.w_sam * sam, "beba": self.w_beba * beba}
        return weighted, {"rec": rec.detach(), "sam": sam.detach(), "beba": beba.detach()}

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        weighted, parts = self.weighted_terms(pred, target)
        return self.total(weighted), parts

    def total(self, weighted: dict[str, torch.Tensor]) -> torch.Tensor:
        """The total of :meth:`weighted_terms`: the official script's summation order (bit-for-bit equal totals in
        float32); L_rec alone when not joint."""
        return weighted["rec"] + weighted["sam"] + weighted["beba"] if self.joint else weighted["rec"]

    def extra_repr(self) -> str:
        return f"w_sam={self.w_sam}, w_beba={self.w_beba}, joint={self.joint}, compat={self.compat!r}"


TeacherLoss = FidelityLoss  # the former name, kept for existing code


class StudentLoss(nn.Module):
    """L_S = L_rec(S, Y) + w_kd·SmoothL1(S, T̂) + w_feat·BCEWithLogits(F_S, sigmoid(F̂_T))
    + w_beba·L_BEBA(S, Y) + w_sam·L_SAM(S, Y), with T̂, F̂_T the detached teacher tensors
    (official weights all 0.1).

    ``forward(student_out, student_feat, target, teacher_out, teacher_feat, kd_scale=1.0)``: outputs and
    target (B, C, H, W) in the [-1, 1] domain, fused features (B, nf, H, W). The teacher tensors are
    detached inside, so no gradient reaches the teacher. Returns ``(total, {"rec", "sam", "beba", "kd",
    "feat"})``. ``joint=False`` → total = L_rec (official ``--joint_loss 0`` trains the student without
    distillation).

    Variants of this project (no official counterpart): ``feat_loss`` replaces the BCE feature term (e.g.
    :class:`~losses.distillation.NormalisedFeatureKDLoss`); ``kd_scale`` in [0, 1] multiplies both
    distillation weights (a warm-up). With the defaults the total is the official sum, bit for bit.
    """

    def __init__(
        self,
        w_sam: float = 0.1,
        w_beba: float = 0.1,
        w_kd: float = 0.1,
        w_feat: float = 0.1,
        joint: bool = True,
        compat: str | None = None,
        feat_loss: nn.Module | None = None,
    ) -> None:
        super().__init__()
        check_compat(compat, "StudentLoss")
        _check_weights("StudentLoss", w_sam=w_sam, w_beba=w_beba, w_kd=w_kd, w_feat=w_feat)
        self.w_sam, self.w_beba, self.w_kd, self.w_feat = w_sam, w_beba, w_kd, w_feat
        self.joint, self.compat = joint, compat
        self.fidelity = FidelityLoss(w_sam, w_beba, joint, compat)  # its terms, summed here in the official order
        self.kd = ResponseKDLoss()
        self.feat = FeatureKDLoss() if feat_loss is None else feat_loss

    def weighted_terms(
        self,
        student_out: torch.Tensor,
        student_feat: torch.Tensor,
        target: torch.Tensor,
        teacher_out: torch.Tensor,
        teacher_feat: torch.Tensor,
        kd_scale: float = 1.0,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(weighted, parts)``: the weighted terms w·L in the official summation order (rec, kd, feat, beba,
        sam; attached to the graph, for per-term gradients) and the unweighted, detached values."""
        if not 0.0 <= kd_scale <= 1.0:
            raise ValueError(f"StudentLoss: kd_scale must lie in [0, 1], got {kd_scale!r}")
        fid = self.fidelity
        rec = fid.rec(student_out, target)
        with torch.set_grad_enabled(self.joint and torch.is_grad_enabled()):
            kd = self.kd(student_out, teacher_out)
            feat = self.feat(student_feat, teacher_feat)
            beba = fid.beba(student_out, target)
            sam = fid.sam(student_out, target)
        # kd_scale 1.0 leaves the weights' bits unchanged (x · 1.0 = x in floating point)
        weighted = {"rec": rec, "kd": (self.w_kd * kd_scale) * kd, "feat": (self.w_feat * kd_scale) * feat,
                    "beba": self.w_beba * beba, "sam": self.w_sam * sam}
        parts = {"rec": rec, "sam": sam, "beba": beba, "kd": kd, "feat": feat}
        return weighted, {name: value.detach() for name, value in parts.items()}

    def total(self, weighted: dict[str, torch.Tensor]) -> torch.Tensor:
        """The total of :meth:`weighted_terms` (the official script's order; L_rec alone when not joint)."""
        if not self.joint:
            return weighted["rec"]
        return weighted["rec"] + weighted["kd"] + weighted["feat"] + weighted["beba"] + weighted["sam"]

    def forward(
        self,
        student_out: torch.Tensor,
        student_feat: torch.Tensor,
        target: torch.Tensor,
        teacher_out: torch.Tensor,
        teacher_feat: torch.Tensor,
        kd_scale: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        weighted, parts = self.weighted_terms(student_out, student_feat, target, teacher_out, teacher_feat, kd_scale)
        return self.total(weighted), parts

    def extra_repr(self) -> str:
        return (
            f"w_sam={self.w_sam}, w_beba={self.w_beba}, w_kd={self.w_kd}, w_feat={self.w_feat}, "
            f"joint={self.joint}, compat={self.compat!r}"
        )
