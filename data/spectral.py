"""Spectral maths: wavelength lists, and the spectral response functions (SRFs) that turn an HR-HSI into an HR-MSI.

An SRF matrix ``R`` has shape (M, C): one row per MSI band, one column per HSI band, every row
summing to 1, so an MSI band is a weighted mean of HSI bands (a flat spectrum gives a flat MSI and
the MSI keeps the HSI's units). Wavelengths are in nanometres throughout.

Which SRF a flag names (the built-in ``rgb``/``msN``, a measured camera, a CSV table) is the business of
:mod:`data.sensors`; this module holds what every SRF is made of: Gaussian bands, the row normalisation,
resampling tabulated spectra onto a wavelength list, and applying an SRF to a cube.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np

# AVIRIS: 224 channels over 400–2500 nm (~9.4 nm spacing). The 172-band list drops the 1-based bands
# 1–10, 104–116, 152–170 and 215–224 (noisy blue end, the 1400 nm and 1900 nm water-absorption
# windows, the noisy SWIR end), the removal used by the lab's data preparation (docs/csakd.md §1.5).
_AVIRIS_REMOVED_1BASED = (*range(1, 11), *range(104, 117), *range(152, 171), *range(215, 225))


def aviris172_wavelengths() -> np.ndarray:
    """AVIRIS-like 172-band centre list in nm, (172,) float64, ≈494–2406 nm, water bands removed."""
    full = np.linspace(400.0, 2500.0, 224)
    keep = np.ones(224, dtype=bool)
    keep[np.asarray(_AVIRIS_REMOVED_1BASED) - 1] = False
    return full[keep]


def visible31_wavelengths() -> np.ndarray:
    """The CAVE/Harvard 31-band list, 400–700 nm every 10 nm, (31,) float64."""
    return np.arange(400.0, 701.0, 10.0)


WAVELENGTH_PRESETS = {"aviris172": aviris172_wavelengths, "visible31": visible31_wavelengths}


def default_wavelengths(bands: int) -> np.ndarray:
    """A wavelength list for ``bands`` bands: the 172-band AVIRIS list, the 31-band visible list, or
    otherwise ``bands`` centres spread evenly over the AVIRIS 172-band list's range (nm)."""
    if bands == 172:
        return aviris172_wavelengths()
    if bands == 31:
        return visible31_wavelengths()
    if bands < 1:
        raise ValueError(f"bands must be >= 1, got {bands}")
    aviris = aviris172_wavelengths()
    return np.interp(np.linspace(0, 171, bands), np.arange(172), aviris)


def to_nanometres(wavelengths: Sequence[float] | np.ndarray, where: str = "wavelengths") -> np.ndarray:
    """Return wavelengths as a strictly increasing float64 array in nm (values < 100 are read as µm)."""
    wl = np.asarray(wavelengths, dtype=np.float64).reshape(-1)
    if wl.size == 0 or not np.all(np.isfinite(wl)):
        raise ValueError(f"{where}: expected a non-empty list of finite wavelengths, got {wl.tolist()[:8]}")
    if wl.max() < 100.0:  # µm (ENVI headers, Hyperion files) -> nm
        wl = wl * 1000.0
    if wl.size > 1 and not np.all(np.diff(wl) > 0):
        raise ValueError(f"{where}: wavelengths must be strictly increasing, got {wl.tolist()[:8]}...")
    return wl


def resolve_wavelengths(spec: str | Sequence[float] | np.ndarray | None, bands: int) -> np.ndarray:
    """Wavelengths (nm) for ``bands`` bands from a flag value.

    ``spec``: None (``default_wavelengths(bands)``), a preset name (``"aviris172"``, ``"visible31"``),
    ``"lo:hi"`` (``bands`` centres evenly from lo to hi nm), a path to a text/CSV file with one
    wavelength per line (first column), or a sequence of numbers.
    """
    if spec is None or (isinstance(spec, str) and spec == ""):
        wl = default_wavelengths(bands)
    elif isinstance(spec, str) and spec in WAVELENGTH_PRESETS:
        wl = WAVELENGTH_PRESETS[spec]()
    elif isinstance(spec, str) and ":" in spec and not os.path.exists(spec):
        try:
            lo, hi = (float(v) for v in spec.split(":"))
        except ValueError:
            raise ValueError(f"--wavelengths {spec!r}: expected 'lo:hi' in nm, a preset or a file") from None
        wl = np.linspace(lo, hi, bands)
    elif isinstance(spec, str):
        wl = _read_wavelength_file(spec)
    else:
        wl = np.asarray(spec, dtype=np.float64)
    wl = to_nanometres(wl, where=f"--wavelengths {spec!r}" if isinstance(spec, str) else "wavelengths")
    if wl.size != bands:
        raise ValueError(
            f"--wavelengths {spec!r}: gives {wl.size} wavelengths, expected {bands} (one per band)"
        )
    return wl


def _read_wavelength_file(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"--wavelengths {path}: no such file (and not a preset: {sorted(WAVELENGTH_PRESETS)})"
        )
    values = []
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            try:
                values.append(float(row[0]))
            except ValueError:
                if values:  # only a first header line may be non-numeric
                    raise ValueError(f"{path}: non-numeric wavelength {row[0]!r}") from None
    return np.asarray(values)


def gaussian_bands(wavelengths: np.ndarray, centres: Sequence[float], fwhms: Sequence[float]) -> np.ndarray:
    """Unnormalised Gaussian band responses (M, C) at ``wavelengths`` (nm) for band centres/FWHMs in nm."""
    wl = np.asarray(wavelengths, dtype=np.float64)[None, :]
    c = np.asarray(centres, dtype=np.float64)[:, None]
    s = np.asarray(fwhms, dtype=np.float64)[:, None] / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    return np.exp(-0.5 * ((wl - c) / s) ** 2)


def resample_spectra(domain: np.ndarray, values: np.ndarray, wavelengths: np.ndarray) -> np.ndarray:
    """Spectra (N, K) tabulated at ``domain`` (N,) nm, linearly interpolated at ``wavelengths`` (C,) nm: (C, K),
    zero outside the table."""
    return np.stack([np.interp(wavelengths, domain, values[:, k], left=0.0, right=0.0)
                     for k in range(values.shape[1])], 1)


def normalise_srf(resp: np.ndarray, where: str, wavelengths: np.ndarray | None = None) -> np.ndarray:
    """Scale each row of ``resp`` (M, C) to sum 1; a row with no response over the HSI bands is an error."""
    resp = np.asarray(resp, dtype=np.float64)
    if resp.ndim != 2 or not np.all(np.isfinite(resp)) or np.any(resp < 0):
        raise ValueError(f"{where}: expected a finite, non-negative (MSI bands × HSI bands) matrix")
    sums = resp.sum(axis=1)
    # A Gaussian tail far outside the data range is numerically present but physically nothing.
    dead = np.flatnonzero(sums <= 1e-6 * max(float(resp.max()), 1e-300))
    if dead.size:
        rng = f" ({wavelengths[0]:.0f}–{wavelengths[-1]:.0f} nm)" if wavelengths is not None else ""
        raise ValueError(
            f"{where}: MSI band(s) {dead.tolist()} have no response over the HSI wavelengths{rng}"
        )
    return resp / sums[:, None]


def apply_srf(cube: np.ndarray, srf: np.ndarray) -> np.ndarray:
    """HR-MSI (H, W, M) = cube (H, W, C) · Rᵀ, in the cube's units and dtype float32."""
    if cube.shape[-1] != srf.shape[1]:
        raise ValueError(f"SRF has {srf.shape[1]} HSI bands but the cube has {cube.shape[-1]}")
    return (cube.astype(np.float32, copy=False) @ srf.T.astype(np.float32)).astype(np.float32, copy=False)
