"""HKDSR's hybrid intermediate-layer distillation terms: FSM and ACF (docs: docs/other-seeds.md §1).

HKDSR (Xie et al., Neurocomputing 2023) distils a teacher's intermediate and final SR images into a
student's with two terms, restated here from the authors' research code (``wslgqq277g/HKDSR`` b7a1562,
classes ``SimLoss``, ``AdaptLoss_gt``, ``AdaptLoss_nochannel``; the printed paper could not be read):

- FSM, frequency similarity matching (:func:`fsm_loss`): one-level Haar DWT detail bands of student S,
  teacher T and ground truth Y; per band the (N × N) inner-product matrices S_k Y_kᵀ and T_k Y_kᵀ over the
  spectrum (N = HW/4 positions); L1 between them.
- ACF, adaptive channel fusion (:class:`GlobalACF`, :class:`PixelACF`): a small network mixes Y and T into
  a convex target a·Y + b·T (a + b = 1); L1 between S and it. Its parameters train with the student.

Every image is (B, C, H, W) in the network's [-1, 1] domain, C = spectral bands. The teacher is detached
inside every term, so no gradient of the student's objective reaches it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from losses._checks import check_pair

#: FSM weight on each intermediate output and on the final output (authors' code: ``sim_w``, ``sim_wt``, x4).
FSM_WEIGHT_INTER, FSM_WEIGHT_FINAL = 0.8, 3.2
#: ACF weight on each intermediate output and on the final output (authors' code: ``ada_w``, ``ada_wt``, x4).
ACF_WEIGHT_INTER, ACF_WEIGHT_FINAL = 0.5, 1.0
#: Hidden width of the global ACF MLP (authors' ``AdaptLoss_nochannel``) and, per band, of the pixel ACF
#: (authors' ``AdaptLoss_gt``).
GLOBAL_ACF_HIDDEN, PIXEL_ACF_HIDDEN = 96, 32

DETAIL_BANDS = ("LH", "HL", "HH")


def haar_dwt(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One-level orthonormal 2-D Haar transform of every channel: (B, C, H, W) → LL, LH, HL, HH, each
    (B, C, H/2, W/2).

    A fixed depthwise 2×2 stride-2 filter bank with coefficients ±½. For the block [[a, b], [c, d]]
    (rows top, bottom): LL = (a+b+c+d)/2, LH = (a+b−c−d)/2 (vertical change: horizontal edges),
    HL = (a−b+c−d)/2 (horizontal change), HH = (a−b−c+d)/2. Orthonormal, so Σx² = Σ over the four bands
    of the squares; a constant image has zero detail bands. Equals pywt's ``dwt2(x, 'haar')`` up to the
    sign and naming of the detail bands (the official code used ``pytorch_wavelets``; no dependency here).
    H and W must be even (the official zero padding of odd sizes is not reproduced).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        found = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"haar_dwt: expected a (B, C, H, W) tensor, got {found}")
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(f"haar_dwt: height and width must be even for a 2×2 stride-2 transform, "
                         f"got {tuple(x.shape[-2:])}")
    # The four polyphase components; sums and differences are the filter bank applied with stride 2.
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return (a + b + c + d) / 2, (a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2


def _abs_product_sum(diff: torch.Tensor, gt_t: torch.Tensor) -> torch.Tensor:
    """Σ |diff @ gt_t| for diff (B, n, C) and gt_t (B, C, N)."""
    return torch.bmm(diff, gt_t).abs().sum()


def fsm_loss(student: torch.Tensor, teacher: torch.Tensor, gt: torch.Tensor, *, sample_rows: int | None = None,
             row_chunk: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """FSM = Σ_{k ∈ LH, HL, HH} mean |S_k Y_kᵀ − T_k Y_kᵀ| (official: ``SimLoss``), a 0-d tensor.

    S_k, T_k, Y_k are the detail bands of :func:`haar_dwt` reshaped to (B, N, C) with N = HW/4; each
    similarity matrix is (B, N, N) of plain (unnormalised) inner products over the C channels, and the mean
    runs over its B·N² entries. By linearity S_k Y_kᵀ − T_k Y_kᵀ = (S_k − T_k) Y_kᵀ, so one matrix per band
    is formed instead of the official two (same value).

    Memory: that matrix has B·N² entries, N = HW/4: a 128 × 128 crop gives N = 4096 and 16.8M entries
    (67 MB in fp32) per sample and band, which autograd keeps for the backward pass. Two ways to bound it:

    - ``row_chunk``: exact. Rows are processed ``row_chunk`` at a time and each chunk is recomputed in the
      backward pass (activation checkpointing), so the peak is B·row_chunk·N entries; same value and
      gradient, about twice the arithmetic.
    - ``sample_rows``: a **deviation** from HKDSR. Only a random subset of ``sample_rows`` of the N rows
      (student/teacher positions; every GT position is kept) enters the mean: an unbiased estimate of the
      loss whose cost is B·sample_rows·N; draws from ``generator`` (a CPU generator).

    Properties: 0 when S = T; symmetric in (S, T); unchanged when a constant is added to S or T (constants
    live only in LL); the teacher is detached and the GT is a constant, so gradients reach the student only.

    Args:
        student, teacher, gt: (B, C, H, W), same shape, H and W even; any value range ([-1, 1] here).
            Computed in at least fp32, outside autocast.
    """
    check_pair(student, teacher, "fsm_loss", ("student", "teacher"))
    check_pair(student, gt, "fsm_loss", ("student", "gt"))
    for name, value in (("sample_rows", sample_rows), ("row_chunk", row_chunk)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"fsm_loss: {name} must be a positive integer or None, got {value!r}")
    # Sums of C products over N² entries: kept in at least fp32 even under --amp (autocast would run bmm in
    # bf16/fp16). The DWT is linear: the detail bands of S − T are the differences of the detail bands.
    dtype = torch.promote_types(student.dtype, torch.float32)
    with torch.autocast(student.device.type, enabled=False):
        diff_bands = haar_dwt((student - teacher.detach()).to(dtype))[1:]
        gt_bands = haar_dwt(gt.detach().to(dtype))[1:]
        return _fsm_sum(diff_bands, gt_bands, sample_rows, row_chunk, generator)


def _fsm_sum(diff_bands: Sequence[torch.Tensor], gt_bands: Sequence[torch.Tensor], sample_rows: int | None,
             row_chunk: int | None, generator: torch.Generator | None) -> torch.Tensor:
    """Σ_k mean |D_k Y_kᵀ| for the detail bands D_k of S − T and Y_k of the GT (see :func:`fsm_loss`)."""
    first = diff_bands[0]
    batch, n = first.shape[0], first.shape[-2] * first.shape[-1]  # N = HW/4 positions per band
    rows = None
    if sample_rows is not None and sample_rows < n:
        rows = torch.randperm(n, generator=generator, device="cpu")[:sample_rows].to(first.device)
    total = first.new_zeros(())
    for diff, gt_k in zip(diff_bands, gt_bands, strict=True):
        diff = diff.flatten(2).transpose(1, 2)  # (B, N, C)
        gt_t = gt_k.flatten(2)  # (B, C, N)
        if rows is not None:
            diff = diff[:, rows]
        count = batch * diff.shape[1] * n
        if row_chunk is None or row_chunk >= diff.shape[1]:
            total = total + _abs_product_sum(diff, gt_t) / count
            continue
        for start in range(0, diff.shape[1], row_chunk):
            part = diff[:, start:start + row_chunk]
            if torch.is_grad_enabled() and part.requires_grad:
                part_sum = checkpoint(_abs_product_sum, part, gt_t, use_reentrant=False)
            else:
                part_sum = _abs_product_sum(part, gt_t)
            total = total + part_sum / count
    return total


class ACF(nn.Module):
    """Adaptive channel fusion (HKDSR's ACF): L1(S, a·Y + b·T) with a + b = 1, a, b ∈ (0, 1) from
    :meth:`weights`.

    The fused target is differentiable with respect to the fusion network (as in the authors' code; it is
    trained by this same loss in the student's optimiser) but not to the teacher, which is detached. Being a
    convex combination of Y and T, the target cannot collapse onto the student.
    """

    def __init__(self, bands: int) -> None:
        super().__init__()
        if not isinstance(bands, int) or isinstance(bands, bool) or bands < 1:
            raise ValueError(f"{type(self).__name__}: bands must be a positive integer, got {bands!r}")
        self.bands = bands

    def weights(self, gt: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The convex weights (a on Y, b on T), broadcastable to (B, C, H, W)."""
        raise NotImplementedError

    def fuse(self, teacher: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """The fused target a·Y + b·T̂, (B, C, H, W), elementwise between Y and T̂ (T̂ = detached T)."""
        check_pair(teacher, gt, type(self).__name__, ("teacher", "gt"))
        if teacher.shape[1] != self.bands:
            raise ValueError(f"{type(self).__name__}: expected {self.bands} bands, got {teacher.shape[1]}")
        teacher = teacher.detach()
        _, b = self.weights(gt, teacher)
        # Y + b·(T − Y) = a·Y + b·T for a = 1 − b, and exactly Y when T = Y, whatever the weights.
        return gt + b * (teacher - gt)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Mean |S − (a·Y + b·T̂)| over all elements, a 0-d tensor."""
        check_pair(student, gt, type(self).__name__, ("student", "gt"))
        return F.l1_loss(student, self.fuse(teacher, gt))


def _convex_pair(logits: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """sigmoid, then softmax over the two entries along ``dim`` (the authors' order): (a, b), a + b = 1."""
    w = torch.softmax(torch.sigmoid(logits), dim=dim)
    return w.select(dim, 0).unsqueeze(dim), w.select(dim, 1).unsqueeze(dim)


class GlobalACF(ACF):
    """One (a, b) pair per image (official: ``AdaptLoss_nochannel``): global average pool of [Y, T]
    (B, 2C) → linear 2C→96 → ReLU → linear 96→2 → sigmoid → softmax. a, b are (B, 1, 1, 1).

    ``2C·96 + 96 + 96·2 + 2`` parameters (33.3k for C = 172). The sigmoid before the softmax keeps both
    weights in [0.27, 0.73].
    """

    def __init__(self, bands: int, hidden: int = GLOBAL_ACF_HIDDEN) -> None:
        super().__init__(bands)
        self.mlp = nn.Sequential(nn.Linear(2 * bands, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2))

    def weights(self, gt: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.cat((gt, teacher), 1).mean(dim=(2, 3))  # (B, 2C)
        a, b = _convex_pair(self.mlp(pooled), dim=1)  # (B, 1) each
        return a[:, :, None, None], b[:, :, None, None]


class PixelACF(ACF):
    """An (a, b) pair per pixel and band (official: ``AdaptLoss_gt``, which loops over the colour channels):
    for every band c, [Y_c, T_c] → 1×1 conv 2→32 → ReLU → 1×1 conv 32→2 → sigmoid → softmax, written as
    grouped 1×1 convolutions (groups = C) so all bands run at once with separate weights. a, b are
    (B, C, H, W). ``C·(2·32 + 32 + 32·2 + 2)`` parameters (27.9k for C = 172).
    """

    def __init__(self, bands: int, hidden: int = PIXEL_ACF_HIDDEN) -> None:
        super().__init__(bands)
        self.net = nn.Sequential(
            nn.Conv2d(2 * bands, hidden * bands, 1, groups=bands), nn.ReLU(inplace=True),
            nn.Conv2d(hidden * bands, 2 * bands, 1, groups=bands),
        )

    def weights(self, gt: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, bands, height, width = gt.shape
        pairs = torch.stack((gt, teacher), 2).flatten(1, 2)  # (B, 2C): [Y_0, T_0, Y_1, T_1, …], one group per band
        logits = self.net(pairs).view(batch, bands, 2, height, width)
        a, b = _convex_pair(logits, dim=2)
        return a.squeeze(2), b.squeeze(2)


ACF_VARIANTS: dict[str, type[ACF]] = {"global": GlobalACF, "pixel": PixelACF}


def build_acf(variant: str, bands: int) -> ACF:
    """The ACF network named ``variant`` (``"global"`` or ``"pixel"``) for ``bands`` bands."""
    if variant not in ACF_VARIANTS:
        raise ValueError(f"ACF variant: expected one of {sorted(ACF_VARIANTS)}, got {variant!r}")
    return ACF_VARIANTS[variant](bands)


def output_weights(count: int, inter: float, final: float) -> list[float]:
    """Per-output weights for ``count`` outputs ordered shallow to deep: ``inter`` each, ``final`` on the last."""
    if count < 1:
        raise ValueError(f"output_weights: need at least one output, got {count}")
    return [inter] * (count - 1) + [final]


def hkd_terms(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], gt: torch.Tensor,
              acf: ACF | None = None, *, fsm_weights: tuple[float, float] = (FSM_WEIGHT_INTER, FSM_WEIGHT_FINAL),
              acf_weights: tuple[float, float] = (ACF_WEIGHT_INTER, ACF_WEIGHT_FINAL),
              sample_rows: int | None = None, row_chunk: int | None = None,
              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """HKDSR's distillation terms over matched outputs [inter_1, …, inter_K, final] of student and teacher.

    Returns ``{"fsm": Σ_i w_i FSM(S_i, T_i, Y), "acf": Σ_i v_i ACF(S_i, T_i, Y)}`` (weights = (inter, final)
    pairs; ``"acf"`` only when ``acf`` is given), each a 0-d tensor to add to the student's fidelity loss.
    One ``acf`` network is shared by all outputs. Teacher tensors are detached inside.
    """
    if len(student) != len(teacher) or not student:
        raise ValueError(f"hkd_terms: expected as many teacher outputs as student outputs (≥ 1), "
                         f"got {len(teacher)} and {len(student)}")
    w_fsm = output_weights(len(student), *fsm_weights)
    terms = {"fsm": sum(w * fsm_loss(s, t, gt, sample_rows=sample_rows, row_chunk=row_chunk, generator=generator)
                        for w, s, t in zip(w_fsm, student, teacher, strict=True))}
    if acf is not None:
        w_acf = output_weights(len(student), *acf_weights)
        terms["acf"] = sum(w * acf(s, t, gt) for w, s, t in zip(w_acf, student, teacher, strict=True))
    return terms
