"""Full-reference quality metrics for fused hyperspectral images (official: ``sam2``, ``psnr``,
``ERGAS``, ``rmse`` in trainOps.py, applied per image in train_CSAKD.py / test_CSAKD.py).

Conventions (the same with and without ``compat="official"`` unless stated):

- Images are (C, H, W), C = spectral bands. The per-image functions take images already mapped to
  [0, 1]; :func:`evaluate_batch` takes network outputs and targets in the [-1, 1] domain and maps both
  with v/2 + 0.5 (:func:`to_unit_range`). Predictions are **not clipped**. Everything is computed in
  float64. Each metric is computed per image, then averaged over images (:func:`mean_metrics`).
- **PSNR** (dB): per band b, 10·log10(max(g_b)² / mean((p_b − g_b)²)), peak = the maximum of the GT
  band; then the mean over bands. A band reproduced exactly gives +inf (returned as is).
- **SAM** (degrees by default): per pixel, arccos(⟨p, g⟩ / (‖p‖·‖g‖)); mean over pixels.
  Default: pixels where ‖p‖·‖g‖ = 0 have no angle and are excluded from the mean and counted
  (``"sam_zero_pixels"`` in :func:`evaluate_batch`); the cosine is clamped to [-1, 1]. Identical
  images give 0 up to arccos rounding (~1e-6°).
  ``compat="official"``: no exclusion and no clamp, sum over all pixels / (H·W), so one zero spectrum
  (or a rounding |cos| > 1) gives NaN; ``"sam_zero_pixels"`` still counts the zero spectra.
  In both settings a NaN or ±inf anywhere in either image makes SAM NaN (such a pixel is not a zero
  spectrum to skip: a partly diverged network must not score well).
- **ERGAS**: (100 / ratio)·sqrt(mean_b [mean((p_b − g_b)²) / mean(g_b)²]) on the [0, 1] images.
  ratio = the model's scale factor by default; 4 with ``compat="official"``. (torchmetrics ≥ 1.4 and
  Vivone's toolbox use the same 100/ratio convention.)
- **RMSE** (raw data units): both images de-normalised with the GT's min/max, v ↦ v·(max − min) + min,
  then sqrt(mean((p − g)²)) over all elements. ``compat="official"`` (test_CSAKD.py): RMSE of the
  [0, 1] images times (max − min) **plus min** (the official test-script offset).
- **Small images**: the SSIM and UIQI windows shrink to fit: SSIM uses the largest odd size
  ≤ min(11, H, W) (σ stays 1.5), UIQI min(32, H, W). Images of 11×11 (SSIM) and 32×32 (UIQI) and
  larger are scored exactly as below.
- **SSIM**: per band, Wang et al. 2004: Gaussian window 11×11, σ = 1.5, K1 = 0.01, K2 = 0.03,
  data_range 1; weighted (population) variances. Borders: ``border="valid"`` (default) averages the
  SSIM map over the window positions that lie entirely inside the image, (H − 10)×(W − 10), as
  Wang's MATLAB reference and scikit-image do; ``border="reflect"`` reflect-pads by 5 and averages over
  all H×W positions, as torchmetrics does. Mean over bands.
- **UIQI** (Q, Wang & Bovik 2002): per band, Q over a 32×32 uniform window sliding with stride 1 over the
  positions inside the image (no padding; "valid"), averaged over positions, then over bands. A window
  flat in both images scores 2·μ_p·μ_g / (μ_p² + μ_g²) (1 if both means are 0), as in the authors'
  ``img_qi.m``.
- **CC**: per band, the Pearson correlation between p_b and g_b over pixels; mean over bands. A band
  constant in either image has no correlation (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from utils.compat import check_compat
from utils.defaults import SCALE

METRIC_NAMES = ("psnr", "sam", "ergas", "rmse", "ssim", "uiqi", "cc")

#: Whether a larger value of the metric is better ("higher") or worse ("lower").
METRIC_DIRECTIONS = {
    "psnr": "higher",
    "sam": "lower",
    "ergas": "lower",
    "rmse": "lower",
    "ssim": "higher",
    "uiqi": "higher",
    "cc": "higher",
}

#: Per-image counts reported next to the metrics; :func:`mean_metrics` sums them instead of averaging.
COUNT_KEYS = ("sam_zero_pixels",)

OFFICIAL_ERGAS_RATIO = 4

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
UIQI_BLOCK = 32
# A UIQI window counts as flat when its (scaled) variance sum is below this fraction of its second
# moment: exact zeros do not survive the floating-point window sums.
_FLAT_TOL = 1e-10

ImageLike = torch.Tensor | np.ndarray


# ---------------------------------------------------------------------------------------------------
# Input handling


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Map the network's [-1, 1] domain to [0, 1]: v/2 + 0.5 (no clipping)."""
    return x / 2 + 0.5


def _as_float64(x: ImageLike, name: str, where: str, dims: int) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{where}: {name} must be a tensor or array, got {type(x).__name__}")
    if x.dim() != dims:
        layout = "(C, H, W)" if dims == 3 else "(B, C, H, W)"
        raise ValueError(f"{where}: {name} must be {layout}, got shape {tuple(x.shape)}")
    return x.detach().to(torch.float64)


def _pair(pred: ImageLike, gt: ImageLike, where: str, dims: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images as float64 tensors of the same shape; the GT must be finite (NaN predictions are
    allowed and propagate, so a diverged model shows up in the metrics instead of crashing them)."""
    p = _as_float64(pred, "pred", where, dims)
    g = _as_float64(gt, "gt", where, dims)
    if p.shape != g.shape:
        raise ValueError(
            f"{where}: pred and gt must have the same shape, got {tuple(p.shape)} and {tuple(g.shape)}"
        )
    if not torch.isfinite(g).all():
        raise ValueError(f"{where}: gt contains NaN or inf values")
    return p, g.to(p.device)


# ---------------------------------------------------------------------------------------------------
# Per-image metrics on (C, H, W) images in [0, 1]


def psnr(pred: ImageLike, gt: ImageLike) -> float:
    """Mean over bands of the band PSNR in dB, peak = max of the GT band (official: ``psnr``).

    Returns +inf if some band has zero error (and NaN if that band's GT is also all zero).
    """
    p, g = _pair(pred, gt, "psnr")
    mse = (p - g).pow(2).mean(dim=(1, 2))
    peak = g.amax(dim=(1, 2))
    return (10 * torch.log10(peak.pow(2) / mse)).mean().item()


def sam(
    pred: ImageLike,
    gt: ImageLike,
    compat: str | None = None,
    unit: str = "deg",
    return_zero_pixels: bool = False,
) -> float | tuple[float, int]:
    """Mean spectral angle between per-pixel spectra (official: ``sam2``).

    Args:
        pred, gt: (C, H, W) images in [0, 1].
        compat: ``None``: pixels with ‖p‖·‖g‖ = 0 are excluded (NaN if all are), cos clamped to
            [-1, 1]. ``"official"``: neither, NaN as soon as one pixel has no angle.
        unit: ``"deg"`` (default, as the paper) or ``"rad"``.
        return_zero_pixels: also return the number of pixels with ‖p‖·‖g‖ = 0 (no angle): excluded
            by default, the cause of a NaN with ``"official"``.
    """
    check_compat(compat, "sam")
    if unit not in ("deg", "rad"):
        raise ValueError(f"sam: unit must be 'deg' or 'rad', got {unit!r}")
    p, g = _pair(pred, gt, "sam")
    dot = (p * g).sum(dim=0)
    norm_product = torch.sqrt(p.pow(2).sum(dim=0) * g.pow(2).sum(dim=0))
    valid = norm_product > 0
    zero_pixels = int((norm_product == 0).sum())
    if not (torch.isfinite(p).all() and torch.isfinite(g).all()):
        value = math.nan  # non-finite pixels would otherwise be dropped (default) like zero spectra
    elif compat == "official":
        angles = torch.arccos(dot / norm_product)
        value = (angles.sum() / angles.numel()).item()
    else:
        angles = torch.arccos((dot[valid] / norm_product[valid]).clamp(-1.0, 1.0))
        value = angles.mean().item() if angles.numel() else math.nan
    if unit == "deg":
        value = math.degrees(value)
    return (value, zero_pixels) if return_zero_pixels else value


def ergas(pred: ImageLike, gt: ImageLike, ratio: float) -> float:
    """ERGAS = (100/ratio)·sqrt(mean_b MSE_b / mean(g_b)²) (official: ``ERGAS``, ratio 4).

    ``ratio`` is the high/low resolution ratio (the fusion scale factor). Unitless, ≥ 0; +inf if a
    GT band has zero mean.
    """
    if not ratio > 0:
        raise ValueError(f"ergas: ratio must be positive, got {ratio!r}")
    p, g = _pair(pred, gt, "ergas")
    mse = (p - g).pow(2).mean(dim=(1, 2))
    band_mean = g.mean(dim=(1, 2))
    return (100.0 / ratio * torch.sqrt((mse / band_mean.pow(2)).mean())).item()


def rmse(pred: ImageLike, gt: ImageLike, maxv: float, minv: float, compat: str | None = None) -> float:
    """RMSE in raw data units (official: ``rmse``).

    Args:
        pred, gt: (C, H, W) images in [0, 1].
        maxv, minv: the GT's raw max and min (the per-image normalisation constants).
        compat: ``None``: de-normalise both images, v·(maxv − minv) + minv, then sqrt(mean((p − g)²)).
            ``"official"``: sqrt(mean((p − g)²)) on [0, 1] data, ·(maxv − minv) + minv (test_CSAKD.py).
    """
    check_compat(compat, "rmse")
    maxv, minv = float(maxv), float(minv)
    if not maxv >= minv:
        raise ValueError(f"rmse: maxv must be >= minv, got maxv={maxv} and minv={minv}")
    p, g = _pair(pred, gt, "rmse")
    if compat == "official":
        return torch.sqrt((p - g).pow(2).mean()).item() * (maxv - minv) + minv
    span = maxv - minv
    return torch.sqrt(((p * span + minv) - (g * span + minv)).pow(2).mean()).item()


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    window = torch.exp(-0.5 * (coords / sigma) ** 2)
    return window / window.sum()


def _band_matrix(size: int, taps: torch.Tensor) -> torch.Tensor:
    """(size, size − k + 1) matrix M with M[j + a, j] = taps[a]: ``x @ M`` is the 'valid' correlation of
    the rows of x with ``taps`` (a dense matmul is far faster on CPU than a float64 depthwise conv)."""
    k = taps.numel()
    out = size - k + 1
    matrix = torch.zeros(size, out, dtype=taps.dtype, device=taps.device)
    cols = torch.arange(out, device=taps.device)
    for a in range(k):
        matrix[cols + a, cols] = taps[a]
    return matrix


def _separable_filter(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """'Valid' 2-D correlation of every (H, W) slice of (..., H, W) with the window taps ⊗ taps."""
    rows = _band_matrix(x.shape[-2], taps)
    cols = _band_matrix(x.shape[-1], taps)
    return rows.transpose(0, 1) @ x @ cols


def ssim_window(height: int, width: int) -> int:
    """SSIM window side for an H×W image: 11, or the largest odd size ≤ min(H, W) when that is smaller."""
    side = min(SSIM_WINDOW, height, width)
    return side if side % 2 else side - 1 if side > 1 else 1


def ssim(pred: ImageLike, gt: ImageLike, data_range: float = 1.0, border: str = "valid") -> float:
    """Mean over bands of the band SSIM (Gaussian 11×11, σ = 1.5, K1 = 0.01, K2 = 0.03).

    Args:
        pred, gt: (C, H, W) images, with ``data_range`` the dynamic range (1 for [0, 1] data).
        border: ``"valid"`` (window positions inside the image only) or ``"reflect"`` (reflect padding,
            all H×W positions; matches torchmetrics).

    The window is 11×11, or the largest odd size ≤ min(H, W) for smaller images (:func:`ssim_window`).
    """
    if border not in ("valid", "reflect"):
        raise ValueError(f"ssim: border must be 'valid' or 'reflect', got {border!r}")
    p, g = _pair(pred, gt, "ssim")
    size = ssim_window(*p.shape[1:])
    half = size // 2
    if border == "reflect":
        p = F.pad(p.unsqueeze(0), (half, half, half, half), mode="reflect").squeeze(0)
        g = F.pad(g.unsqueeze(0), (half, half, half, half), mode="reflect").squeeze(0)
    window = _gaussian_window(size, SSIM_SIGMA, p.dtype, p.device)
    stats = _separable_filter(torch.stack((p, g, p * p, g * g, p * g)), window)
    mu_p, mu_g, e_pp, e_gg, e_pg = stats
    # Cancellation in E[x²] − μ² can go slightly negative on flat regions.
    var_p = (e_pp - mu_p.pow(2)).clamp_min(0)
    var_g = (e_gg - mu_g.pow(2)).clamp_min(0)
    cov = e_pg - mu_p * mu_g
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    numerator = (2 * mu_p * mu_g + c1) * (2 * cov + c2)
    ssim_map = numerator / ((mu_p.pow(2) + mu_g.pow(2) + c1) * (var_p + var_g + c2))
    return ssim_map.mean(dim=(1, 2)).mean().item()


def uiqi(pred: ImageLike, gt: ImageLike, block: int | None = None) -> float:
    """Mean over bands of the universal image quality index Q (Wang & Bovik 2002).

    Q = 4·σ_pg·μ_p·μ_g / ((σ_p² + σ_g²)(μ_p² + μ_g²)) over each block×block window, the window sliding
    with stride 1 over positions inside the image (needs H, W ≥ block); mean over windows, then bands.
    ``block`` defaults to min(32, H, W), so that small images are scored with the largest window that fits.
    """
    p, g = _pair(pred, gt, "uiqi")
    height, width = p.shape[1:]
    if block is None:
        block = min(UIQI_BLOCK, height, width)
    if block < 1 or min(height, width) < block:
        raise ValueError(
            f"uiqi: block must be in [1, min(H, W)], got block={block} for {height}×{width} images"
        )
    n = block * block
    box = torch.ones(block, dtype=p.dtype, device=p.device)
    s_p, s_g, s_pp, s_gg, s_pg = _separable_filter(torch.stack((p, g, p * p, g * g, p * g)), box)
    mean_product = s_p * s_g  # n²·μ_p·μ_g
    mean_squares = s_p.pow(2) + s_g.pow(2)  # n²·(μ_p² + μ_g²)
    var_sum = n * (s_pp + s_gg) - mean_squares  # n²·(σ_p² + σ_g²)
    numerator = 4 * (n * s_pg - mean_product) * mean_product
    denominator = var_sum * mean_squares
    flat = var_sum.abs() <= _FLAT_TOL * n * (s_pp + s_gg)
    q = torch.ones_like(s_p)
    luminance_only = flat & (mean_squares != 0)
    q = torch.where(luminance_only, 2 * mean_product / torch.where(luminance_only, mean_squares, 1), q)
    regular = ~flat & (denominator != 0)
    q = torch.where(regular, numerator / torch.where(regular, denominator, 1), q)
    return q.mean(dim=(1, 2)).mean().item()


def cc(pred: ImageLike, gt: ImageLike) -> float:
    """Mean over bands of the Pearson correlation coefficient between p_b and g_b, in [-1, 1]."""
    p, g = _pair(pred, gt, "cc")
    p = p.flatten(1) - p.flatten(1).mean(dim=1, keepdim=True)
    g = g.flatten(1) - g.flatten(1).mean(dim=1, keepdim=True)
    r = (p * g).sum(dim=1) / torch.sqrt(p.pow(2).sum(dim=1) * g.pow(2).sum(dim=1))
    return r.mean().item()


# ---------------------------------------------------------------------------------------------------
# Batches


def _per_image_constants(
    values: float | Sequence[float] | torch.Tensor, batch: int, name: str
) -> list[float]:
    if isinstance(values, torch.Tensor | np.ndarray):
        flat = [float(v) for v in values.reshape(-1).tolist()]
    elif isinstance(values, int | float):
        flat = [float(values)]
    else:
        flat = [float(v) for v in values]
    if len(flat) == 1:
        flat = flat * batch
    if len(flat) != batch:
        raise ValueError(
            f"evaluate_batch: {name} must hold 1 or {batch} values (one per image), got {len(flat)}"
        )
    return flat


def evaluate_batch(
    pred: torch.Tensor,
    gt: torch.Tensor,
    maxv: float | Sequence[float] | torch.Tensor,
    minv: float | Sequence[float] | torch.Tensor,
    scale: int = SCALE,
    compat: str | None = None,
    metrics: Iterable[str] | None = None,
    test_rmse: bool = True,
) -> list[dict[str, float]]:
    """Metrics of every image of a batch.

    Args:
        pred: network output (B, C, H, W) in the [-1, 1] domain (not clipped).
        gt: target (B, C, H, W) in the [-1, 1] domain.
        maxv, minv: each image's raw GT max and min (a (B,) tensor, a sequence, or one number).
        scale: the model's scale factor, used as the ERGAS ratio unless ``compat="official"`` (then 4).
        compat: ``None`` or ``"official"`` (SAM, RMSE and ERGAS conventions, see the module docstring).
        metrics: names from :data:`METRIC_NAMES` to compute; ``None`` = all.
        test_rmse: with ``compat="official"``, RMSE as the official test script computes it (``+ minv``);
            ``False``: as the official training validation computes it (the default RMSE, docs/csakd.md §6.1).

    Returns:
        One dict per image with the requested metrics as floats; when ``"sam"`` is requested the
        dict also holds ``"sam_zero_pixels"``, the number of pixels without an angle (zero spectrum).
    """
    check_compat(compat, "evaluate_batch")
    names = METRIC_NAMES if metrics is None else tuple(metrics)
    unknown = [name for name in names if name not in METRIC_NAMES]
    if unknown:
        raise ValueError(
            f"evaluate_batch: unknown metric(s) {unknown}; expected names from {list(METRIC_NAMES)}"
        )
    p, g = _pair(pred, gt, "evaluate_batch", dims=4)
    p, g = to_unit_range(p), to_unit_range(g)
    batch = p.shape[0]
    maxvs = _per_image_constants(maxv, batch, "maxv")
    minvs = _per_image_constants(minv, batch, "minv")
    ratio = OFFICIAL_ERGAS_RATIO if compat == "official" else scale
    results = []
    for i in range(batch):
        pi, gi = p[i], g[i]
        row: dict[str, float] = {}
        for name in names:
            if name == "psnr":
                row["psnr"] = psnr(pi, gi)
            elif name == "sam":
                row["sam"], row["sam_zero_pixels"] = sam(pi, gi, compat=compat, return_zero_pixels=True)
            elif name == "ergas":
                row["ergas"] = ergas(pi, gi, ratio)
            elif name == "rmse":
                row["rmse"] = rmse(pi, gi, maxvs[i], minvs[i], compat=compat if test_rmse else None)
            elif name == "ssim":
                row["ssim"] = ssim(pi, gi)
            elif name == "uiqi":
                row["uiqi"] = uiqi(pi, gi)
            elif name == "cc":
                row["cc"] = cc(pi, gi)
        results.append(row)
    return results


def improves(metric: str, value: float, best: float) -> bool:
    """Whether ``value`` of ``metric`` beats ``best`` (its :data:`METRIC_DIRECTIONS`); a NaN or infinite value
    never does, so a diverged network cannot become the best checkpoint (docs/decisions.md #8)."""
    if not math.isfinite(value):
        return False
    if METRIC_DIRECTIONS[metric] == "lower":
        return value < best
    return value > best


def mean_metrics(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Average per-image metric dicts over images (counts in :data:`COUNT_KEYS` are summed).

    Only keys present in every dict are kept. NaN and inf propagate (an image with PSNR +inf makes the
    mean +inf), so they are visible rather than silently dropped.
    """
    if not rows:
        raise ValueError("mean_metrics: no per-image results to average")
    keys = [key for key in rows[0] if all(key in row for row in rows)]
    out: dict[str, float] = {}
    for key in keys:
        values = [row[key] for row in rows]
        out[key] = sum(values) if key in COUNT_KEYS else float(np.mean(values))
    return out
