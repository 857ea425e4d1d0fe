"""HKDSR's hybrid intermediate-layer distillation as a strategy, ``--kd_strategy hkd`` (official counterpart: the
student loss of ``wslgqq277g/HKDSR``'s KD trainer; restated in docs/other-seeds.md §1, §3.2).

Both networks emit K intermediate images besides the final one (``--hkd_heads K``, :mod:`models.heads`). The
student minimises L_S = L1(S, Y) + Σ_i [w_i·FSM(S_i, T_i, Y) + v_i·ACF(S_i, T_i, Y)] over the outputs
[inter_1 … inter_K, final] (:func:`losses.hkd.hkd_terms`; weights 0.8/3.2 and 0.5/1.0 as the authors' code).
The ACF network (``--hkd_acf global|pixel``) is this strategy's parameter: it joins the student's optimiser and
the training state, never the student's weights.

The teacher's two regimes (``--kd_mode``):

- ``online``: co-trained; L_T = fidelity(T, Y) (CSAKD's L_rec + w_sam·L_SAM + w_beba·L_BEBA) + Σ_i L1(T_i, Y)
  (its heads learn with it). The student sees every teacher tensor detached.
- ``offline`` (teacher first, then frozen): ``--teacher_ckpt`` holds the trained teacher. If that file has no
  heads (e.g. a CSAKD teacher), the K heads are trained on the frozen backbone in the same run: they are this
  strategy's parameters (:attr:`teacher_heads`), optimised with Σ_i L1(T_i, Y) alongside the student (the
  backbone records no graph: none of its parameters needs a gradient). HKDSR trains them in a phase of
  their own before the student; here the phases overlap, so early intermediate targets are poorer
  (the final output, frozen, is a full-quality target from the first step). A file with heads uses its own, frozen.

Without a teacher (``--kd_mode none``): L_S = L1(S, Y) + Σ_i L1(S_i, Y) (deep supervision of its heads).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from losses import FidelityLoss
from losses.hkd import build_acf, hkd_terms
from losses.progressive import stage_l1
from models.heads import IntermediateHeads, heads_for_frozen
from models.outputs import FusionOutput
from utils.config import Option, Range

from ..options import RELATED
from .base import DistillationStrategy, Objective, frozen_teacher_config, register


@register
class HKDStrategy(DistillationStrategy):
    """``--kd_strategy hkd``.

    Args:
        bands: spectral bands C (ACF input width).
        acf: ``"global"``, ``"pixel"`` or ``"none"`` (FSM only).
        row_chunk, sample_rows: FSM memory bounds (:func:`losses.hkd.fsm_loss`; ``sample_rows`` is a deviation).
        w_sam, w_beba, joint, compat: the online teacher's fidelity terms (as ``--kd_strategy csakd``).
        teacher_heads: heads to train on a frozen teacher without its own (offline), else None.
    """

    name = "hkd"
    options = (
        Option("hkd_acf", choices=("global", "pixel", "none"), default="global", group=RELATED, strategy="hkd",
               teacher_only=True, help="hkd: adaptive channel fusion target, one weight pair per image or per pixel "
                                       "and band"),
        Option("hkd_row_chunk", type=int, range=Range(1), group=RELATED, strategy="hkd", teacher_only=True,
               help="hkd: FSM similarity rows per chunk, recomputed in the backward pass (exact, less memory)"),
        Option("hkd_sample_rows", type=int, range=Range(1), group=RELATED, strategy="hkd", teacher_only=True,
               help="hkd: FSM on this many random rows only (a deviation from HKDSR: an unbiased estimate)"),
    )
    needs = frozenset({"inter_outs"})

    def __init__(self, bands: int, acf: str = "global", row_chunk: int | None = None,
                 sample_rows: int | None = None, w_sam: float = 0.1, w_beba: float = 0.1, joint: bool = True,
                 compat: str | None = None, teacher_heads: IntermediateHeads | None = None) -> None:
        super().__init__()
        self.acf = None if acf == "none" else build_acf(acf, bands)
        self.row_chunk, self.sample_rows = row_chunk, sample_rows
        self.fidelity = FidelityLoss(w_sam=w_sam, w_beba=w_beba, joint=joint, compat=compat)
        self.teacher_heads = teacher_heads
        self._live_heads: list[torch.Tensor] = []  # this step's teacher-head images, with their graph

    @classmethod
    def from_config(cls, cfg: dict, teacher: nn.Module | None = None) -> HKDStrategy:
        return cls(cfg["bands"], acf=cfg.get("hkd_acf") or "global", row_chunk=cfg.get("hkd_row_chunk"),
                   sample_rows=cfg.get("hkd_sample_rows"), w_sam=cfg["w_sam"], w_beba=cfg["w_beba"],
                   joint=bool(cfg["joint_loss"]), compat=cfg.get("compat"),
                   teacher_heads=frozen_teacher_heads(cfg, teacher))

    def forward_teacher(self, teacher: nn.Module, lrhsi: torch.Tensor, hrmsi: torch.Tensor,
                        gt: torch.Tensor) -> FusionOutput:
        """The teacher's outputs; with :attr:`teacher_heads`, their images keep a graph to the heads only."""
        if self.teacher_heads is None:
            return self.run("teacher", teacher, lrhsi, hrmsi)
        with torch.enable_grad():  # the co-trainer runs the frozen teacher under no_grad; the heads still learn
            out = self.run("teacher", teacher, lrhsi, hrmsi)
        self._live_heads = out.inter_outs
        return out

    def extra_heads(self, role: str) -> IntermediateHeads | None:
        """:attr:`teacher_heads` on the teacher's taps (they replace a frozen teacher's missing own heads)."""
        return self.teacher_heads if role == "teacher" else None

    def teacher_objective(self, teacher: FusionOutput, gt: torch.Tensor) -> Objective:
        """L_T = fidelity(T, Y) + Σ_i L1(T_i, Y); parts {"rec", "sam", "beba", "inter"}."""
        total, parts = self.fidelity(teacher.out, gt)
        inter = stage_l1(teacher.inter_outs, gt)
        return total + inter, {**parts, "inter": inter.detach()}

    def student_objective(self, student: FusionOutput, teacher: FusionOutput | None, gt: torch.Tensor) -> Objective:
        """L_S = L1(S, Y) + FSM + ACF; parts {"rec", "fsm", "acf"} (+ "teacher_heads" when they train here).
        Without a teacher: L1(S, Y) + Σ_i L1(S_i, Y), parts {"rec", "inter"}."""
        rec = F.l1_loss(student.out, gt)
        if teacher is None:
            inter = stage_l1(student.inter_outs, gt)
            return rec + inter, {"rec": rec.detach(), "inter": inter.detach()}
        terms = hkd_terms([*student.inter_outs, student.out], [*teacher.inter_outs, teacher.out], gt, self.acf,
                          sample_rows=self.sample_rows, row_chunk=self.row_chunk)
        total = rec + sum(terms.values())
        parts = {"rec": rec.detach(), **{k: v.detach() for k, v in terms.items()}}
        if self._live_heads:
            heads = stage_l1([y.float() for y in self._live_heads], gt)
            self._live_heads = []
            total = total + heads
            parts["teacher_heads"] = heads.detach()
        return total, parts


def frozen_teacher_heads(cfg: dict, teacher: nn.Module | None = None) -> IntermediateHeads | None:
    """Heads for the frozen teacher of an offline run when that DTS teacher has none of its own: ``--hkd_heads``
    of them (:func:`models.heads.heads_for_frozen`); None otherwise. The teacher is described by
    ``teacher.model_config()`` when given (the co-trainer's built teacher), else by the file ``--teacher_ckpt``."""
    saved = frozen_teacher_config(cfg, teacher)
    count = cfg.get("hkd_heads") or 2  # 0 only for a PSD student, whose two earlier stage images are matched
    return None if saved is None else heads_for_frozen(saved, count)
