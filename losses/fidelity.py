"""Fidelity losses between a network output and the ground truth (train_CSAKD.py; [-1, 1] domain).

All modules take ``(pred, target)``: (B, C, H, W) tensors of the same shape, C = spectral bands,
values in the network's [-1, 1] domain, and return a 0-d tensor (mean over the batch).

- :class:`ReconstructionLoss`: smooth-L1 with β = 1. Errors in [-1, 1] are almost always below 1 in
  magnitude, where smooth-L1 is ½·d², so in practice this is **half the mean squared error** (the
  official script calls it ``L1Loss``).
- :class:`SAMLoss`: spectral-angle surrogate 1 − mean cosine between per-pixel spectra
  (docs/decisions.md #2; ``compat="official"`` keeps the official non-spectral reshape).
- :class:`BEBALoss`: band-energy-balance-aware loss, a per-band squared error weighted by the inverse
  band energy of the target (docs/decisions.md #3; ``compat="official"`` keeps the official −½ offset).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from losses._checks import check_compat, check_pair

#: Added to every band's mean squared target value before it is used as a divisor (official value).
#: It bounds the BEBA weights by 1/0.1 = 10 and makes a zero-energy band harmless.
BAND_ENERGY_OFFSET = 0.1

#: Added to the norm product of the official SAM loss (official value).
OFFICIAL_SAM_EPS = 1e-8


class ReconstructionLoss(nn.Module):
    """L_rec = SmoothL1_β(pred, target), mean over all elements (official: ``nn.SmoothL1Loss()`` in
    train_CSAKD.py, named ``L1Loss`` there).

    Per element with d = pred − target: ½·d²/β if |d| < β else |d| − ½·β. With the default β = 1 and
    both tensors in [-1, 1] this is ≈ ½·MSE, not an L1 loss.
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(pred, target, "ReconstructionLoss", ("pred", "target"))
        return F.smooth_l1_loss(pred, target, beta=self.beta)


def spectral_cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − mean over pixels of cos∠(pred[b, :, h, w], target[b, :, h, w]) (spectra along dim 1).

    Pixels where either spectrum has zero norm have no angle: they are left out of the mean (as the
    official ``sam_loss`` function in trainOps.py does) and receive no gradient. The cosine is
    clamped to [-1, 1]. If no pixel has an angle the loss is 0. Value range [0, 2]; invariant to
    positive per-pixel rescaling of either input.
    """
    dot = (pred * target).sum(dim=1)  # (B, H, W)
    norm_product_sq = pred.pow(2).sum(dim=1) * target.pow(2).sum(dim=1)
    valid = norm_product_sq > 0
    # Take the root of a safe value where the norm is zero: sqrt'(0) = inf would turn the masked
    # zero gradient into NaN.
    safe = torch.where(valid, norm_product_sq, torch.ones_like(norm_product_sq))
    cos = (dot / safe.sqrt()).clamp(-1.0, 1.0)
    # Σ(1 − cos) / n_valid == 1 − mean(cos) over the valid pixels, and 0 (not NaN) when n_valid = 0,
    # without a host synchronisation to test for that case.
    n_valid = valid.sum().clamp_min(1)
    return torch.where(valid, 1.0 - cos, torch.zeros_like(cos)).sum() / n_valid


def official_sam_loss(
    pred: torch.Tensor, target: torch.Tensor, eps: float = OFFICIAL_SAM_EPS
) -> torch.Tensor:
    """The official ``SAMLoss`` class (train_CSAKD.py / trainOps.py), reproduced exactly.

    Both (B, C, H, W) tensors are reshaped to (B·H·W, C) in row-major order, so each "vector" is C
    consecutive elements of one band's image (a run of pixels along a row), not a pixel spectrum.
    Loss = 1 − mean over those vectors of ⟨x, y⟩ / (‖x‖·‖y‖ + eps); no clamping.
    """
    channels = pred.shape[1]
    x = pred.reshape(-1, channels)
    y = target.reshape(-1, channels)
    num = (x * y).sum(dim=1)
    den = torch.linalg.vector_norm(x, dim=1) * torch.linalg.vector_norm(y, dim=1) + eps
    return 1.0 - (num / den).mean()


class SAMLoss(nn.Module):
    """Spectral-angle loss L_SAM (official: ``SAMLoss`` in trainOps.py, used by train_CSAKD.py).

    Default: :func:`spectral_cosine_loss`, 1 − mean cosine between per-pixel spectra, zero-norm
    pixels masked (docs/decisions.md #2). ``compat="official"``: :func:`official_sam_loss`, the official
    reshape behaviour, which is not a spectral quantity. No arccos in either: the loss is a
    surrogate of the angle, in [0, 2], unitless.
    """

    def __init__(self, compat: str | None = None) -> None:
        super().__init__()
        check_compat(compat, "SAMLoss")
        self.compat = compat

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(pred, target, "SAMLoss", ("pred", "target"))
        if self.compat == "official":
            return official_sam_loss(pred, target)
        return spectral_cosine_loss(pred, target)


class BEBALoss(nn.Module):
    """Band-energy-balance-aware loss L_BEBA (official: ``BandWiseMSE`` in trainOps.py).

    With d = |pred − target| per element and, per sample b and band c, the band energy
    e_bc = mean_pixels(target²) + 0.1 (measured on the [-1, 1]-scaled target)::

        ℓ(d)  = ½·d² + max(0, d − 1)             (default; = smooth-L1 for d ≤ 1, ≥ 0 everywhere)
        ℓ(d)  = ½·d² + max(0, d − 1) − ½         (compat="official")
        L     = mean_{b,c} [ mean_pixels ℓ(d) / e_bc ]

    Low-energy bands get larger weights (at most 1/0.1 = 10), so every band contributes comparably.
    Both forms have exactly the same gradient, [(x−y) + sign(x−y)·1(|x−y| > 1)] / (e_bc·B·C·H·W);
    the official constant only shifts the value, which is then negative (−½·mean(1/e_bc) at
    pred = target). The default is 0 at pred = target and never negative (docs/decisions.md #3).
    Note that for d > 1 the element term keeps growing quadratically (½d² + d − 1): it is the official
    form minus its constant, not a true smooth-L1, so that the gradient stays identical.
    """

    def __init__(self, compat: str | None = None) -> None:
        super().__init__()
        check_compat(compat, "BEBALoss")
        self.compat = compat

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(pred, target, "BEBALoss", ("pred", "target"))
        # mean(y² + 0.1) rather than mean(y²) + 0.1: same value, same rounding as the official code.
        energy = (target.pow(2) + BAND_ENERGY_OFFSET).mean(dim=(2, 3))  # (B, C)
        d = (pred - target).abs()
        elementwise = 0.5 * d.pow(2) + F.relu(d - 1.0)
        if self.compat == "official":
            elementwise = elementwise - 0.5
        return (elementwise.mean(dim=(2, 3)) / energy).mean()
