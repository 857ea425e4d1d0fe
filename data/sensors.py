"""Pansharpening sensors and their MTF-matched filters (Vivone et al. toolbox, ``genMTF.m`` / ``MTF_PAN.m``).

Conventions:

- :data:`SENSORS` holds, per sensor, the MS band count, the radiometric resolution (bits), the scale that maps
  PanCollection DN to [0, 1] (2047 for the 11-bit sensors, 1023 for the 10-bit GF2; the toolbox's ``val_bit``)
  and the per-band MTF gains at the Nyquist frequency of the MS grid (``gnyq_ms``, band order as the files
  store it, e.g. QB B, G, R, NIR) and of the PAN (``gnyq_pan``). GF2 has no entry in the toolbox: its MS
  gains are the toolbox's fallback 0.3 per band and it has no PAN gain (``None``). IKONOS has no PanCollection
  scale (``None``).
- :func:`mtf_kernel` designs the toolbox's 41×41 filter: a Gaussian whose frequency response equals the gain
  at the LR Nyquist frequency, windowed in space by a rotated 1-D Kaiser window (β = 0.5) through frequency
  sampling (MATLAB ``fwind1(fsamp2)``), not renormalised (Σh = 0.997–0.999, as MATLAB leaves it).
- :func:`mtf_filter` applies the kernels band by band as correlation with replicated borders (MATLAB
  ``imfilter(..., 'replicate')``); images are (C, H, W), any units (the filter is linear).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: Taps of the toolbox MTF filter (``genMTF.m``: N = 41).
MTF_TAPS = 41
#: Kaiser window parameter of the toolbox filter (MATLAB ``kaiser(N)`` default β).
KAISER_BETA = 0.5


@dataclasses.dataclass(frozen=True)
class Sensor:
    """One sensor: ``bands`` MS bands, ``bits`` per sample, ``scale`` (DN of 1.0, None when PanCollection has
    no such data), MTF Nyquist gains per MS band and for the PAN (None: not in the toolbox)."""

    name: str
    bands: int
    bits: int
    scale: float | None
    gnyq_ms: tuple[float, ...]
    gnyq_pan: float | None

    def __post_init__(self) -> None:
        if len(self.gnyq_ms) != self.bands:
            raise ValueError(f"sensor {self.name}: {len(self.gnyq_ms)} MS gains for {self.bands} bands")


SENSORS: dict[str, Sensor] = {
    s.name: s
    for s in (
        Sensor("QB", 4, 11, 2047.0, (0.34, 0.32, 0.30, 0.22), 0.15),
        Sensor("IKONOS", 4, 11, None, (0.26, 0.28, 0.29, 0.28), 0.17),
        Sensor("GeoEye1", 4, 11, 2047.0, (0.23,) * 4, 0.16),
        Sensor("WV2", 8, 11, 2047.0, (0.35,) * 7 + (0.27,), 0.11),
        Sensor("WV3", 8, 11, 2047.0, (0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315), 0.14),
        Sensor("GF2", 4, 10, 1023.0, (0.3,) * 4, None),
    )
}
SENSOR_NAMES = tuple(SENSORS)


def get_sensor(name: str) -> Sensor:
    """The :data:`SENSORS` entry ``name`` (exact spelling, e.g. ``"WV3"``); a ValueError lists the choices."""
    if name not in SENSORS:
        raise ValueError(f"--sensor {name!r}: unknown sensor; expected one of {', '.join(SENSOR_NAMES)}")
    return SENSORS[name]


def _gaussian(size: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``: sampled, tiny tails zeroed, normalised to sum 1."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2
    h = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma * sigma))
    h[h < np.finfo(np.float64).eps * h.max()] = 0
    return h / h.sum()


def _rotated_window(window: np.ndarray) -> np.ndarray:
    """Huang's circular 2-D window from a symmetric 1-D one (MATLAB ``fwind1`` with one window): the 1-D
    window, laid on [-1, 1], read at the radius of every tap by linear interpolation, 0 beyond radius 1."""
    n = window.size
    t = (np.arange(n) - (n - 1) / 2) * (2 / (n - 1))
    radius = np.hypot(t[:, None], t[None, :])
    return np.where(radius > t[-1], 0.0, np.interp(radius, t, window))


def mtf_kernel(gnyq: float, ratio: int = 4, size: int = MTF_TAPS) -> np.ndarray:
    """The toolbox's MTF-matched filter (size, size) float64 for one band with Nyquist gain ``gnyq`` ∈ (0, 1).

    Designed as ``genMTF.m``: Gaussian of σ_f = sqrt(((N−1)·fcut/2)² / (−2 ln G)) taps, fcut = 1/ratio, scaled
    to peak 1 as the desired frequency response, realised by frequency sampling and windowed by the rotated
    Kaiser window. Symmetric; its response at (N−1)/2·fcut/N ≈ 0.122 cycle/px (ratio 4) is the gain.
    """
    if not 0 < gnyq < 1:
        raise ValueError(f"MTF gain at Nyquist must be in (0, 1), got {gnyq}")
    fcut = 1 / ratio
    alpha = math.sqrt(((size - 1) * (fcut / 2)) ** 2 / (-2 * math.log(gnyq)))
    response = _gaussian(size, alpha)
    response = response / response.max()
    taps = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(response))).real  # MATLAB fsamp2
    return taps * _rotated_window(np.kaiser(size, KAISER_BETA))


def mtf_kernels(gains: Sequence[float], ratio: int = 4) -> np.ndarray:
    """One :func:`mtf_kernel` per gain: (len(gains), 41, 41) float64."""
    return np.stack([mtf_kernel(g, ratio) for g in gains])


def ms_gains(sensor: str, bands: int) -> tuple[float, ...]:
    """The MS gains of ``sensor`` for an image of ``bands`` bands (a band-count mismatch is an error)."""
    s = get_sensor(sensor)
    if bands != s.bands:
        raise ValueError(f"--sensor {sensor} has {s.bands} MS bands, the image has {bands}")
    return s.gnyq_ms


def mtf_filter(img: np.ndarray, gains: Sequence[float], ratio: int = 4) -> np.ndarray:
    """(C, H, W) float64: band b correlated with ``mtf_kernel(gains[b])``, replicated borders (MATLAB
    ``MTF.m``: ``imfilter(..., 'replicate')``)."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 3 or img.shape[0] != len(gains):
        raise ValueError(f"mtf_filter: expected a (C, H, W) image with C = {len(gains)}, got {img.shape}")
    kernels = mtf_kernels(gains, ratio)
    return np.stack([ndimage.correlate(band, k, mode="nearest") for band, k in zip(img, kernels, strict=True)])


def frequency_response(kernel: np.ndarray, fy: float, fx: float) -> float:
    """|H(fy, fx)| of a 2-D kernel centred on its middle tap, frequencies in cycles per pixel."""
    n, m = kernel.shape
    ty = np.arange(n) - (n - 1) / 2
    tx = np.arange(m) - (m - 1) / 2
    phase = np.exp(-2j * np.pi * (fy * ty[:, None] + fx * tx[None, :]))
    return float(abs((kernel * phase).sum()))
