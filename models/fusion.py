"""Fusion of the four DTS stream features (``--adaptive_fuse`` 0–4).

Every fuser takes the four stream features in the official order, all (B, nf, H, W) at the
HR-MSI resolution, and returns the fused feature (B, nf, H, W):

- ``s1`` = Z_h upsampled (LR-HSI only), ``s2`` = Z_m (HR-MSI only),
- ``s3`` = Z_mh upsampled (LR-HSI with the downsampled HR-MSI), ``s4`` = Z_hm (upsampled LR-HSI with HR-MSI).

Attention (modes 2 and 3) comes in two forms, chosen by ``compat`` (docs/decisions.md #1):

- ``None`` (default, corrected): per-head channel cross-attention. q = W_q s1, k = W_k s2, v = W_v s3
  are split into ``heads`` heads of d channels; q and k are L2-normalised along the spatial
  positions, so the d×d logits are cosine similarities times a learnable per-head temperature
  (initialised to 1). The softmax therefore stays unsaturated at any image size.
- ``"official"``: what the official code computes. Its second einsum sums the attention's column
  index and the value channel index independently, so each head returns the sum of its d value
  channels (times the softmax row sums, which are 1), repeated d times: q and k have no effect on the
  output and receive only rounding-level gradients. The computation is kept literally (q, k and the
  softmax are evaluated) so that operation counts and gradients are the official ones.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

ATTN_DIM = 64  # channels of q, k and v (official: reduced_dim)
ATTN_HEADS = 4  # heads; d = ATTN_DIM // ATTN_HEADS = 16 channels per head

FUSION_MODES = {
    0: "sum",
    1: "sigmoid weights",
    2: "multi-head cross-attention",
    3: "CSA (cross self-attention)",
    4: "concat attention",
}


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast switched off on ``device`` (devices without autocast, such as ``meta``, need nothing)."""
    if device.type in ("cpu", "cuda", "xpu", "mps"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class SumFusion(nn.Module):
    """``adaptive_fuse=0``: plain sum of the four streams (official: the inline ``fuse = ... + ...``)."""

    def forward(self, s1: torch.Tensor, s2: torch.Tensor, s3: torch.Tensor, s4: torch.Tensor) -> torch.Tensor:
        return s1 + s2 + s3 + s4


class SigmoidWeightFusion(nn.Module):
    """``adaptive_fuse=1``: input-independent per-channel weights (official: SigmoidAttentionFusion).

    ``F = Σ_i sigmoid(w_i) ⊙ s_i`` with ``w`` (4, nf, 1, 1) initialised from N(0, 1).
    """

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.randn(4, nf, 1, 1))

    def forward(self, s1: torch.Tensor, s2: torch.Tensor, s3: torch.Tensor, s4: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.weights)
        return w[0] * s1 + w[1] * s2 + w[2] * s3 + w[3] * s4


class CrossAttentionFusion(nn.Module):
    """``adaptive_fuse=2``: multi-head channel cross-attention plus ``s4`` (official: MultiHeadCrossAttention).

    ``A = W_o · Attn(q = W_q s1, k = W_k s2, v = W_v s3) + s4`` with 1×1 convolutions
    W_q, W_k, W_v: nf→64 and W_o: 64→nf; see the module docstring for the two attention forms.
    """

    def __init__(self, nf: int, compat: str | None = None, dim: int = ATTN_DIM, heads: int = ATTN_HEADS) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention: dim={dim} must be divisible by heads={heads}")
        self.compat = compat
        self.heads = heads
        self.query_conv = nn.Conv2d(nf, dim, 1)
        self.key_conv = nn.Conv2d(nf, dim, 1)
        self.value_conv = nn.Conv2d(nf, dim, 1)
        self.output_conv = nn.Conv2d(dim, nf, 1)
        if compat != "official":
            # Per-head temperature of the cosine-similarity logits (Restormer-style, starts at 1).
            self.temperature = nn.Parameter(torch.ones(heads, 1, 1))

    def attention_map(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, heads, d, d) between query and key channels; rows sum to 1.

        Corrected: softmax of cosine similarities (q, k L2-normalised over the positions) times the
        per-head temperature. Official: softmax of raw dot products over all positions divided by √d,
        which saturates at large images (it has no effect on the official output either way); computed
        in float32 under autocast, where the fp16 products would overflow.
        """
        b, n = s1.shape[0], s1.shape[-2] * s1.shape[-1]
        q = self.query_conv(s1).reshape(b, self.heads, -1, n)
        k = self.key_conv(s2).reshape(b, self.heads, -1, n)
        if self.compat == "official":
            # In float32 even under autocast: the raw products over all H·W positions exceed the fp16
            # range at 256² (inf → NaN softmax → NaN output, though the map has no effect on the output).
            wide = torch.promote_types(q.dtype, torch.float32)
            with _no_autocast(q.device):
                logits = q.to(wide) @ k.to(wide).transpose(-2, -1) / q.shape[2] ** 0.5
                return torch.softmax(logits, dim=-1)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        return torch.softmax(q @ k.transpose(-2, -1) * self.temperature, dim=-1)

    def attend(self, s1: torch.Tensor, s2: torch.Tensor, s3: torch.Tensor, s4: torch.Tensor) -> torch.Tensor:
        """The attention branch plus the ``s4`` skip: (B, nf, H, W)."""
        b, _, h, w = s3.shape
        attn = self.attention_map(s1, s2)
        v = self.value_conv(s3).reshape(b, self.heads, -1, h * w)
        if self.compat == "official":
            # The official einsum 'bhqk,bhvd->bhqd' names A's column index and V's channel index
            # differently, so it sums each on its own: (row sums of A, all ≈1) × (sum of V's channels).
            out = attn.sum(dim=-1, keepdim=True) * v.sum(dim=2, keepdim=True)
        else:
            out = attn @ v
        return self.output_conv(out.reshape(b, -1, h, w)) + s4

    def forward(self, s1: torch.Tensor, s2: torch.Tensor, s3: torch.Tensor, s4: torch.Tensor) -> torch.Tensor:
        return self.attend(s1, s2, s3, s4)


class CSAFusion(CrossAttentionFusion):
    """``adaptive_fuse=3``: the paper's Cross Self-Attention fusion (official: CrossSigmoidAttention).

    ``A`` as in :class:`CrossAttentionFusion`; then one sigmoid gate map per stream,
    ``G = sigmoid(W_g [s1, s2, s3, A])`` (1×1 conv 4·nf→4), and ``F = G1 s1 + G2 s2 + G3 s3 + G4 A``.
    """

    def __init__(self, nf: int, compat: str | None = None, dim: int = ATTN_DIM, heads: int = ATTN_HEADS) -> None:
        super().__init__(nf, compat, dim, heads)
        self.attention_weights = nn.Conv2d(4 * nf, 4, 1)

    def forward(self, s1: torch.Tensor, s2: torch.Tensor, s3: torch.Tensor, s4: torch.Tensor) -> torch.Tensor:
        a = self.attend(s1, s2, s3, s4)
        g = torch.sigmoid(self.attention_weights(torch.cat((s1, s2, s3, a), 1)))
        return g[:, 0:1] * s1 + g[:, 1:2] * s2 + g[:, 2:3] * s3 + g[:, 3:4] * a


class ConcatAttentionFusion(nn.Module):
    """``adaptive_fuse=4``: input-dependent gates from the concatenated streams (official: ConcatAttentionFusion).

    ``G = sigmoid(W_g [s1, s2, s3, s4])`` (1×1 conv 4·nf→4), ``F = Σ_i G_i ⊙ s_i``.
    """

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.attention_conv = nn.Conv2d(4 * nf, 4, 1)

    def forward(self, s1: torch.Tensor, s2: torch.Tensor, s3: torch.Tensor, s4: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.attention_conv(torch.cat((s1, s2, s3, s4), 1)))
        return g[:, 0:1] * s1 + g[:, 1:2] * s2 + g[:, 2:3] * s3 + g[:, 3:4] * s4


def build_fusion(mode: int, nf: int, compat: str | None = None) -> nn.Module:
    """The fuser for ``--adaptive_fuse`` ``mode`` (0–4) at width ``nf``."""
    if mode == 0:
        return SumFusion()
    if mode == 1:
        return SigmoidWeightFusion(nf)
    if mode == 2:
        return CrossAttentionFusion(nf, compat)
    if mode == 3:
        return CSAFusion(nf, compat)
    if mode == 4:
        return ConcatAttentionFusion(nf)
    raise ValueError(f"adaptive_fuse: expected one of {sorted(FUSION_MODES)}, got {mode!r}")
