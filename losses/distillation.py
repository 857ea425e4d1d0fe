"""Distillation losses of the student (train_CSAKD.py). The teacher tensors are detached here, so the
teacher never receives gradient from the student's objective, whatever the caller passes.

Official terms: ``ResponseKDLoss``, ``FeatureKDLoss``. Pieces of this project's CSAKD variants (standalone;
the ``csakd`` strategy wires them): ``FeatureAdapter``, ``NormalisedFeatureKDLoss``, ``warmup_factor``,
``decay_factor``, and the gradient diagnostics ``term_gradient_norms`` / ``term_gradient_cosines``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


class FeatureAdapter(nn.Module):
    """A 1×1 convolution mapping the student's fused feature (B, nf_s, H, W) to the teacher's width
    (B, nf_t, H, W), so that feature distillation compares features through a learned map (FitNets'
    regressor) rather than channel by channel. No official counterpart (a CSAKD variant of this project).

    Initialisation (deterministic, no random numbers drawn): bias 0 and weight[i, j] = 1 if j = i mod nf_s,
    else 0, i.e. teacher channel i starts as a copy of student channel i mod nf_s — the identity when
    nf_s = nf_t. Enabling the adapter therefore leaves the starting feature loss unchanged and does not
    shift the seeded random stream (the networks get the same initial weights with and without it).
    Its parameters are a strategy's extra parameters: trained with the student, never exported with it.
    """

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__()
        for name, value in (("student_channels", student_channels), ("teacher_channels", teacher_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"FeatureAdapter: {name} must be a positive integer, got {value!r}")
        # skip_init: the default (random) initialisation would draw from the seeded stream
        self.proj = nn.utils.skip_init(nn.Conv2d, student_channels, teacher_channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        n_t, n_s = self.proj.out_channels, self.proj.in_channels
        with torch.no_grad():
            self.proj.weight.zero_()
            self.proj.weight[torch.arange(n_t), torch.arange(n_t) % n_s, 0, 0] = 1.0
            self.proj.bias.zero_()

    def forward(self, student_feat: torch.Tensor) -> torch.Tensor:
        if student_feat.dim() != 4 or student_feat.shape[1] != self.proj.in_channels:
            raise ValueError(f"FeatureAdapter: expected a (B, {self.proj.in_channels}, H, W) student feature, "
                             f"got {tuple(student_feat.shape)}")
        return self.proj(student_feat)


FEATURE_NORMS = ("std", "cosine")


def standardise_channels(feat: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each (sample, channel) map of ``feat`` (B, C, H, W) shifted to mean 0 and scaled to variance 1 over its
    H×W positions: (x − mean) / sqrt(var + eps), biased variance (an instance norm without affine terms)."""
    mean = feat.mean(dim=(2, 3), keepdim=True)
    var = feat.var(dim=(2, 3), keepdim=True, unbiased=False)
    return (feat - mean) / torch.sqrt(var + eps)


class NormalisedFeatureKDLoss(nn.Module):
    """Feature distillation on scale-free features, a CSAKD variant of this project (no official counterpart).

    ``kind="std"``: MSE between the per-channel standardised features (``standardise_channels`` on each
    sample's H×W map), i.e. it matches the spatial pattern of every channel, not its offset or scale; ≥ 0,
    0 iff each student channel is a positive affine copy of the teacher's; at most 4 (two unit-variance maps).
    ``kind="cosine"``: 1 − mean over pixels of the cosine between the student's and the teacher's feature
    vectors (along the channels); in [0, 2], scale-free per pixel.

    Inputs: student feature (B, C, H, W) (after a ``FeatureAdapter`` when widths differ) and the teacher's
    (B, C, H, W), any range; the teacher is detached here. Returns a 0-d tensor.
    """

    def __init__(self, kind: str = "std", eps: float = 1e-5) -> None:
        super().__init__()
        if kind not in FEATURE_NORMS:
            raise ValueError(f"NormalisedFeatureKDLoss: kind must be one of {FEATURE_NORMS}, got {kind!r}")
        if not eps > 0:
            raise ValueError(f"NormalisedFeatureKDLoss: eps must be > 0, got {eps!r}")
        self.kind, self.eps = kind, eps

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
        check_pair(student_feat, teacher_feat, "NormalisedFeatureKDLoss", ("student_feat", "teacher_feat"))
        teacher_feat = teacher_feat.detach()
        if self.kind == "std":
            s, t = standardise_channels(student_feat, self.eps), standardise_channels(teacher_feat, self.eps)
            return F.mse_loss(s, t)
        return 1.0 - F.cosine_similarity(student_feat, teacher_feat, dim=1, eps=self.eps).mean()

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, eps={self.eps}"


def warmup_factor(epoch: float, warmup_epochs: float) -> float:
    """Multiplier of the distillation weights during warm-up: a linear ramp min(1, epoch / warmup_epochs).

    ``epoch`` is 0-based (a float allows per-step ramps: epoch + step / steps_per_epoch). Epoch 0 trains
    without distillation, epoch k < E with k/E of the weights, epoch E and later with the full weights;
    ``warmup_epochs`` 0 disables the warm-up (always 1). A pure function of the epoch, so resumed runs agree.
    """
    if not warmup_epochs >= 0:
        raise ValueError(f"warmup_factor: warmup_epochs must be >= 0, got {warmup_epochs!r}")
    if not epoch >= 0:
        raise ValueError(f"warmup_factor: epoch must be >= 0, got {epoch!r}")
    return 1.0 if warmup_epochs == 0 else min(1.0, float(epoch) / float(warmup_epochs))


def decay_factor(epoch: int, epochs: int, fraction: float) -> float:
    """Multiplier of the distillation weights in a late decay: 1 until the last ``fraction`` of the ``epochs``, then
    a linear ramp to 0, min(1, max(0, (epochs − 1 − epoch) / (fraction · epochs))), so the final epoch trains
    without distillation (the student ends at its own fidelity optimum). ``epoch`` is 0-based; ``fraction`` 0
    disables the decay (always 1). E.g. 10 epochs, fraction 0.3: epochs 0–6 → 1, 7 → 2/3, 8 → 1/3, 9 → 0."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"decay_factor: fraction must lie in [0, 1], got {fraction!r}")
    if not 0 <= epoch < epochs:
        raise ValueError(f"decay_factor: epoch must lie in [0, {epochs}), got {epoch!r}")
    if fraction == 0:
        return 1.0
    return min(1.0, max(0.0, (epochs - 1 - epoch) / (fraction * epochs)))


def _term_gradients(terms: Mapping[str, torch.Tensor], params: Sequence[torch.Tensor]) -> dict[str, list]:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("term gradients: none of the given parameters requires grad")
    grads = {}
    for name, term in terms.items():
        if not isinstance(term, torch.Tensor) or term.numel() != 1:
            raise ValueError(f"term gradients: term {name!r} must be a 0-d (scalar) tensor")
        if not term.requires_grad:  # a term evaluated without autograd (joint=False, weight 0): no gradient
            grads[name] = [None] * len(params)
            continue
        grads[name] = list(torch.autograd.grad(term, params, retain_graph=True, allow_unused=True))
    return grads


def term_gradient_norms(terms: Mapping[str, torch.Tensor], params: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The L2 norm of each loss term's gradient on ``params`` (e.g. the student's parameters), taken over all of
    them at once: {name: sqrt(Σ_p ‖∂term/∂p‖²)} as detached 0-d tensors (no host synchronisation).

    Pass the weighted terms (w·L) to see each term's share of the total gradient (TensorBoard
    ``grad/student/<term>``). The graph is kept (``retain_graph``), so the caller can still back-propagate
    the total; parameters a term does not reach, and terms that do not require grad, count as 0.
    No official counterpart (a diagnostic of this project).
    """
    out = {}
    for name, grads in _term_gradients(terms, params).items():
        squares = [g.detach().double().pow(2).sum() for g in grads if g is not None]
        out[name] = torch.stack(squares).sum().sqrt() if squares else torch.zeros((), dtype=torch.float64)
    return out


def term_gradient_cosines(terms: Mapping[str, torch.Tensor], params: Sequence[torch.Tensor],
                          reference: str) -> dict[str, torch.Tensor]:
    """The cosine between each term's gradient and the ``reference`` term's gradient on ``params`` (all
    parameters as one vector), as detached 0-d float64 tensors in [−1, 1]; 0 where either gradient is zero.

    A negative cosine means the term pulls the parameters against the reference (e.g. the reconstruction
    term). No official counterpart (a diagnostic of this project).
    """
    if reference not in terms:
        raise ValueError(f"term_gradient_cosines: reference {reference!r} is not one of the terms {sorted(terms)}")
    grads = _term_gradients(terms, params)
    ref = grads[reference]

    def dot(a: list, b: list) -> torch.Tensor:
        parts = [x.detach().double().flatten() @ y.detach().double().flatten()
                 for x, y in zip(a, b, strict=True) if x is not None and y is not None]
        return torch.stack(parts).sum() if parts else torch.zeros((), dtype=torch.float64)

    ref_norm = dot(ref, ref).sqrt()
    out = {}
    for name, g in grads.items():
        den = dot(g, g).sqrt() * ref_norm
        out[name] = dot(g, ref) / den if den > 0 else torch.zeros((), dtype=torch.float64)
    return out
