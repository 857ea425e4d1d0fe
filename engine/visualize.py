"""Matplotlib figures of validation scenes for TensorBoard: false-colour composites, error maps, spectra.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot state, no display needed).
All images are (C, H, W) in the [0, 1]-normalised scale (network outputs mapped with v/2 + 0.5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

RGB_WAVELENGTHS_NM = (640.0, 550.0, 460.0)


def default_rgb_bands(bands: int, wavelengths: str | Sequence[float] | None = None) -> tuple[int, int, int]:
    """Band indices nearest to 640 / 550 / 460 nm on the data's wavelength list (``--wavelengths``, or the
    default list for ``bands``); for spectra that do not reach the visible, bands at 80 / 50 / 20 % of the
    range (still distinct and ordered red → blue)."""
    try:
        from data import resolve_wavelengths

        wl = np.asarray(resolve_wavelengths(wavelengths, bands), dtype=float)
    except (ImportError, ValueError, OSError):
        wl = None
    if wl is not None and len(wl) == bands and wl.min() <= RGB_WAVELENGTHS_NM[2] + 50 and wl.max() >= 600:
        picked = tuple(int(np.argmin(np.abs(wl - nm))) for nm in RGB_WAVELENGTHS_NM)
        if len(set(picked)) == 3:
            return picked  # type: ignore[return-value]
    return tuple(min(bands - 1, round(f * (bands - 1))) for f in (0.8, 0.5, 0.2))  # type: ignore[return-value]


def _np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def false_colour(cube: np.ndarray, rgb: Sequence[int], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(C, H, W) → (H, W, 3) in [0, 1]: bands ``rgb`` stretched linearly from ``lo`` to ``hi`` (per channel)."""
    img = cube[list(rgb)].transpose(1, 2, 0)
    return np.clip((img - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0)


def scene_figure(
    name: str,
    images: Mapping[str, torch.Tensor | np.ndarray],
    gt: torch.Tensor | np.ndarray,
    rgb: Sequence[int],
    pixels: Sequence[tuple[int, int]],
) -> Figure:
    """One validation scene: composites, per-pixel error maps and spectral curves.

    Args:
        name: scene name (title).
        images: {"bicubic": LR-HSI upsampled, "teacher": .., "student": ..} each (C, H, W) in [0, 1];
            any subset, drawn in this order.
        gt: ground truth (C, H, W) in [0, 1].
        rgb: three band indices of the composites (the same 2–98 % stretch, from the GT, for all panels).
        pixels: (row, col) positions of the spectral curves (marked on the GT composite).

    Returns:
        A figure: row 1 composites of each image and the GT; row 2 the per-pixel RMSE over bands of each
        image (one shared colour scale) and the spectra at ``pixels`` (GT solid, teacher dashed, student dotted).
    """
    g = _np(gt)
    imgs = {k: _np(v) for k, v in images.items()}
    lo = np.percentile(g[list(rgb)], 2, axis=(1, 2))
    hi = np.percentile(g[list(rgb)], 98, axis=(1, 2))
    cols = len(imgs) + 1
    fig = Figure(figsize=(3.2 * cols, 6.4), dpi=80, layout="constrained")
    axes = fig.subplots(2, cols, squeeze=False)
    errors = {k: np.sqrt(np.mean((v - g) ** 2, axis=0)) for k, v in imgs.items()}
    vmax = max(float(np.percentile(e, 99.5)) for e in errors.values()) if errors else 1.0
    for i, (key, img) in enumerate(imgs.items()):
        axes[0, i].imshow(false_colour(img, rgb, lo, hi))
        axes[0, i].set_title(key)
        im = axes[1, i].imshow(errors[key], cmap="magma", vmin=0.0, vmax=max(vmax, 1e-6))
        axes[1, i].set_title(f"{key} error (RMSE {float(np.sqrt(np.mean(errors[key] ** 2))):.4f})", fontsize=8)
    axes[0, -1].imshow(false_colour(g, rgb, lo, hi))
    axes[0, -1].set_title(f"GT, bands {tuple(int(b) for b in rgb)}", fontsize=9)
    if imgs:
        fig.colorbar(im, ax=list(axes[1, :-1]), shrink=0.8, label="per-pixel RMSE over bands")
    ax = axes[1, -1]
    styles = {"teacher": "--", "student": ":", "bicubic": "-."}
    colours = [f"C{i}" for i in range(len(pixels))]
    for (r, c), colour in zip(pixels, colours, strict=True):
        axes[0, -1].plot([c], [r], marker="+", color=colour, markersize=10)
        ax.plot(g[:, r, c], "-", color=colour, label=f"GT ({r},{c})")
        for key in ("teacher", "student"):
            if key in imgs:
                ax.plot(imgs[key][:, r, c], styles[key], color=colour, label=f"{key} ({r},{c})")
    ax.set_xlabel("band")
    ax.set_ylabel("value (normalised)")
    ax.set_title("spectra: GT –, teacher --, student ··", fontsize=8)
    ax.legend(fontsize=5, ncol=1)
    for a in axes[0]:
        a.axis("off")
    for a in axes[1, :-1]:
        a.axis("off")
    fig.suptitle(name)
    return fig


def probe_pixels(height: int, width: int) -> list[tuple[int, int]]:
    """Three fixed pixel positions spread over an image (for the spectral curves)."""
    return [(height // 4, width // 4), (height // 2, (2 * width) // 3), ((3 * height) // 4, width // 3)]
