"""CSAKD's online distillation (official: the student's loss in train_CSAKD.py): response distillation on
the HR-HSI and feature distillation on the fused feature, on top of the fidelity terms, plus this project's
measured variants of it (flags of this strategy; docs/distillation.md).

Teacher objective: ``losses.FidelityLoss`` (L_rec + w_sam·L_SAM + w_beba·L_BEBA). Student objective:
``losses.StudentLoss`` with the detached teacher output and fused feature; without a teacher
(``--kd_mode none``) the fidelity terms alone. With the variants off (their defaults) the sums are the
official ones, bit for bit (under ``--compat official`` too).

Variants (no official counterpart):

* ``--feat_adapter``: a 1×1 convolution (:class:`losses.FeatureAdapter`, identity-initialised) maps the
  student's fused feature to the teacher's width before the feature term. Its parameters are this
  strategy's: they train in the student's optimiser and live in the training state, never in the student's
  exported weights.
* ``--feat_norm std|cosine``: the feature term compares per-channel standardised features (MSE) or the
  per-pixel cosine (:class:`losses.NormalisedFeatureKDLoss`) instead of the official BCE (``none``).
* ``--kd_warmup E``: w_kd and w_feat ramp linearly from 0 over the first E epochs
  (:func:`losses.warmup_factor`, set per epoch by :meth:`set_epoch`).
* ``--kd_decay F``: late decay, w_kd and w_feat ramp linearly to 0 over the last fraction F of the epochs
  (:func:`losses.decay_factor`; the last epoch trains without distillation). Its teacher-free control is the
  student alone.
* ``--block_mix P`` (offline): with probability P per step the student's stream features continue through the
  frozen teacher's remaining blocks, fuser and head; L_mix on that composite output joins the objective with
  weight ``--block_mix_weight`` (:mod:`engine.strategies.mixing`).
* a distillation weight that is 0 now (given so, or scaled to 0 by a schedule) keeps its term out of the graph
  (logged only): the student then computes bit for bit what the student alone computes.
* per-term gradient norms on the student's parameters (TensorBoard ``grad/student/<term>``, every
  ``--grad_log_every`` steps; the co-trainer asks :meth:`student_gradient_norms`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from losses import FeatureAdapter, FeatureKDLoss, NormalisedFeatureKDLoss, StudentLoss, term_gradient_norms
from losses.distillation import FEATURE_NORMS, decay_factor, warmup_factor
from models.outputs import FusionOutput
from utils.config import Option, Range

from ..options import VARIANTS, WEIGHTS
from .base import DistillationStrategy, Objective, frozen_teacher_config, register
from .mixing import block_mixed, mixes

FEAT_NORM_CHOICES = ("none", *FEATURE_NORMS)  # none = the official BCE feature term


def _distil(name: str, group: str = VARIANTS, **kw) -> Option:
    """An option of this strategy's distillation terms: no other strategy reads it, a run without teacher neither."""
    return Option(name, group=group, strategy="csakd", teacher_only=True, **kw)


_WEIGHT, _FRACTION = Range(0), Range(0, high=1)
OPTIONS = (
    _distil("w_kd", WEIGHTS, type=float, default=0.1, range=_WEIGHT, help="response distillation SmoothL1(S, T)"),
    _distil("w_feat", WEIGHTS, type=float, default=0.0, official=0.1, range=_WEIGHT,
            # 0 measured best (docs/distillation.md)
            help="feature distillation BCE(σ(F_S), σ(F_T))"),
    _distil("feat_adapter", switch=True,
            help="learn a 1×1 conv from the student's fused feature to the teacher's before the feature term "
                 "(trained with the student, saved in state.pth, not in the student's weights)"),
    _distil("feat_norm", choices=FEAT_NORM_CHOICES, default="none",
            help="feature term: none = official BCE; std = MSE of per-channel standardised features; cosine = 1 − "
                 "per-pixel cosine"),
    _distil("kd_warmup", type=float, default=0.0, range=_WEIGHT,
            help="epochs of a linear warm-up of w_kd and w_feat from 0 (0 = none)"),
    _distil("kd_decay", type=float, default=0.0, range=_FRACTION,
            help="late decay: w_kd and w_feat fall linearly to 0 over this last fraction of the epochs (the last "
                 "epoch without distillation; 0 = none)"),
    _distil("block_mix", type=float, default=0.0, range=_FRACTION,
            help="--kd_mode offline: probability per step that the student's stream features continue through the "
                 "frozen teacher's remaining blocks, fuser and head, trained to the GT and the teacher (MiPKD-style "
                 "block mixing; 0 = off)"),
    _distil("block_mix_weight", type=float, default=0.1, range=_WEIGHT, help="weight of the block-mixing loss"),
    # Without a teacher these label with the GT (the teacher-free control); other strategies refuse them.
    Option("w_unlabelled", type=float, default=0.1, range=_WEIGHT, group=VARIANTS,
           help="weight of SmoothL1(S, T) on the --unlabelled pairs (the teacher's labels; GT for none)"),
    Option("kd_augment", switch=True, group=VARIANTS,
           help="invertible-augmentation consistency: a random flip / transpose / sign inversion of the student's "
                "inputs, undone on its output, matched to the teacher's output on the original view (the GT with "
                "--kd_mode none: the teacher-free control)"),
    Option("w_augment", type=float, default=0.1, range=_WEIGHT, group=VARIANTS,
           help="weight of the --kd_augment term"),
)


def teacher_width(cfg: dict, teacher: nn.Module | None = None) -> int:
    """The teacher's fused-feature width nf: ``--num_base_chs`` (both networks share it), or, for a frozen teacher
    (``--kd_mode offline``), its own (:func:`~engine.strategies.base.frozen_teacher_config`), which may differ."""
    frozen = frozen_teacher_config(cfg, teacher)
    return int(cfg["num_base_chs"] if frozen is None else frozen["num_base_chs"])


@register
class CSAKDStrategy(DistillationStrategy):
    """The paper's strategy, ``--kd_strategy csakd`` (the default), with its variants.

    Args:
        w_sam, w_beba: fidelity weights (official 0.1 each); w_kd, w_feat: distillation weights (official 0.1).
        joint: False is the official ``--joint_loss 0`` (both totals = L_rec).
        compat: None or "official" (SAM/BEBA variants, docs/decisions.md #2, #3).
        feat_adapter: (student nf, teacher nf) to learn a :class:`~losses.FeatureAdapter` between them; None: none.
        feat_norm: "none" (official BCE), "std" or "cosine" (:class:`~losses.NormalisedFeatureKDLoss`).
        kd_warmup: epochs of the linear warm-up of w_kd and w_feat (0 = none).
        kd_decay: fraction of the ``epochs`` over which w_kd and w_feat decay linearly to 0 at the end (0 = none).
        epochs: the run's epochs (for ``kd_decay``).
        block_mix: probability per step of the block-mixed composite (0 = off; needs ``frozen``).
        block_mix_weight: weight of L_mix (scaled by the schedule, as w_kd).
        frozen: the frozen teacher (offline) the composite continues through; seed: of the mixing decisions.
    """

    name = "csakd"
    options = OPTIONS
    needs = frozenset({"feat"})

    def __init__(self, w_sam: float = 0.1, w_beba: float = 0.1, w_kd: float = 0.1, w_feat: float = 0.1,
                 joint: bool = True, compat: str | None = None, feat_adapter: tuple[int, int] | None = None,
                 feat_norm: str = "none", kd_warmup: float = 0, kd_decay: float = 0, epochs: int = 1,
                 block_mix: float = 0, block_mix_weight: float = 0.1, frozen: nn.Module | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        if feat_norm not in FEAT_NORM_CHOICES:
            raise ValueError(f"--feat_norm {feat_norm!r}: expected one of {list(FEAT_NORM_CHOICES)}")
        if not kd_warmup >= 0:
            raise ValueError(f"--kd_warmup {kd_warmup!r}: expected a number of epochs >= 0")
        feat_loss = FeatureKDLoss() if feat_norm == "none" else NormalisedFeatureKDLoss(feat_norm)
        self.student_loss = StudentLoss(w_sam=w_sam, w_beba=w_beba, w_kd=w_kd, w_feat=w_feat, joint=joint,
                                        compat=compat, feat_loss=feat_loss)
        self.adapter = None if feat_adapter is None else FeatureAdapter(*feat_adapter)
        if not 0 <= kd_decay <= 1:
            raise ValueError(f"--kd_decay {kd_decay!r}: expected a fraction of the epochs in [0, 1]")
        self.kd_warmup, self.kd_decay, self.epochs = kd_warmup, kd_decay, int(epochs)
        self.kd_scale = self._scale(0)
        if not 0 <= block_mix <= 1:
            raise ValueError(f"--block_mix {block_mix!r}: expected a probability in [0, 1]")
        if block_mix and frozen is None:
            raise ValueError("--block_mix continues the student through a frozen teacher: it needs --kd_mode offline")
        self.block_mix, self.block_mix_weight, self.seed = block_mix, block_mix_weight, int(seed)
        self._frozen = (frozen,) if block_mix else ()  # a tuple: not a submodule (no teacher parameter is ours)
        if block_mix:  # steps so far, in the training state (only with block mixing: older states stay loadable)
            self.register_buffer("mix_step", torch.zeros((), dtype=torch.int64))
        self._composite: torch.Tensor | None = None
        self._weighted: dict[str, torch.Tensor | None] = {}  # the last objective's weighted terms (None: not computed)

    @classmethod
    def from_config(cls, cfg: dict, teacher: nn.Module | None = None) -> CSAKDStrategy:
        adapter = (int(cfg["num_base_chs"]), teacher_width(cfg, teacher)) if cfg.get("feat_adapter") else None
        return cls(w_sam=cfg["w_sam"], w_beba=cfg["w_beba"], w_kd=cfg["w_kd"], w_feat=cfg["w_feat"],
                   joint=bool(cfg["joint_loss"]), compat=cfg.get("compat"), feat_adapter=adapter,
                   feat_norm=cfg.get("feat_norm") or "none", kd_warmup=cfg.get("kd_warmup") or 0,
                   kd_decay=cfg.get("kd_decay") or 0, epochs=int(cfg.get("epochs") or 1),
                   block_mix=cfg.get("block_mix") or 0, block_mix_weight=cfg.get("block_mix_weight", 0.1),
                   frozen=teacher if cfg.get("kd_mode") == "offline" else None, seed=int(cfg.get("seed") or 0))

    def forward_student(self, student: nn.Module, lrhsi: torch.Tensor, hrmsi: torch.Tensor) -> FusionOutput:
        """The student's outputs; on a mixing step also the block-mixed composite (kept for the objective)."""
        out = super().forward_student(student, lrhsi, hrmsi)
        if self.block_mix and torch.is_grad_enabled():
            step = int(self.mix_step)
            self.mix_step += 1
            if mixes(self.seed, step, self.block_mix):
                self._composite = block_mixed(student, self._frozen[0], lrhsi, hrmsi)
        return out

    def set_epoch(self, epoch: int) -> None:
        """The schedule factor of ``epoch`` (0-based) on w_kd and w_feat: the warm-up's min(1, epoch / kd_warmup)
        times the late decay's :func:`~losses.distillation.decay_factor`."""
        self.kd_scale = self._scale(epoch)

    def _scale(self, epoch: int) -> float:
        decay = decay_factor(epoch, max(self.epochs, epoch + 1), self.kd_decay) if self.kd_decay else 1.0
        return warmup_factor(epoch, self.kd_warmup) * decay

    def teacher_objective(self, teacher: FusionOutput, gt: torch.Tensor) -> Objective:
        """L_T: fidelity of the teacher's (B, C, H, W) output; parts {"rec", "sam", "beba"}."""
        return self.student_loss.fidelity(teacher.out, gt)

    def student_objective(self, student: FusionOutput, teacher: FusionOutput | None, gt: torch.Tensor) -> Objective:
        """L_S with parts {"rec", "sam", "beba", "kd", "feat"}; without a teacher the fidelity terms alone."""
        loss = self.student_loss
        if teacher is None or self._distillation_off():
            self._weighted, parts = loss.fidelity.weighted_terms(student.out, gt)
            if teacher is not None:  # logged only: the student computes exactly what it computes alone
                self._weighted = {**self._weighted, "kd": None, "feat": None}  # gradient norm 0 (no term)
                with torch.no_grad():
                    feat = student.feat if self.adapter is None else self.adapter(student.feat)
                    parts = {**parts, "kd": loss.kd(student.out, teacher.out), "feat": loss.feat(feat, teacher.feat)}
            return loss.fidelity.total(self._weighted), parts
        feat = student.feat if self.adapter is None else self.adapter(student.feat)
        self._weighted, parts = loss.weighted_terms(student.out, feat, gt, teacher.out, teacher.feat, self.kd_scale)
        total = loss.total(self._weighted)
        if self.block_mix:  # "mix": L_mix on mixing steps, 0 on the others; "mixed": 1 / 0 (its mean: the mix rate)
            composite, self._composite = self._composite, None
            mixed = composite is not None
            mix = (loss.fidelity.rec(composite.float(), gt) + loss.kd(composite.float(), teacher.out) if mixed
                   else torch.zeros((), device=gt.device))
            if mixed:
                self._weighted["mix"] = (self.block_mix_weight * self.kd_scale) * mix
                total = total + self._weighted["mix"]
            parts = {**parts, "mix": mix.detach(), "mixed": torch.tensor(float(mixed), device=gt.device)}
        return total, parts

    def _distillation_off(self) -> bool:
        """Both distillation weights are 0 now (given so, or at the start of a warm-up): the terms stay out of the
        graph, so the student's gradients are bit for bit those of the student alone (common random numbers; the
        order of autograd's accumulation would otherwise differ). Under ``--compat official`` the terms are
        always summed, as the official script does."""
        w, mix = self.student_loss, self.block_mix * self.block_mix_weight
        return w.compat != "official" and (w.w_kd + w.w_feat + mix) * self.kd_scale == 0

    def student_gradient_norms(self, params: Iterable[nn.Parameter]) -> dict[str, torch.Tensor]:
        """‖∂(w·L_term)/∂θ‖₂ over the student's parameters θ for each weighted term of the last student objective
        (detached 0-d float64 tensors; the graph is kept for the step's backward). One extra backward per term."""
        terms, self._weighted = self._weighted, {}
        live = {k: v for k, v in terms.items() if v is not None}
        norms = term_gradient_norms(live, list(params)) if live else {}
        zero = torch.zeros((), dtype=torch.float64)
        return {k: norms[k] if k in norms else zero for k in terms}
