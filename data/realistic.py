"""Realistic visible scenes from measured data: reflectance spectra shipped by colour-science (an optional
dependency, :mod:`data.colour_science`), nothing downloaded.

Materials (``reflectance_library``): every measured reflectance spectrum of these colour-science datasets,
resampled to the requested wavelengths (nm, within 400–700 nm), near-duplicates (max |Δ| < 0.005) and
fluorescent samples (values > 1) left out:

- the X-Rite ColorChecker, BabelColor average of measured charts (24 patches);
- the preferred-memory-colour (PMC) chart (30 patches: skin tones, foods, foliage, sky, ...);
- the RAW to ACES training set (190 patches: the ColorChecker family, skin, textiles, paints, plants);
- the CIE 2024 colour-rendering test samples (15) and the NIST CQS 9.0 samples (15).

A scene (``make_realistic_scene``) arranges them spatially: warped Voronoi regions of one material each, a
part of them textured as a 1/f mixture of two materials (mixed pixels), blurred (soft) boundaries in part of
the scene, rectangular objects with sharp edges and round objects with anti-aliased edges and Lambertian
(sphere) shading, a smooth illumination field and a few specular highlights (the dichromatic model: the
highlight is the illuminant's colour, i.e. a flat addition in reflectance units). The cube is a reflectance
(H, W, C) float32 in [0, 1].

The HR-MSI of these scenes is usually that of a measured camera, ``--srf camera:<camera>[@<illuminant>]``
(:func:`data.sensors.camera_srf`).

What these scenes are NOT: a real acquisition. There are no real spatial statistics (the layouts are
procedural), no fluorescence, no inter-reflections or shadows from a 3-D geometry, no sensor noise model
beyond the white noise of ``--snr_hsi/--snr_msi``, no optics beyond the named blur, no demosaicing, gamma or
compression, no atmosphere; the spectra are ~270 laboratory measurements of charts and samples, not of
natural scenes' materials in situ.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from .colour_science import colour_science
from .spectral import resample_spectra, to_nanometres
from .textures import fractal_noise, warped_voronoi

VALUE_RANGE = (0.0, 1.0)
VISIBLE_RANGE_NM = (400.0, 700.0)  # covered by every reflectance set and both cameras (zero outside for Sigma)
LIGHT = np.array([-0.45, -0.45, 0.77]) / np.linalg.norm([-0.45, -0.45, 0.77])  # (y, x, z) unit vector, upper left
AMBIENT = 0.3  # share of the light that reaches every surface (sky, inter-reflections, as a constant)


def _check_visible(wl: np.ndarray) -> None:
    lo, hi = VISIBLE_RANGE_NM
    if wl[0] < lo - 1e-9 or wl[-1] > hi + 1e-9:
        raise ValueError(f"realistic scenes are visible-only ({lo:.0f}–{hi:.0f} nm, the measured spectra's common "
                         f"range); the wavelengths span {wl[0]:.1f}–{wl[-1]:.1f} nm (use --bands 31 "
                         f"--wavelengths visible31 or 'lo:hi' inside that range)")


def _reflectance_sets(colour) -> list[tuple[str, list[str], np.ndarray, np.ndarray]]:
    """(set name, sample names, domain (N,) nm, values (N, K)) of every measured reflectance set used."""
    from colour.characterisation import read_training_data_rawtoaces_v1
    from colour.quality import SDS_TCS, SDS_VS

    sets = []
    for set_name, sds in (("ColorChecker (BabelColor average)", colour.SDS_COLOURCHECKERS["BabelColor Average"]),
                          ("PMC chart", colour.SDS_COLOURCHECKERS["PMC"]),
                          ("CIE 2024 TCS", SDS_TCS["CIE 2024"]), ("NIST CQS 9.0", SDS_VS["NIST CQS 9.0"])):
        for name, sd in sds.items():
            sets.append((set_name, [name], np.asarray(sd.domain, float), np.asarray(sd.values, float)[:, None]))
    training = read_training_data_rawtoaces_v1()
    sets.append(("RAW to ACES training set", list(training.labels), np.asarray(training.domain, float),
                 np.asarray(training.values, float)))
    return sets


def reflectance_library(wavelengths: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The measured reflectance spectra (K, C) float64 in [0, 1] at ``wavelengths`` (nm, within 400–700) and
    their names ``"<set>/<sample>"``, in a fixed order (see the module docstring for the sets and filters)."""
    wl = to_nanometres(wavelengths)
    _check_visible(wl)
    spectra, names = [], []
    for set_name, samples, domain, values in _reflectance_sets(colour_science()):
        resampled = resample_spectra(domain, values, wl).T  # (K, C)
        for name, r in zip(samples, resampled, strict=True):
            if r.max() > 1.0 or r.min() < -1e-9:  # fluorescent or invalid: not a reflectance
                continue
            if spectra and np.min(np.abs(np.asarray(spectra) - r).max(axis=1)) < 0.005:
                continue  # the same sample in two sets
            spectra.append(np.clip(r, 0.0, 1.0))
            names.append(f"{set_name}/{name}")
    return np.asarray(spectra), names


def _paint(cube: np.ndarray, mask: np.ndarray, spectrum: np.ndarray, shading: np.ndarray | float = 1.0) -> None:
    """Blend ``spectrum`` (C,) × ``shading`` into ``cube`` (H, W, C) with coverage ``mask`` (H, W) in [0, 1]."""
    m = mask[..., None]
    cube *= 1.0 - m
    cube += m * (np.asarray(shading, dtype=np.float64)[..., None] if np.ndim(shading) else shading) * spectrum


def _regions(shape: tuple[int, int], lib: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Background: warped Voronoi regions, ~40 % of them a textured mixture of two materials."""
    h, w = shape
    cell = warped_voronoi(shape, int(np.clip(h * w / 600, 6, 40)), rng)
    texture = fractal_noise(shape, 1.8, rng)
    cube = np.zeros((h, w, lib.shape[1]))
    for c in range(int(cell.max()) + 1):
        mask = cell == c
        p, q = rng.choice(len(lib), size=2, replace=False)
        frac = np.clip(rng.uniform(0.2, 0.5) + 0.3 * texture[mask], 0, 1) if rng.random() < 0.4 else 0.0
        cube[mask] = np.outer(1 - frac, lib[p]) + np.outer(frac, lib[q]) if np.ndim(frac) else lib[p]
    soft = ndimage.gaussian_filter(cube, sigma=(1.2, 1.2, 0), mode="reflect")
    where_soft = (fractal_noise(shape, 4.0, rng) > 0.2)[..., None]
    return np.where(where_soft, soft, cube)


def _objects(cube: np.ndarray, lib: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rectangles (sharp edges, flat) and discs (anti-aliased, Lambertian sphere shading, some with a
    specular highlight); returns the highlight map (H, W) ≥ 0 in reflectance units."""
    h, w = cube.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    highlight = np.zeros((h, w))
    for _ in range(int(np.clip(h * w / 700, 2, 40))):
        spectrum = lib[rng.integers(len(lib))]
        if rng.random() < 0.5:
            bh, bw = (int(v) for v in rng.integers(2, max(3, min(h, w) // 5), size=2))
            y0, x0 = int(rng.integers(0, max(h - bh, 1))), int(rng.integers(0, max(w - bw, 1)))
            mask = np.zeros((h, w))
            mask[y0 : y0 + bh, x0 : x0 + bw] = 1.0
            _paint(cube, mask, spectrum, rng.uniform(0.7, 1.0))
            continue
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1.0, max(1.5, min(h, w) / 8))
        d = np.hypot(yy - cy, xx - cx)
        mask = np.clip(r + 0.5 - d, 0.0, 1.0)  # 1 inside, linear over one pixel at the rim
        # Sphere normal n = ((x − cx)/r, (y − cy)/r, n_z); Lambertian n·l for a light from the upper left, plus
        # ambient light so that the shadowed side keeps a fraction of the material's spectrum.
        nz = np.sqrt(np.clip(1.0 - (d / r) ** 2, 0.0, 1.0))
        n_dot_l = np.clip((LIGHT[0] * (yy - cy) + LIGHT[1] * (xx - cx)) / r + LIGHT[2] * nz, 0.0, 1.0)
        _paint(cube, mask, spectrum, AMBIENT + (1 - AMBIENT) * n_dot_l)
        if rng.random() < 0.3:
            spot = np.exp(-(((yy - (cy - 0.35 * r)) ** 2 + (xx - (cx - 0.35 * r)) ** 2) / (2 * (0.2 * r + 0.5) ** 2)))
            highlight = np.maximum(highlight, rng.uniform(0.05, 0.25) * spot * mask)
    return highlight


def make_realistic_scene(seed: int, size: int | tuple[int, int], wavelengths: np.ndarray,
                         library: np.ndarray | None = None) -> np.ndarray:
    """One scene (H, W, C) float32 reflectance in [0, 1] from measured spectra, a pure function of its arguments.

    ``size``: H = W or (H, W) pixels (≥ 8); ``wavelengths`` in nm within 400–700; ``library`` (K, C) the
    spectra at those wavelengths (default ``reflectance_library(wavelengths)``; pass it to skip reloading).
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 8 or w < 8:
        raise ValueError(f"realistic scene size must be at least 8×8, got {h}×{w}")
    wl = to_nanometres(wavelengths)
    lib = reflectance_library(wl)[0] if library is None else np.asarray(library, dtype=np.float64)
    if lib.ndim != 2 or lib.shape[1] != wl.size:
        raise ValueError(f"library: expected (K, {wl.size}) spectra, got {lib.shape}")
    rng = np.random.default_rng(seed)
    cube = _regions((h, w), lib, rng)
    highlight = _objects(cube, lib, rng)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    light = 0.75 + 0.2 * (rng.uniform(-1, 1) * (yy - 0.5) + rng.uniform(-1, 1) * (xx - 0.5))
    light = light + 0.08 * np.clip(fractal_noise((h, w), 4.0, rng), -2.5, 2.5)
    cube = cube * np.clip(light, 0.3, 1.0)[..., None] + highlight[..., None]
    return np.clip(cube, *VALUE_RANGE).astype(np.float32)


def scene_generator(wavelengths: np.ndarray) -> Callable[[int, int | tuple[int, int]], np.ndarray]:
    """``make(seed, size)`` with the library loaded once for ``wavelengths`` (what the datasets call)."""
    wl = to_nanometres(wavelengths)
    lib, _ = reflectance_library(wl)
    return lambda seed, size: make_realistic_scene(seed, size, wl, lib)


__all__ = ["VALUE_RANGE", "make_realistic_scene", "reflectance_library", "scene_generator"]
