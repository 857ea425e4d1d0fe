"""Built-in synthetic HR-HSI scenes: deterministic from a seed, any size, any wavelength list.

A scene is a linear mixture X(y, x, λ) = s(y, x) · Σ_k A_k(y, x) · E_k(λ) of physically shaped
reflectance spectra E_k (``endmembers``: vegetation with chlorophyll wells, red edge and leaf-water
absorptions; dry/wet/clay soils; water; minerals with diagnostic SWIR features; man-made surfaces)
over abundance maps A (≥ 0, summing to 1 per pixel) built from

- field-like regions with sharp edges (a Voronoi partition of noise-warped coordinates),
- textures inside each region (fractal 1/f noise mixing two materials → mixed pixels),
- smooth gradients (a low-frequency moisture field blending dry and wet soil),
- soft, blurred boundaries in part of the scene (mixed pixels along edges),
- man-made objects with straight, sharp edges (buildings, roads) and sub-LR-pixel details (trees),

and s a smooth illumination field in [0.8, 1]. Values are reflectances in [0, 1] (``VALUE_RANGE``).
Fine structure (edges, textures, 1–3 pixel objects) is what a ×4 LR-HSI loses and an HR-MSI keeps.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .spectral import aviris172_wavelengths, to_nanometres
from .textures import fractal_noise, warped_voronoi

VALUE_RANGE = (0.0, 1.0)


def _g(wl: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((wl - centre) / width) ** 2)


def _s(wl: np.ndarray, centre: float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(wl - centre) / width))


def _vegetation(wl: np.ndarray, nir: float, water: float) -> np.ndarray:
    # green peak between the chlorophyll wells (~450/670 nm), red edge at ~715 nm, NIR plateau,
    # leaf-water absorptions at 970/1200/1450/1940 nm and the SWIR decline.
    r = 0.03 + 0.06 * _g(wl, 550, 30) + nir * _s(wl, 715, 11) * (1 - 0.45 * _s(wl, 1350, 120))
    return r * (
        1
        - water * (0.07 * _g(wl, 970, 25) + 0.12 * _g(wl, 1200, 35) + 0.6 * _g(wl, 1450, 60) + 0.75 * _g(wl, 1940, 80))
    )


def _soil(wl: np.ndarray, bright: float, wet: float) -> np.ndarray:
    r = bright * (0.35 + 0.75 * _s(wl, 750, 250) - 0.2 * _s(wl, 2100, 200))
    r = r * (1 - 0.12 * _g(wl, 1420, 40) - 0.18 * _g(wl, 1920, 50) - 0.08 * _g(wl, 2200, 30))
    return r * (1 - wet * (0.4 + 0.4 * _s(wl, 1300, 300)))  # water darkens, more so in the SWIR


def _water(wl: np.ndarray, turbid: float) -> np.ndarray:
    return 0.01 + (0.05 + 0.04 * turbid) * _g(wl, 500, 90) + 0.02 * turbid * _g(wl, 700, 60)


def _kaolinite(wl: np.ndarray) -> np.ndarray:
    r = 0.45 + 0.3 * _s(wl, 600, 120)
    return r * (1 - 0.25 * _g(wl, 1400, 20) - 0.2 * _g(wl, 1910, 30) - 0.3 * _g(wl, 2165, 12) - 0.35 * _g(wl, 2207, 14))


def _hematite(
    wl: np.ndarray,
) -> np.ndarray:  # iron oxide: dark blue/green, steep rise at ~580 nm, 870 nm well
    return (0.06 + 0.35 * _s(wl, 585, 25)) * (1 - 0.3 * _g(wl, 870, 80)) + 0.05 * _s(wl, 1200, 300)


def _calcite(wl: np.ndarray) -> np.ndarray:
    return (0.55 + 0.1 * _s(wl, 500, 80)) * (1 - 0.3 * _g(wl, 2340, 25) - 0.1 * _g(wl, 1990, 30))


def _asphalt(wl: np.ndarray) -> np.ndarray:
    return 0.05 + 0.08 * (wl - 400) / 2100


def _concrete(wl: np.ndarray) -> np.ndarray:
    return (0.22 + 0.12 * _s(wl, 550, 80)) * (1 - 0.08 * _g(wl, 1900, 60) - 0.1 * _g(wl, 2330, 30))


def _red_roof(wl: np.ndarray) -> np.ndarray:  # fired clay tiles: iron-oxide red
    return 0.08 + 0.35 * _s(wl, 600, 18) - 0.1 * _s(wl, 1800, 300)


def _metal_roof(wl: np.ndarray) -> np.ndarray:
    return 0.32 + 0.06 * np.cos(wl / 300.0)


def _blue_paint(wl: np.ndarray) -> np.ndarray:
    return 0.08 + 0.3 * _g(wl, 460, 40) + 0.35 * _s(wl, 760, 30) * (1 - 0.3 * _s(wl, 1700, 200))


_NATURAL = (
    "vegetation",
    "dry_vegetation",
    "soil",
    "wet_soil",
    "clay_soil",
    "water",
    "kaolinite",
    "hematite",
    "calcite",
)
_MAN_MADE = ("asphalt", "concrete", "red_roof", "metal_roof", "blue_paint")
ENDMEMBERS = _NATURAL + _MAN_MADE


def endmembers(wavelengths: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Reflectance spectra (K, C) of ``ENDMEMBERS`` at ``wavelengths`` (nm), values in [0.005, 0.95].

    With ``rng`` the shape parameters (leaf NIR level and water, soil brightness, turbidity) and an
    overall ±10% brightness vary per scene; without it the nominal spectra are returned.
    """
    wl = to_nanometres(wavelengths)

    def u(lo: float, hi: float) -> float:
        return (lo + hi) / 2 if rng is None else float(rng.uniform(lo, hi))

    spectra = [
        _vegetation(wl, u(0.35, 0.5), u(0.8, 1.0)),
        _vegetation(wl, u(0.15, 0.25), u(0.2, 0.4)) + 0.1 * _s(wl, 600, 80),
        _soil(wl, u(0.2, 0.3), 0.0),
        _soil(wl, u(0.2, 0.3), u(0.4, 0.6)),
        _soil(wl, u(0.3, 0.4), 0.0) * (1 - 0.25 * _g(wl, 2205, 18)),
        _water(wl, u(0.0, 1.0)),
        _kaolinite(wl),
        _hematite(wl),
        _calcite(wl),
        _asphalt(wl),
        _concrete(wl),
        _red_roof(wl),
        _metal_roof(wl),
        _blue_paint(wl),
    ]
    e = np.stack(spectra)
    if rng is not None:
        e = e * rng.uniform(0.9, 1.1, size=(len(spectra), 1))
    return np.clip(e, 0.005, 0.95)


def abundances(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Abundance maps (H, W, K) for ``ENDMEMBERS``: non-negative, summing to 1 per pixel."""
    h, w = shape
    k_of = {name: i for i, name in enumerate(ENDMEMBERS)}
    a = np.zeros((h, w, len(ENDMEMBERS)), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)

    # 1) fields: Voronoi cells of noise-warped coordinates -> irregular but sharp boundaries.
    n_cells = int(np.clip(h * w / 1500, 6, 40))
    cell = warped_voronoi(shape, n_cells, rng)
    texture = fractal_noise(shape, 1.6, rng)  # rough texture: energy at all scales
    for c in range(n_cells):
        mask = cell == c
        if not mask.any():
            continue
        p, q = rng.choice(len(_NATURAL), size=2, replace=False)
        frac = np.clip(rng.uniform(0.1, 0.5) + rng.uniform(0.15, 0.35) * texture[mask], 0.0, 1.0)
        a[mask, k_of[_NATURAL[p]]] += (1 - frac).astype(np.float32)
        a[mask, k_of[_NATURAL[q]]] += frac.astype(np.float32)

    # 2) smooth gradient: a moisture field turns part of the dry soil into wet soil.
    moisture = np.clip(
        0.5
        + 0.5 * (yy / max(h - 1, 1) * rng.uniform(-1, 1) + xx / max(w - 1, 1) * rng.uniform(-1, 1))
        + 0.2 * fractal_noise(shape, 4.0, rng),
        0,
        1,
    )
    moved = a[..., k_of["soil"]] * moisture.astype(np.float32)
    a[..., k_of["soil"]] -= moved
    a[..., k_of["wet_soil"]] += moved

    # 3) soft boundaries in part of the scene: mixed pixels along field edges.
    soft = ndimage.gaussian_filter(a, sigma=(1.5, 1.5, 0), mode="reflect")
    wsoft = (fractal_noise(shape, 4.0, rng) > 0.3).astype(np.float32)[..., None]
    a = wsoft * soft + (1 - wsoft) * a

    # 4) man-made objects with sharp straight edges: roads, buildings; 5) tiny trees.
    for _ in range(rng.integers(1, 3)):
        width = int(rng.integers(2, 6))
        if rng.random() < 0.5:
            y0 = int(rng.integers(0, max(h - width, 1)))
            region = (slice(y0, y0 + width), slice(None))
        else:
            x0 = int(rng.integers(0, max(w - width, 1)))
            region = (slice(None), slice(x0, x0 + width))
        a[region] = 0
        a[(*region, k_of[str(rng.choice(["asphalt", "concrete"]))])] = 1
    roofs = ("concrete", "red_roof", "metal_roof", "blue_paint")
    for _ in range(int(np.clip(h * w / 2500, 2, 30))):
        bh, bw = (int(v) for v in rng.integers(3, max(4, min(h, w) // 6), size=2))
        y0, x0 = int(rng.integers(0, max(h - bh, 1))), int(rng.integers(0, max(w - bw, 1)))
        a[y0 : y0 + bh, x0 : x0 + bw] = 0
        a[y0 : y0 + bh, x0 : x0 + bw, k_of[roofs[int(rng.integers(len(roofs)))]]] = 1
    n_trees = int(h * w / 400)
    ty, tx = rng.integers(0, h, n_trees), rng.integers(0, w, n_trees)
    radius = rng.uniform(0.6, 2.2, n_trees)
    tree = np.zeros(shape, dtype=np.float32)
    for y, x, r in zip(ty, tx, radius, strict=True):
        ri = int(np.ceil(r))
        ys, xs = slice(max(y - ri, 0), y + ri + 1), slice(max(x - ri, 0), x + ri + 1)
        d2 = (yy[ys, xs] - y) ** 2 + (xx[ys, xs] - x) ** 2
        tree[ys, xs] = np.maximum(tree[ys, xs], np.clip(r + 0.5 - np.sqrt(d2), 0, 1))  # 1 inside, AA edge
    a *= (1 - tree)[..., None]
    a[..., k_of["vegetation"]] += tree
    return a / a.sum(axis=-1, keepdims=True)


def make_scene(seed: int, size: int | tuple[int, int] = 64, wavelengths: np.ndarray | None = None) -> np.ndarray:
    """One synthetic HR-HSI (H, W, C) float32 reflectance in [0, 1], a pure function of its arguments.

    ``size``: H = W or (H, W) pixels; ``wavelengths`` in nm (default: the AVIRIS-like 172-band list).
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 4 or w < 4:
        raise ValueError(f"synthetic scene size must be at least 4×4, got {h}×{w}")
    wl = aviris172_wavelengths() if wavelengths is None else to_nanometres(wavelengths)
    rng = np.random.default_rng(seed)
    e = endmembers(wl, rng).astype(np.float32)
    a = abundances((h, w), rng)
    shading = (0.9 + 0.1 * np.clip(fractal_noise((h, w), 4.0, rng) / 2, -1, 1)).astype(np.float32)
    cube = (a.reshape(-1, a.shape[-1]) @ e).reshape(h, w, -1) * shading[..., None]
    return np.clip(cube, *VALUE_RANGE).astype(np.float32)


def scene_seed(seed: int, split: str, index: int) -> int:
    """Seed of scene ``index`` of ``split``: independent streams per split (disjoint by construction).

    ``split``: "train", "val", "test", "unlabelled" (datasets ``synthetic``, ``realistic``) or "prepare"
    (``data.prepare --synthetic``).
    """
    split_id = {"train": 0, "val": 1, "test": 2, "prepare": 3, "unlabelled": 4}[split]
    return int(np.random.SeedSequence([int(seed), split_id, int(index)]).generate_state(1)[0])
