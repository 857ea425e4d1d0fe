"""Random spatial layouts shared by the scene generators (:mod:`data.synthetic`, :mod:`data.realistic`): 1/f noise
and warped Voronoi regions. Deterministic given the generator's state; sizes in pixels."""

from __future__ import annotations

import numpy as np


def fractal_noise(shape: tuple[int, int], beta: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std Gaussian noise with power spectrum ∝ 1/f^beta, (H, W) float64."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.sqrt(fy**2 + fx**2)
    f[0, 0] = 1.0
    spec = np.fft.rfft2(rng.standard_normal(shape)) / f ** (beta / 2)
    spec[0, 0] = 0.0
    out = np.fft.irfft2(spec, s=shape)
    return out / (out.std() + 1e-12)


def warped_voronoi(shape: tuple[int, int], n_cells: int, rng: np.random.Generator, warp: float = 0.06) -> np.ndarray:
    """Cell index map (H, W) int of ``n_cells`` Voronoi cells on coordinates warped by smooth 1/f³ noise of
    ``warp`` × the image diagonal (pixels): irregular, field-like regions with sharp boundaries."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    amplitude = warp * np.hypot(h, w)
    wy = yy + amplitude * fractal_noise(shape, 3.0, rng)
    wx = xx + amplitude * fractal_noise(shape, 3.0, rng)
    seeds = rng.uniform(0, 1, size=(n_cells, 2)) * (h, w)
    dist = (wy[..., None] - seeds[:, 0]) ** 2 + (wx[..., None] - seeds[:, 1]) ** 2
    return np.argmin(dist, axis=-1)
