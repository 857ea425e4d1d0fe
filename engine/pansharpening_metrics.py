"""Pansharpening quality indices exactly as the Vivone et al. toolbox computes them (the MATLAB
``Quality_Indices/`` shipped in DLPan-Toolbox), reproduced to 1e-8 or better (docs/pansharpening.md).

Conventions:

- Images are (C, H, W) arrays in **DN** (PanCollection: 0–2047 for the 11-bit sensors, 0–1023 for GF2), computed
  in float64. Data normalised to [0, 1] must be multiplied back by the sensor scale first: Q2n casts to uint16
  and is wrong on [0, 1] data (by 0.12 on the test fixture).
- Reduced resolution (:func:`reduced_resolution`), against the ground truth: **Q2n** (Q4 / Q8, the
  hypercomplex quality index on 32×32 blocks with shift 32), **Q_avg** (Wang–Bovik Q per band, 32×32 window,
  stride 1), **SAM** (degrees), **ERGAS** (100/ratio, ratio 4), **SCC** (Sobel spatial correlation), and PSNR
  (this codebase's, ``utils.metrics.psnr``: per band, peak = the GT band's maximum; the toolbox has none).
  ``dim_cut`` removes the border as ``indexes_evaluation.m`` does (MATLAB ``I(dim_cut:end-dim_cut)``: keeps
  N − 2·dim_cut + 1 pixels, 215 of 256 for the toolbox's 21; 0 = no cut).
- Full resolution (:func:`full_resolution`), without ground truth: **D_λ**, **D_s**, **QNR** (toolbox 1.0:
  the Q index on distinct S×S blocks, S = 32, p = q = α = β = 1, D_λ against the upsampled MS, D_s against
  interp23tap(imresize(PAN, 1/ratio))), **D_λ^K** = 1 − Q2n(MS↑, MTF(F)) with the sensor's MTF, and
  **HQNR** = (1 − D_λ^K)(1 − D_s). Sides must be multiples of S.
- Flat blocks: as in the toolbox, an S×S block without variance in both images of a Q pair of D_λ or D_s is
  NaN (``uqi`` has no guard) and makes the index NaN; such blocks are counted (``d_lambda_nan_blocks``,
  ``d_s_nan_blocks``), never hidden. Q2n has no NaN: its normalisation maps every band mean to 1, so a block
  flat in both images scores 1 if they agree, and a flat GT block under a textured fused one scores ~0.
  Q2n's uint16 cast also maps NaN to 0 and +inf to 65535 (MATLAB's); callers refuse non-finite images first.
- Sizes the toolbox cannot score are one ValueError: Q2n needs images of at least block/2 (16) pixels a side
  (its mirror padding reads past the image otherwise), FR indices sides that are multiples of S.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from data.resample import imresize_bicubic, interp23tap
from data.sensors import mtf_filter
from utils.metrics import METRIC_DIRECTIONS, ergas, psnr, sam, uiqi

RR_METRICS = ("q2n", "sam", "ergas", "scc", "q_avg", "psnr")
FR_METRICS = ("d_lambda", "d_s", "qnr", "d_lambda_k", "hqnr")
#: Whether a larger value of an index this module adds is better ("higher") or worse ("lower"); SAM, ERGAS and
#: PSNR are ``utils.metrics``'s (:data:`~utils.metrics.METRIC_DIRECTIONS`). :func:`direction` answers for both.
DIRECTIONS = {"q2n": "higher", "scc": "higher", "q_avg": "higher", "d_lambda": "lower", "d_s": "lower",
              "qnr": "higher", "d_lambda_k": "lower", "hqnr": "higher"}
#: Per-image counts next to the indices; summed over images, not averaged.
PANSHARPENING_COUNT_KEYS = ("d_lambda_nan_blocks", "d_s_nan_blocks")


def direction(metric: str) -> str:
    """"higher" or "lower": the better direction of ``metric``, a name of either task (HSI fusion's
    ``utils.metrics.METRIC_NAMES`` or :data:`RR_METRICS` / :data:`FR_METRICS`); a KeyError for other names."""
    return DIRECTIONS[metric] if metric in DIRECTIONS else METRIC_DIRECTIONS[metric]


Q_BLOCK = 32  # Q2n block and shift, Q_avg window (indexes_evaluation.m: Qblocks_size)
QNR_BLOCK = 32  # S of D_λ, D_s, D_λ^K (QNR.m / HQNR call)
RATIO = 4
TOOLBOX_DIM_CUT = 21  # Demo_Reduced_Resolution.m


def _image(x, name: str, where: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"{where}: {name} must be a (C, H, W) image, got shape {arr.shape}")
    return arr


def _same_shape(a: np.ndarray, b: np.ndarray, names: str, where: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{where}: {names} must have the same shape, got {a.shape} and {b.shape}")


def border_cut(img: np.ndarray, dim_cut: int) -> np.ndarray:
    """(C, H, W) without the toolbox border: MATLAB ``I(dim_cut:end-dim_cut, dim_cut:end-dim_cut, :)``, i.e.
    0-based rows/columns dim_cut − 1 … N − dim_cut − 1; ``dim_cut`` 0 returns the image."""
    if dim_cut < 0:
        raise ValueError(f"--dim_cut must be >= 0, got {dim_cut}")
    if dim_cut == 0:
        return img
    h, w = img.shape[-2:]
    if min(h, w) - 2 * dim_cut + 1 < 1:
        raise ValueError(f"--dim_cut {dim_cut} leaves nothing of a {h}×{w} image")
    return img[..., dim_cut - 1 : h - dim_cut, dim_cut - 1 : w - dim_cut]


# ---------------------------------------------------------------------------------------------------
# Q2n (q2n.m, onions_quality.m, onion_mult*.m, norm_blocco.m)


def _matlab_uint16(x: np.ndarray) -> np.ndarray:
    """MATLAB ``uint16(x)`` as float64: round half away from zero, saturate to [0, 65535], NaN → 0."""
    return np.clip(np.floor(np.nan_to_num(x, nan=0.0) + 0.5), 0, 65535)


def _conj(x: np.ndarray) -> np.ndarray:
    """Hypercomplex conjugate along axis 0: components 2… negated."""
    return np.concatenate([x[:1], -x[1:]])


def onion_mult(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cayley–Dickson product of hypercomplex numbers stored along axis 0 (2^k components), as the
    toolbox's ``onion_mult``/``onion_mult2D`` recursion: (a, b)(c, d) = (ac − d b*, a* d + c b) on halves."""
    n = x.shape[0]
    if n == 1:
        return x * y
    half = n // 2
    a, b, c, d = x[:half], _conj(x[half:]), y[:half], _conj(y[half:])
    if n == 2:
        return np.concatenate([a * c - d * b, a * d + c * b])
    return np.concatenate([onion_mult(a, c) - onion_mult(d, _conj(b)), onion_mult(_conj(a), d) + onion_mult(c, b)])


def _onion_quality(gt: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """Hypercomplex Q of every block: gt, fused (K, B, s, s) uint16 values → (B, K) components of q.

    Each GT band is normalised to mean 1 / std 1 (sample std, 0 → eps); the fused band with the GT band's
    mean and std (only shifted by +1 if that mean is 0); the fused image enters conjugated.
    """
    s = gt.shape[-1]
    n = s * s
    k = n / (n - 1)
    mean = gt.mean(axis=(2, 3), keepdims=True)
    std = gt.std(axis=(2, 3), ddof=1, keepdims=True)
    std = np.where(std == 0, np.finfo(np.float64).eps, std)
    dat1 = (gt - mean) / std + 1
    norm_f = np.where(mean == 0, fused - mean + 1, (fused - mean) / std + 1)
    dat1 = np.moveaxis(dat1, 1, 0)  # (B, K, s, s): the hypercomplex axis first
    dat2 = _conj(np.moveaxis(norm_f, 1, 0))
    m1, m2 = dat1.mean(axis=(2, 3)), dat2.mean(axis=(2, 3))  # (B, K)
    mod_q1m, mod_q2m = np.sqrt((m1**2).sum(axis=0)), np.sqrt((m2**2).sum(axis=0))
    mod_q1, mod_q2 = np.sqrt((dat1**2).sum(axis=0)), np.sqrt((dat2**2).sum(axis=0))
    termine4 = mod_q1m**2 + mod_q2m**2
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_bias = 2 * mod_q1m * mod_q2m / termine4
        termine3 = k * (mod_q1**2).mean(axis=(1, 2)) + k * (mod_q2**2).mean(axis=(1, 2)) - k * termine4
        qv = k * onion_mult(dat1, dat2).mean(axis=(2, 3))
        q = (qv - k * onion_mult(m1, m2)) * mean_bias * (2 / termine3)
    only_bias = np.zeros_like(q)
    only_bias[-1] = mean_bias
    return np.where(termine3 == 0, only_bias, q)


def q2n_map(gt, fused, block: int = Q_BLOCK, shift: int = Q_BLOCK) -> np.ndarray:
    """Per-block Q2n (⌈H/shift⌉, ⌈W/shift⌉) of (C, H, W) DN images, as ``q2n.m``.

    The images are mirrored (edge pixel repeated) on the right and bottom to fit whole blocks, cast to uint16,
    and zero bands are appended up to a power of two; each block's value is |q| of the hypercomplex Q.
    """
    g, f = _image(gt, "gt", "q2n"), _image(fused, "fused", "q2n")
    _same_shape(g, f, "gt and fused", "q2n")
    bands, h, w = g.shape
    steps = [math.ceil(n / shift) for n in (h, w)]
    extra = [(s - 1) * shift + block - n for s, n in zip(steps, (h, w), strict=True)]
    if any(e > n or e < 0 for e, n in zip(extra, (h, w), strict=True)):
        raise ValueError(f"q2n: a {h}×{w} image cannot be scored with block {block} and shift {shift} (the "
                         f"toolbox needs at least {math.ceil(block / 2)} pixels a side for block = shift = {block})")
    pad = ((0, 0), (0, extra[0]), (0, extra[1]))
    g, f = (_matlab_uint16(np.pad(x, pad, mode="symmetric")) for x in (g, f))
    padded_bands = 1 << (bands - 1).bit_length()
    if padded_bands != bands:
        zeros = np.zeros((padded_bands - bands, *g.shape[1:]))
        g, f = np.concatenate([g, zeros]), np.concatenate([f, zeros])

    def blocks(x: np.ndarray) -> np.ndarray:  # (steps_y·steps_x, B, block, block)
        view = np.lib.stride_tricks.sliding_window_view(x, (block, block), axis=(1, 2))[:, ::shift, ::shift]
        return view.transpose(1, 2, 0, 3, 4).reshape(-1, x.shape[0], block, block)

    q = _onion_quality(blocks(g), blocks(f))
    return np.sqrt((q**2).sum(axis=0)).reshape(steps)


def q2n(gt, fused, block: int = Q_BLOCK, shift: int = Q_BLOCK) -> float:
    """Q2n (Q4 for 4 bands, Q8 for 8) of (C, H, W) DN images: the mean of :func:`q2n_map`; 1 is perfect."""
    return float(q2n_map(gt, fused, block, shift).mean())


# ---------------------------------------------------------------------------------------------------
# Other reduced-resolution indices


def q_avg(gt, fused) -> float:
    """Toolbox ``Q.m``: Wang–Bovik Q per band over 32×32 windows, stride 1 ('valid'), averaged over windows and
    bands (``utils.metrics.uiqi`` with block 32; its flat-window rules are ``img_qi.m``'s, except that a window
    counts as flat when its variance sum is within 1e-10 of zero relative to its second moment, where MATLAB tests
    an exact 0 that rounding decides). NaN for images smaller than 32 pixels a side (MATLAB's mean of no window)."""
    g, f = _image(gt, "gt", "q_avg"), _image(fused, "fused", "q_avg")
    _same_shape(g, f, "gt and fused", "q_avg")
    if min(g.shape[1:]) < Q_BLOCK:
        return math.nan
    return uiqi(f, g, block=Q_BLOCK)


_SOBEL = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])  # MATLAB fspecial('sobel')


def _sobel_magnitude(img: np.ndarray) -> np.ndarray:
    inner = img[:, 1:-1, 1:-1]
    gy = np.stack([ndimage.correlate(b, _SOBEL, mode="constant") for b in inner])
    gx = np.stack([ndimage.correlate(b, _SOBEL.T, mode="constant") for b in inner])
    return np.sqrt(gy**2 + gx**2)


def scc(gt, fused) -> float:
    """Toolbox ``SCC.m``: Sobel gradient magnitudes (zero padding) of the images without their outer pixel, then
    Σ(F·G) / sqrt(ΣF²) / sqrt(ΣG²) over all pixels and bands (no mean removal); 1 is perfect."""
    g, f = _image(gt, "gt", "scc"), _image(fused, "fused", "scc")
    _same_shape(g, f, "gt and fused", "scc")
    mg, mf = _sobel_magnitude(g), _sobel_magnitude(f)
    return float((mf * mg).sum() / math.sqrt((mf**2).sum()) / math.sqrt((mg**2).sum()))


def reduced_resolution(fused, gt, ratio: int = RATIO, dim_cut: int = 0) -> dict[str, float]:
    """The reduced-resolution indices :data:`RR_METRICS` of one (C, H, W) DN image against its GT, after cutting
    ``dim_cut`` border pixels as the toolbox does."""
    f, g = _image(fused, "fused", "reduced_resolution"), _image(gt, "gt", "reduced_resolution")
    _same_shape(f, g, "fused and gt", "reduced_resolution")
    f, g = border_cut(f, dim_cut), border_cut(g, dim_cut)
    return {"q2n": q2n(g, f), "sam": sam(f, g), "ergas": ergas(f, g, ratio), "scc": scc(g, f), "q_avg": q_avg(g, f),
            "psnr": psnr(f, g)}


# ---------------------------------------------------------------------------------------------------
# Full resolution (D_lambda.m, D_s.m, QNR.m, D_lambda_K.m, HQNR.m; toolbox 1.0 options)


def _check_blocks(shape: Sequence[int], block: int, where: str) -> None:
    h, w = shape[-2:]
    if h % block or w % block:
        raise ValueError(f"{where}: the image is {h}×{w}; the toolbox scores full-resolution images whose sides are "
                         f"multiples of the block size {block}")


def block_uqi(x: np.ndarray, y: np.ndarray, block: int = QNR_BLOCK) -> np.ndarray:
    """Q index (Wang–Bovik) of every distinct block×block block of two (H, W) images, as the toolbox's
    ``uqi`` under ``blockproc``: 4·cov·μx·μy / (σx² + σy²) / (μx² + μy²), sample (co)variances, no guard
    (a block without variance in both images is NaN). Returns (H/block, W/block)."""
    h, w = x.shape
    xb = x.reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3).reshape(h // block, w // block, -1)
    yb = y.reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3).reshape(h // block, w // block, -1)
    n = xb.shape[-1]
    mx, my = xb.mean(axis=-1), yb.mean(axis=-1)
    dx, dy = xb - mx[..., None], yb - my[..., None]
    cxy, cxx, cyy = ((dx * dy).sum(-1) / (n - 1), (dx * dx).sum(-1) / (n - 1), (dy * dy).sum(-1) / (n - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return 4 * cxy * mx * my / (cxx + cyy) / (mx**2 + my**2)


def d_lambda(fused, ms_up, block: int = QNR_BLOCK, p: float = 1) -> tuple[float, int]:
    """Spectral distortion D_λ (toolbox 1.0): (mean over band pairs i < j of |Q(F_i, F_j) − Q(MS↑_i, MS↑_j)|^p)^(1/p),
    Q the mean of :func:`block_uqi`. Returns (D_λ, number of NaN blocks)."""
    f, m = _image(fused, "fused", "d_lambda"), _image(ms_up, "ms_up", "d_lambda")
    _same_shape(f, m, "fused and the upsampled MS", "d_lambda")
    _check_blocks(f.shape, block, "d_lambda")
    total, nan_blocks, pairs = 0.0, 0, 0
    for i in range(f.shape[0] - 1):
        for j in range(i + 1, f.shape[0]):
            q_exp, q_fused = block_uqi(m[i], m[j], block), block_uqi(f[i], f[j], block)
            nan_blocks += int(np.isnan(q_exp).sum() + np.isnan(q_fused).sum())
            total += abs(q_fused.mean() - q_exp.mean()) ** p
            pairs += 1
    return float((total / pairs) ** (1 / p)), nan_blocks


def d_s(fused, ms_up, pan, ratio: int = RATIO, block: int = QNR_BLOCK, q: float = 1) -> tuple[float, int]:
    """Spatial distortion D_s (toolbox 1.0): (mean_b |Q(F_b, PAN) − Q(MS↑_b, PAN_LP)|^q)^(1/q) with
    PAN_LP = interp23tap(imresize(PAN, 1/ratio)). ``pan`` is (1, H, W). Returns (D_s, number of NaN blocks)."""
    f, m, pn = _image(fused, "fused", "d_s"), _image(ms_up, "ms_up", "d_s"), _image(pan, "pan", "d_s")
    _same_shape(f, m, "fused and the upsampled MS", "d_s")
    if pn.shape != (1, *f.shape[1:]):
        raise ValueError(f"d_s: pan must be (1, {f.shape[1]}, {f.shape[2]}), got {pn.shape}")
    _check_blocks(f.shape, block, "d_s")
    pan_lp = interp23tap(imresize_bicubic(pn, 1 / ratio), ratio)[0]
    total, nan_blocks = 0.0, 0
    for b in range(f.shape[0]):
        q_high, q_low = block_uqi(f[b], pn[0], block), block_uqi(m[b], pan_lp, block)
        nan_blocks += int(np.isnan(q_high).sum() + np.isnan(q_low).sum())
        total += abs(q_high.mean() - q_low.mean()) ** q
    return float((total / f.shape[0]) ** (1 / q)), nan_blocks


def d_lambda_k(fused, ms_up, gains: Sequence[float], ratio: int = RATIO, block: int = QNR_BLOCK) -> float:
    """Khan's spectral distortion D_λ^K = 1 − Q2n(MS↑, MTF(F)) (block = shift = S), MTF with the per-band Nyquist
    ``gains`` (``data.sensors``)."""
    f, m = _image(fused, "fused", "d_lambda_k"), _image(ms_up, "ms_up", "d_lambda_k")
    _same_shape(f, m, "fused and the upsampled MS", "d_lambda_k")
    _check_blocks(f.shape, block, "d_lambda_k")
    return 1 - q2n(m, mtf_filter(f, gains, ratio), block, block)


def full_resolution(fused, ms_up, pan, gains: Sequence[float], ratio: int = RATIO,
                    block: int = QNR_BLOCK) -> dict[str, float]:
    """The full-resolution indices of one fused (C, H, W) DN image (:data:`FR_METRICS` and the NaN block counts of
    :data:`PANSHARPENING_COUNT_KEYS`):
    ``ms_up`` the MS upsampled to the PAN grid (the toolbox's and PanCollection's interp23tap ``lms``), ``pan``
    (1, H, W), ``gains`` the sensor's MS MTF gains. QNR with α = β = 1, HQNR = (1 − D_λ^K)(1 − D_s)."""
    dl, dl_nan = d_lambda(fused, ms_up, block)
    ds, ds_nan = d_s(fused, ms_up, pan, ratio, block)
    dk = d_lambda_k(fused, ms_up, gains, ratio, block)
    return {"d_lambda": dl, "d_s": ds, "qnr": (1 - dl) * (1 - ds), "d_lambda_k": dk, "hqnr": (1 - dk) * (1 - ds),
            "d_lambda_nan_blocks": dl_nan, "d_s_nan_blocks": ds_nan}


# ---------------------------------------------------------------------------------------------------
# One image in either resolution, and the means over images (``--score`` and ``test_CSAKD.py`` alike)


def score_image(fused, *, gt=None, ms_up=None, pan=None, gains: Sequence[float] = (), ratio: int = RATIO,
                dim_cut: int = 0) -> dict[str, float]:
    """The toolbox indices of one fused (C, H, W) DN image: with ``gt`` the reduced-resolution ones
    (:func:`reduced_resolution`), without it the full-resolution ones against ``ms_up`` (C, H, W) and ``pan``
    (1, H, W) with the sensor's MS MTF ``gains`` (:func:`full_resolution`, NaN block counts included)."""
    if gt is not None:
        return reduced_resolution(fused, gt, ratio, dim_cut)
    return full_resolution(fused, ms_up, pan, gains, ratio)


def summarise(rows: Sequence[dict[str, float]], names: Sequence[str]) -> tuple[dict[str, float], dict[str, int]]:
    """({index: mean over ``rows``} for ``names``, NaN and inf propagating; {count: sum over ``rows``} for the
    :data:`PANSHARPENING_COUNT_KEYS` the rows carry, i.e. the flat blocks of the FR indices)."""
    if not rows:
        raise ValueError("summarise: no per-image results to average")
    means = {k: float(np.mean([r[k] for r in rows])) for k in names}
    counts = {k: int(sum(r[k] for r in rows)) for k in PANSHARPENING_COUNT_KEYS if k in rows[0]}
    return means, counts


def describe_nan_blocks(counts: dict[str, int], who: str = "") -> str | None:
    """The report line for flat blocks (``counts`` from :func:`summarise`), None when there are none."""
    nan = {k: v for k, v in counts.items() if v}
    if not nan:
        return None
    return (f"flat blocks{f' of {who}' if who else ''} (NaN, kept as the toolbox does): "
            + ", ".join(f"{k} {v}" for k, v in nan.items()))
