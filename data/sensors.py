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
- :data:`SPECTRAL_BANDS` gives the spectral band edges (nm, lower and upper) of the sensors the built-in scenes
  can be seen through (WV3 only): the 8 MS bands in the files' band order and the PAN. They are the edges of the
  DigitalGlobe WorldView-3 data sheet, not the measured relative spectral responses; :func:`box_srf` turns
  them into ideal box responses, so the simulated DN are an approximation of the sensor's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from utils.registry import Registry

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


SENSORS: Registry[Sensor] = Registry("sensor", "--sensor")
for _sensor in (
    Sensor("QB", 4, 11, 2047.0, (0.34, 0.32, 0.30, 0.22), 0.15),
    Sensor("IKONOS", 4, 11, None, (0.26, 0.28, 0.29, 0.28), 0.17),
    Sensor("GeoEye1", 4, 11, 2047.0, (0.23,) * 4, 0.16),
    Sensor("WV2", 8, 11, 2047.0, (0.35,) * 7 + (0.27,), 0.11),
    Sensor("WV3", 8, 11, 2047.0, (0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315), 0.14),
    Sensor("GF2", 4, 10, 1023.0, (0.3,) * 4, None),
):
    SENSORS.add(_sensor.name, _sensor)


@dataclasses.dataclass(frozen=True)
class SpectralBands:
    """Band edges in nm: ``ms`` one (name, lower, upper) per MS band in the files' order, ``pan`` (lower, upper)."""

    ms: tuple[tuple[str, float, float], ...]
    pan: tuple[float, float]


#: WorldView-3 band edges, DigitalGlobe data sheet "WorldView-3" (DS-WV3, 2014): coastal 400–450, blue 450–510,
#: green 510–580, yellow 585–625, red 630–690, red edge 705–745, NIR1 770–895, NIR2 860–1040; PAN 450–800 nm.
SPECTRAL_BANDS: dict[str, SpectralBands] = {
    "WV3": SpectralBands(
        ms=(("coastal", 400.0, 450.0), ("blue", 450.0, 510.0), ("green", 510.0, 580.0), ("yellow", 585.0, 625.0),
            ("red", 630.0, 690.0), ("red_edge", 705.0, 745.0), ("nir1", 770.0, 895.0), ("nir2", 860.0, 1040.0)),
        pan=(450.0, 800.0),
    ),
}


def get_sensor(name: str) -> Sensor:
    """The :data:`SENSORS` entry ``name`` (exact spelling, e.g. ``"WV3"``); a ValueError lists the choices."""
    return SENSORS.lookup(name)


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


def _cell_edges(wavelengths: np.ndarray) -> np.ndarray:
    """(C + 1,) edges of the spectral cells of sample centres ``wavelengths`` (C,) nm: midpoints between
    neighbours, half a step beyond the first and last sample."""
    wl = np.asarray(wavelengths, dtype=np.float64)
    if wl.size < 2 or not np.all(np.diff(wl) > 0):
        raise ValueError(f"box_srf: expected at least 2 strictly increasing wavelengths, got {wl.tolist()[:8]}")
    mid = (wl[1:] + wl[:-1]) / 2
    return np.concatenate([[2 * wl[0] - mid[0]], mid, [2 * wl[-1] - mid[-1]]])


def box_srf(wavelengths: np.ndarray, bands: Sequence[tuple[str, float, float]]) -> np.ndarray:
    """Ideal box responses (M, C) of ``bands`` (name, lower, upper nm) for a cube sampled at ``wavelengths``
    (C,) nm, rows summing to 1: each sample weighs the length of its spectral cell inside the band (the exact
    band mean of a spectrum constant over each cell). A band that the cells do not cover entirely cannot be
    represented (a visible-only cube has no NIR): one ValueError names those bands and the range covered."""
    edges = _cell_edges(wavelengths)
    lo, hi = edges[0], edges[-1]
    missing = [f"{name} {a:g}–{b:g} nm" for name, a, b in bands if a < lo or b > hi]
    if missing:
        raise ValueError(f"the cube covers {lo:g}–{hi:g} nm and cannot represent {', '.join(missing)}; "
                         f"a scene for these bands needs wavelengths over {min(a for _, a, _ in bands):g}–"
                         f"{max(b for _, _, b in bands):g} nm")
    resp = np.stack([np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0, None) for _, a, b in bands])
    return resp / resp.sum(axis=1, keepdims=True)
