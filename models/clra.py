"""Cross-layer residual aggregation (CLRA), the feature extractor of every DTS stream.

A CLRA block is three densely connected residual blocks (the paper's multi-scale feature fusion
blocks, MFB) chained, with a residual connection around the chain; structurally it is ESRGAN's
RRDB. Both residual branches are scaled by 0.2, as in the official code.

Channel arithmetic (``nf`` = ``num_base_chs``, ``gc`` = ``num_agg_feat``): the five 3×3 convolutions
of an MFB map nf→gc, nf+gc→gc, nf+2gc→gc, nf+3gc→gc, nf+4gc→nf, so ``groups`` must divide ``nf`` and
``gc`` (it then divides every concatenated width).
"""

from __future__ import annotations

import torch
from torch import nn

RESIDUAL_SCALE = 0.2  # both the MFB and the CLRA residual branches (official value)
MFB_INIT_SCALE = 0.1  # Kaiming-normal weights are shrunk by this at initialisation (official value)


def check_groups(nf: int, gc: int, groups: int, where: str) -> None:
    """Raise a ``ValueError`` unless ``groups`` can split every convolution of a CLRA block.

    Args:
        nf: ``num_base_chs``, the stream width.
        gc: ``num_agg_feat``, the growth width of the dense connections.
        groups: convolution groups of the block.
        where: what the groups belong to, for the message (e.g. ``"groups"`` or a stream name).
    """
    if groups < 1:
        raise ValueError(f"{where}: groups must be >= 1, got {groups}")
    bad = [f"{name}={value}" for name, value in (("num_base_chs", nf), ("num_agg_feat", gc)) if value % groups]
    if bad:
        raise ValueError(
            f"{where}: a CLRA block with groups={groups} needs num_base_chs and num_agg_feat divisible "
            f"by {groups}, but {' and '.join(bad)} {'is' if len(bad) == 1 else 'are'} not"
        )


class DenseResidualBlock(nn.Module):
    """One MFB: five densely connected 3×3 convolutions with a scaled residual (official:
    MultiScaleFeatFusionBlock).

    ``forward(x)``: (B, nf, H, W) → (B, nf, H, W); ``x + 0.2·conv5([x, a1, a2, a3, a4])`` where
    ``a_k = LeakyReLU_0.2(conv_k([x, a1, …, a_{k−1}]))``.
    """

    def __init__(self, nf: int, gc: int, groups: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1, groups=groups)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1, groups=groups)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1, groups=groups)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1, groups=groups)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1, groups=groups)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            # Small initial residual branches keep a deep stack close to the identity at start.
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            conv.weight.data.mul_(MFB_INIT_SCALE)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1 = self.lrelu(self.conv1(x))
        a2 = self.lrelu(self.conv2(torch.cat((x, a1), 1)))
        a3 = self.lrelu(self.conv3(torch.cat((x, a1, a2), 1)))
        a4 = self.lrelu(self.conv4(torch.cat((x, a1, a2, a3), 1)))
        a5 = self.conv5(torch.cat((x, a1, a2, a3, a4), 1))
        return x + RESIDUAL_SCALE * a5


class CLRA(nn.Module):
    """Cross-layer residual aggregation block (official: MultiScaleFeatAggregation).

    ``forward(x)``: (B, nf, H, W) → (B, nf, H, W); ``x + 0.2·MFB3(MFB2(MFB1(x)))``.
    The submodule names ``MFB1..3`` and ``conv1..5`` match the official state_dict keys.
    """

    def __init__(self, nf: int, gc: int, groups: int = 1) -> None:
        super().__init__()
        check_groups(nf, gc, groups, "CLRA")
        self.MFB1 = DenseResidualBlock(nf, gc, groups)
        self.MFB2 = DenseResidualBlock(nf, gc, groups)
        self.MFB3 = DenseResidualBlock(nf, gc, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.MFB3(self.MFB2(self.MFB1(x)))


def clra_stack(num_blocks: int, nf: int, gc: int, groups: int = 1) -> nn.Sequential:
    """``num_blocks`` CLRA blocks in sequence (official: ``make_layer``); zero blocks is the identity."""
    return nn.Sequential(*(CLRA(nf, gc, groups) for _ in range(num_blocks)))
