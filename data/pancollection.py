"""PanCollection files: the layout the pansharpening field trains and tests on (liangjiandeng/PanCollection).

- ``.h5`` (h5py): datasets ``ms`` N×C×h×w, ``pan`` N×1×H×W, ``lms`` N×C×H×W (the MS upsampled by the 23-tap
  interpolator) and, in reduced-resolution files only, ``gt`` N×C×H×W; float64 DN (0–2047, or 0–1023 for GF2;
  ``lms`` overshoots both ends, nothing is clipped). MATLAB wrote them as W×H×C×N, which h5py reads as N×C×H×W.
- ``.mat`` per-example files: the same keys H×W×C (``pan`` H×W or H×W×1), read as one example.
- C ∈ {4, 8}; H = ratio·h, W = ratio·w (ratio 4 in PanCollection). A file that cannot be in this layout (a
  band count elsewhere than on axis 1, a PAN of several bands, sizes that are not ×ratio) is one ValueError naming
  the file, the key, the shape found and the shape expected.

:func:`read_examples` returns whole arrays (scoring).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from .formats import read_mat_arrays

KEYS = ("gt", "ms", "lms", "pan")
MS_BANDS = (4, 8)


def _layout_hint(shape: tuple[int, ...]) -> str:
    axes = [i for i, n in enumerate(shape) if n in MS_BANDS]
    if len(shape) == 4 and axes and 1 not in axes:
        return f" (the band axis looks like axis {axes[0]}: a transposed, e.g. N×H×W×C or W×H×C×N, file?)"
    return ""


def check_layout(shapes: Mapping[str, tuple[int, ...]], path: str) -> int:
    """Validate PanCollection shapes {key: N×C×H×W} of ``path``; returns the ratio PAN/MS (ValueError otherwise)."""
    for key in ("ms", "pan"):
        if key not in shapes:
            raise ValueError(f"{path}: no {key!r} (found {sorted(shapes)}); a PanCollection file holds ms, pan, "
                             f"lms and, at reduced resolution, gt")
    for key, shape in shapes.items():
        if len(shape) != 4:
            raise ValueError(f"{path}: {key!r} has shape {shape}, expected 4 axes N×C×H×W")
    ms, pan = shapes["ms"], shapes["pan"]
    if ms[1] not in MS_BANDS:
        raise ValueError(f"{path}: 'ms' has shape {ms}, expected N×C×h×w with C in {MS_BANDS}{_layout_hint(ms)}")
    n, bands, h, w = ms
    if pan[0] != n or pan[1] != 1:
        raise ValueError(f"{path}: 'pan' has shape {pan}, expected {n}×1×H×W (one band per example)"
                         f"{_layout_hint(pan)}")
    ratio = pan[2] // h if h else 0
    if ratio < 2 or pan[2] != ratio * h or pan[3] != ratio * w:
        raise ValueError(f"{path}: 'pan' is {pan[2]}×{pan[3]} for an 'ms' of {h}×{w}: expected an integer ratio "
                         f"≥ 2 on both sides (PanCollection: 4)")
    expected = (n, bands, pan[2], pan[3])
    for key in ("gt", "lms"):
        if key in shapes and tuple(shapes[key]) != expected:
            raise ValueError(f"{path}: {key!r} has shape {shapes[key]}, expected {expected} (N×C×H×W like "
                             f"ms and pan){_layout_hint(shapes[key])}")
    return ratio


def mat_to_nchw(arr: np.ndarray) -> np.ndarray:
    """One per-example MATLAB image H×W×C (or H×W) as 1×C×H×W."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    return np.moveaxis(arr, -1, 0)[None] if arr.ndim == 3 else arr


def read_examples(path: str) -> tuple[dict[str, np.ndarray], int]:
    """All examples of a PanCollection .h5 or per-example .mat file: ({key: N×C×H×W float64 DN}, ratio)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                arrays = {k: f[k][()] for k in KEYS if k in f}
        elif ext == ".mat":
            arrays = {k: mat_to_nchw(v) for k, v in read_mat_arrays(path).items() if k in KEYS}
        else:
            raise ValueError(f"{path}: unsupported extension {ext!r} for a PanCollection file (expected .h5 or .mat)")
    except (OSError, KeyError) as e:
        raise ValueError(f"{path}: cannot read ({e})") from None
    ratio = check_layout({k: tuple(v.shape) for k, v in arrays.items()}, path)
    out = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    for key, arr in out.items():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ValueError(f"{path}: {key!r} has {bad} NaN/Inf value(s)")
    return out, ratio
