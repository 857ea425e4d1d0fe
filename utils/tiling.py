"""Tiled inference for scenes larger than memory, blended so that tile seams do not show.

The scene is cut into overlapping tiles of ``tile`` × ``tile`` **LR-HSI pixels** (HR-MSI and output tiles
are ``scale`` times larger, so an LR tile and its HR tile always cover the same ground). Tiles start every
``tile − overlap`` LR pixels; the last row/column of tiles is aligned to the image border. Each tile's
output is weighted by a window that is 1 in its interior and ramps linearly down over the ``overlap``
band at its edges (never to 0), and the weighted outputs are summed and divided by the summed weights.
Where tiles overlap, the result is thus a smooth cross-fade, and the border pixels of a tile, the ones
affected by zero padding and interpolation at its edges, get the least weight.

A tile must be larger than twice the overlap. Choose the overlap at least a few LR pixels: the networks'
receptive field is wide (stacks of 3×3 convolutions at LR resolution), so a wider overlap hides more of
the border effects; the test suite reports the tiled-vs-whole difference for a small network.
"""

from __future__ import annotations

import torch
from torch import nn


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the tiles along one axis of length ``size`` (the last one ends at the border)."""
    if tile >= size:
        return [0]
    stride = tile - overlap
    if stride < 1:
        raise ValueError(f"tile {tile} must be larger than the overlap {overlap}")
    starts = list(range(0, size - tile, stride))
    return [*starts, size - tile]


def _ramp(n: int, width: int, device: torch.device) -> torch.Tensor:
    """(n,) weights: 1 inside, rising linearly over ``width`` samples at each end (positive everywhere)."""
    if width <= 0:
        return torch.ones(n, device=device)
    i = torch.arange(n, device=device, dtype=torch.float32)
    return torch.minimum(torch.ones_like(i), torch.minimum(i + 0.5, n - i - 0.5) / width)


@torch.no_grad()
def tiled_forward(model: nn.Module, lrhsi: torch.Tensor, hrmsi: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    """The HR-HSI of ``model`` computed tile by tile and blended.

    Args:
        model: maps (lrhsi, hrmsi) to (hrhsi, fused_feature) (teacher or student).
        lrhsi: (B, C, h, w) in [-1, 1]; hrmsi: (B, M, s·h, s·w) in [-1, 1].
        tile: tile side in LR pixels (``tile >= min(h, w)`` is one tile, i.e. the whole image).
        overlap: overlap of neighbouring tiles in LR pixels; ``tile > 2·overlap``.

    Returns:
        (B, C, s·h, s·w) float32 on ``lrhsi``'s device, in the network's [-1, 1] domain.
    """
    if tile < 1 or overlap < 0 or tile <= 2 * overlap:
        raise ValueError(f"--tile {tile} / --tile_overlap {overlap}: need tile > 2·overlap >= 0")
    h, w = lrhsi.shape[-2:]
    big_h, big_w = hrmsi.shape[-2:]
    if big_h % h or big_w % w or big_h // h != big_w // w:
        raise ValueError(f"hrmsi size {(big_h, big_w)} is not an integer multiple of the lrhsi size {(h, w)}")
    s = big_h // h
    out = weight = None
    for y in tile_starts(h, tile, overlap):
        for x in tile_starts(w, tile, overlap):
            th, tw = min(tile, h), min(tile, w)
            pred = model(lrhsi[..., y:y + th, x:x + tw], hrmsi[..., s * y:s * (y + th), s * x:s * (x + tw)])[0]
            pred = pred.float()
            if out is None:
                out = torch.zeros((*pred.shape[:2], big_h, big_w), device=pred.device)
                weight = torch.zeros((big_h, big_w), device=pred.device)
            win = torch.outer(_ramp(s * th, s * overlap, pred.device), _ramp(s * tw, s * overlap, pred.device))
            out[..., s * y:s * (y + th), s * x:s * (x + tw)] += pred * win
            weight[s * y:s * (y + th), s * x:s * (x + tw)] += win
    return out.div_(weight)  # in place: no second scene-sized array
