"""The pansharpening toolbox's resamplers, MATLAB-compatible: the 23-tap interpolator (``interp23tap.m``, how
the toolbox and PanCollection make ``lms`` from ``ms``) and ``imresize`` bicubic with antialiasing (how the
toolbox shrinks the PAN). Images are (C, H, W) float64, any units (both are linear).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

#: Half of the symmetric 23-tap interpolation filter (centre tap first), from ``interp23tap.m``.
_CDF23_HALF = 2 * np.array([0.5, 0.305334091185, 0, -0.072698593239, 0, 0.021809577942, 0, -0.005192756653, 0,
                            0.000807762146, 0, -0.000060081482])
CDF23 = np.concatenate([_CDF23_HALF[:0:-1], _CDF23_HALF])


def interp23tap(img: np.ndarray, ratio: int = 4) -> np.ndarray:
    """(C, H, W) → (C, ratio·H, ratio·W): per ×2 step, insert zeros (the first step puts the samples at the odd
    positions, later steps at the even ones), then filter rows and columns with the 23-tap filter, circular
    borders (MATLAB ``imfilter(..., 'circular')``). ``ratio`` must be a power of two."""
    if ratio < 2 or ratio & (ratio - 1):
        raise ValueError(f"interp23tap: the ratio must be a power of two >= 2, got {ratio}")
    out = np.asarray(img, dtype=np.float64)
    if out.ndim != 3:
        raise ValueError(f"interp23tap: expected a (C, H, W) image, got shape {out.shape}")
    for step in range(int(math.log2(ratio))):
        c, h, w = out.shape
        up = np.zeros((c, 2 * h, 2 * w))
        start = 1 if step == 0 else 0
        up[:, start::2, start::2] = out
        up = ndimage.correlate1d(up, CDF23, axis=1, mode="wrap")
        out = ndimage.correlate1d(up, CDF23, axis=2, mode="wrap")
    return out


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel, a = −0.5 (MATLAB's bicubic)."""
    ax = np.abs(x)
    return np.where(ax <= 1, 1.5 * ax**3 - 2.5 * ax**2 + 1,
                    np.where(ax <= 2, -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2, 0.0))


def _imresize_weights(size_in: int, size_out: int, scale: float) -> np.ndarray:
    """(size_out, size_in) matrix of MATLAB ``imresize`` bicubic weights along one axis, antialiased when
    shrinking (kernel stretched by 1/scale), rows normalised to 1, out-of-range taps mirrored back."""
    width = 4.0 / scale if scale < 1 else 4.0
    u = np.arange(1, size_out + 1, dtype=np.float64)
    x = u / scale + 0.5 * (1 - 1 / scale)  # output pixel centres in 1-based input coordinates
    left = np.floor(x - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = x[:, None] - idx
    weights = scale * _cubic(scale * dist) if scale < 1 else _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(size_in), np.arange(size_in)[::-1]])
    cols = mirror[(idx.astype(np.int64) - 1) % (2 * size_in)]
    matrix = np.zeros((size_out, size_in))
    np.add.at(matrix, (np.repeat(np.arange(size_out), taps), cols.ravel()), weights.ravel())
    return matrix


def imresize_bicubic(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(img, scale)`` (bicubic, antialiasing on) of a (C, H, W) image: output sides
    ceil(scale·H) × ceil(scale·W); rows are resized first, then columns."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 3:
        raise ValueError(f"imresize_bicubic: expected a (C, H, W) image, got shape {img.shape}")
    if not scale > 0:
        raise ValueError(f"imresize_bicubic: scale must be positive, got {scale}")
    _, h, w = img.shape
    rows = _imresize_weights(h, math.ceil(scale * h), scale)
    cols = _imresize_weights(w, math.ceil(scale * w), scale)
    return np.einsum("oh,chw->cow", rows, img) @ cols.T
