"""PanCollection files: the layout the pansharpening field trains and tests on (liangjiandeng/PanCollection).

- ``.h5`` (h5py): datasets ``ms`` N×C×h×w, ``pan`` N×1×H×W, ``lms`` N×C×H×W (the MS upsampled by the 23-tap
  interpolator) and, in reduced-resolution files only, ``gt`` N×C×H×W; float64 DN (0–2047, or 0–1023 for GF2;
  ``lms`` overshoots both ends, nothing is clipped). MATLAB wrote them as W×H×C×N, which h5py reads as N×C×H×W.
- ``.mat`` per-example files: the same keys H×W×C (``pan`` H×W or H×W×1), read as one example.
- C ∈ {4, 8}; H = ratio·h, W = ratio·w (ratio 4 in PanCollection). A file that cannot be in this layout (a
  band count elsewhere than on axis 1, a PAN of several bands, sizes that are not ×ratio) is one ValueError naming
  the file, the key, the shape found and the shape expected.

:class:`PanCollectionFile` reads one example at a time (lazily), :func:`read_examples` all of them (scoring).
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


class PanCollectionFile:
    """Lazy reader of one PanCollection file: the layout is checked from the shapes when it is opened (no data is
    read), then example ``i`` is read alone (FR test files are ~170 MB).

    ``example(i)`` gives {key: (C, H, W) float64 DN}; ``self[i]`` the same as float32 divided by ``scale`` (the
    sensor's, 2047 or 1023, unless ``scale`` is given; ``--img_range``), never clipped (``lms`` overshoots).
    ``sensor`` also checks the band count. The h5 handle is opened per process on first use, so the object can go
    to DataLoader workers. Keys: ``keys`` (those of :data:`KEYS` the file has); ``self.full`` is True without ``gt``.
    """

    def __init__(self, path: str, sensor: str | None = None, scale: float | None = None) -> None:
        from .sensors import get_sensor

        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file")
        self.path = path
        self.ext = os.path.splitext(path)[1].lower()
        self._handle = None
        self._pid: int | None = None
        self._mat: dict[str, np.ndarray] | None = None
        try:
            shapes = self._shapes()
            self.ratio = check_layout(shapes, path)
            self.keys = tuple(k for k in KEYS if k in shapes)
            self.full = "gt" not in shapes
            self.length, self.bands = shapes["ms"][:2]
            if sensor is not None and self.bands != get_sensor(sensor).bands:
                raise ValueError(f"{path}: 'ms' has {self.bands} bands, --sensor {sensor} has "
                                 f"{get_sensor(sensor).bands}")
            if scale is None:
                scale = get_sensor(sensor).scale if sensor is not None else None
            if scale is None:
                raise ValueError(f"{path}: no scale for {sensor or 'an unnamed sensor'}: pass --img_range (the DN "
                                 f"of 1.0)")
            if not scale > 0:
                raise ValueError(f"--img_range must be positive, got {scale}")
        except BaseException:
            self.close()
            raise
        self.scale = float(scale)

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        try:
            if self.ext in (".h5", ".hdf5"):
                f = self._file()
                return {k: tuple(f[k].shape) for k in KEYS if k in f}
            if self.ext == ".mat":
                self._mat = {k: mat_to_nchw(v) for k, v in read_mat_arrays(self.path).items() if k in KEYS}
                return {k: tuple(v.shape) for k, v in self._mat.items()}
        except (OSError, KeyError) as e:
            raise ValueError(f"{self.path}: cannot read ({e})") from None
        raise ValueError(f"{self.path}: unsupported extension {self.ext!r} for a PanCollection file "
                         f"(expected .h5 or .mat)")

    def _file(self):
        import h5py

        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._handle

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None, "_pid": None}

    def __len__(self) -> int:
        return self.length

    def example(self, index: int) -> dict[str, np.ndarray]:
        """Example ``index`` in DN: {key: (C, H, W) float64}; NaN/Inf is an error naming the key and index."""
        if not 0 <= index < self.length:
            raise IndexError(f"{self.path}: example {index} of {self.length}")
        try:
            source = self._mat if self._mat is not None else self._file()
            out = {k: np.asarray(source[k][index], dtype=np.float64) for k in self.keys}
        except (OSError, KeyError) as e:
            raise ValueError(f"{self.path}: cannot read example {index} ({e})") from None
        for key, arr in out.items():
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            if bad:
                raise ValueError(f"{self.path}: {key!r} of example {index} has {bad} NaN/Inf value(s)")
        return out

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {k: (v / self.scale).astype(np.float32) for k, v in self.example(index).items()}

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_examples(path: str) -> tuple[dict[str, np.ndarray], int]:
    """All examples of a PanCollection .h5 or per-example .mat file: ({key: N×C×H×W float64 DN}, ratio)."""
    f = PanCollectionFile(path, scale=1.0)
    try:
        examples = [f.example(i) for i in range(len(f))]
    finally:
        f.close()
    return {k: np.stack([e[k] for e in examples]) for k in f.keys}, f.ratio
