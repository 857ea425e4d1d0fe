"""Sensors: the spectral responses that ``--srf`` names, and the pansharpening sensors with their MTF filters.

**HSI → MSI cameras** of the fusion task, the spectral response functions (SRFs) that ``--srf`` names
(:func:`resolve_srf`; the SRF maths is :mod:`data.spectral`):

- ``"rgb"``: an RGB camera, Gaussian bands centred at 610 / 540 / 465 nm (R, G, B) with FWHM
  80 / 80 / 60 nm, an approximation of a consumer CMOS camera for 400–700 nm data (CAVE, Harvard).
- ``"msN"`` (``"ms4"``, ``"ms6"``, any N ≥ 1): N Gaussian bands that tile the HSI's own wavelength
  range evenly: band k is centred at ``lo + (k + 0.5)·(hi − lo)/N`` with FWHM ``(hi − lo)/N``. Being
  defined relative to the range, they apply to any wavelength list (AVIRIS 400–2500 nm, CAVE
  400–700 nm, ...). The official CSAKD 4-/6-band sensors are unknown (docs/csakd.md §1.5), so these are a
  documented stand-in, not a reconstruction.
- ``"camera:<camera>[@<illuminant>]"`` (:func:`camera_srf`, needs colour-science): a real camera's measured RGB
  sensitivities S_m(λ) (colour-science's NPL measurements of a Nikon D5100 and a Sigma SD Merrill) times an
  illuminant's relative spectral power E(λ) (a CIE illuminant, default D65), each row normalised to sum 1 over
  the HSI bands: HR-MSI_m = Σ_c X_c S_m(λ_c) E(λ_c) / Σ_c S_m(λ_c) E(λ_c), the linear raw response of a camera
  white-balanced on the illuminant (a perfect white gives 1 in each channel).
- A user's own SRF, a CSV table (:func:`load_srf_csv`): first column wavelength in nm, one column per
  MSI band, an optional header row with band names; it is interpolated linearly onto the HSI
  wavelengths (zero outside the table) and each row is then normalised to sum 1.

**Pansharpening sensors** and their MTF-matched filters (Vivone et al. toolbox, ``genMTF.m`` / ``MTF_PAN.m``):

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

import csv
import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from utils.registry import Registry

from .colour_science import colour_science
from .spectral import gaussian_bands, normalise_srf, resample_spectra, to_nanometres

# --- HSI → MSI: the SRFs that --srf names -------------------------------------------------------------------------

CAMERAS = {"nikon5100": "Nikon 5100 (NPL)", "sigma_sdmerrill": "Sigma SDMerill (NPL)"}
DEFAULT_ILLUMINANT = "D65"


def builtin_srf(name: str, wavelengths: np.ndarray) -> np.ndarray:
    """The built-in SRF ``name`` (``"rgb"`` or ``"msN"``) at ``wavelengths`` (nm): (M, C), rows sum to 1."""
    wl = to_nanometres(wavelengths)
    if name == "rgb":
        resp = gaussian_bands(wl, (610.0, 540.0, 465.0), (80.0, 80.0, 60.0))
    elif name.startswith("ms") and name[2:].isdigit() and int(name[2:]) >= 1:
        n = int(name[2:])
        lo, hi = float(wl[0]), float(wl[-1])
        if hi <= lo:
            raise ValueError(f"SRF {name!r} needs a wavelength range, got a single wavelength {lo} nm")
        width = (hi - lo) / n
        resp = gaussian_bands(wl, lo + (np.arange(n) + 0.5) * width, np.full(n, width))
    else:
        raise ValueError(
            f"unknown built-in SRF {name!r}: expected 'rgb' or 'msN' (e.g. 'ms4', 'ms6') or a CSV file"
        )
    return normalise_srf(resp, where=f"SRF {name!r}", wavelengths=wl)


def load_srf_csv(path: str, wavelengths: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Read a user SRF table (wavelength × band CSV) and resample it onto ``wavelengths`` (nm).

    Returns (R (M, C) with rows summing to 1, band names).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SRF file {path}: no such file")
    rows, names = [], None
    with open(path, newline="") as f:
        for row in csv.reader(f):
            cells = [c.strip() for c in row]
            if not cells or not cells[0] or cells[0].startswith("#"):
                continue
            try:
                rows.append([float(c) for c in cells])
            except ValueError:
                if rows or names is not None:
                    raise ValueError(f"SRF file {path}: non-numeric value in row {cells}") from None
                names = cells[1:]
    if not rows or len({len(r) for r in rows}) != 1 or len(rows[0]) < 2:
        raise ValueError(f"SRF file {path}: expected rows 'wavelength, band1, band2, ...' with equal lengths")
    table = np.asarray(rows, dtype=np.float64)
    src_wl = to_nanometres(table[:, 0], where=f"SRF file {path} (first column)")
    wl = to_nanometres(wavelengths)
    resp = np.stack(
        [np.interp(wl, src_wl, table[:, k], left=0.0, right=0.0) for k in range(1, table.shape[1])]
    )
    names = names if names and len(names) == resp.shape[0] else [f"band{k + 1}" for k in range(resp.shape[0])]
    return normalise_srf(resp, where=f"SRF file {path}", wavelengths=wl), names


def resolve_srf(spec: str, wavelengths: np.ndarray) -> tuple[np.ndarray, str]:
    """An SRF from a flag value: a built-in name, ``camera:<camera>[@<illuminant>]`` (a measured camera under a
    CIE illuminant, :func:`camera_srf`; needs colour-science) or a CSV path.
    Returns (R (M, C), description)."""
    if spec.startswith("camera:"):
        camera, illuminant = parse_camera_spec(spec)
        return camera_srf(camera, wavelengths, illuminant), f"camera:{camera}@{illuminant}"
    if os.path.splitext(spec)[1].lower() in (".csv", ".txt") or os.path.sep in spec:
        resp, _ = load_srf_csv(spec, wavelengths)
        return resp, os.path.abspath(spec)
    return builtin_srf(spec, wavelengths), spec


def default_srf_name(msi_bands: int) -> str:
    """The built-in SRF used when none is given: ``"rgb"`` for 3 MSI bands, else ``"ms<M>"``."""
    return "rgb" if msi_bands == 3 else f"ms{msi_bands}"


def camera_srf(camera: str, wavelengths: np.ndarray, illuminant: str = DEFAULT_ILLUMINANT) -> np.ndarray:
    """SRF (3, C) of ``camera`` (a key of ``CAMERAS``) under ``illuminant`` (a colour-science CIE illuminant,
    e.g. D65, D50, A, FL2) at ``wavelengths`` (nm): rows R, G, B = S_m(λ)·E(λ) normalised to sum 1."""
    colour = colour_science()
    if camera not in CAMERAS:
        raise ValueError(f"--srf camera:{camera}: unknown camera; expected one of {sorted(CAMERAS)}")
    if illuminant not in colour.SDS_ILLUMINANTS:
        raise ValueError(f"--srf camera:{camera}@{illuminant}: unknown illuminant; expected one of "
                         f"{sorted(colour.SDS_ILLUMINANTS)[:12]}...")
    wl = to_nanometres(wavelengths)
    sens = colour.MSDS_CAMERA_SENSITIVITIES[CAMERAS[camera]]
    light = colour.SDS_ILLUMINANTS[illuminant]
    s = resample_spectra(np.asarray(sens.domain, float), np.asarray(sens.values, float), wl).T  # (3, C)
    e = resample_spectra(np.asarray(light.domain, float), np.asarray(light.values, float)[:, None], wl)[:, 0]
    return normalise_srf(s * e[None, :], where=f"--srf camera:{camera}@{illuminant}", wavelengths=wl)


def parse_camera_spec(spec: str) -> tuple[str, str]:
    """``"camera:<camera>[@<illuminant>]"`` → (camera, illuminant)."""
    body = spec.split(":", 1)[1]
    camera, _, illuminant = body.partition("@")
    return camera, illuminant or DEFAULT_ILLUMINANT



# --- Pansharpening sensors ----------------------------------------------------------------------------------------


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
