"""Wald's-protocol simulation: an HR-HSI reference → (LR-HSI, HR-MSI), every parameter named.

LR-HSI = decimate(blur(shift(X))) (+ noise); HR-MSI = X·Rᵀ (+ noise), X (H, W, C).

- Blur: separable kernel ``blur`` ∈ {"gaussian" (σ = ``sigma`` HR pixels, ``kernel_size`` taps,
  default 2·⌈3σ⌉+1), "b3spline" (Starck–Murtagh [1, 4, 6, 4, 1]/16, 5 taps), "box" (``ratio`` taps,
  i.e. the block mean)}; kernels sum to 1, so a constant image stays constant.
- Borders: ``border`` is a scipy.ndimage mode: "reflect" (half-sample symmetric), "mirror",
  "nearest" (replicate), "wrap" (circular), "constant" (zeros).
- Decimation: keep HR pixel ``phase + ratio·i`` of the blurred image (default ``phase = ratio // 2``:
  with the box kernel the LR pixel is then exactly the mean of HR block i, the convention the
  crop alignment of the reader relies on).
- Noise: white Gaussian per image, σ² = mean(x²) / 10^(SNR/10) (the HySure / CSAKD ``awgn`` rule),
  ``snr_hsi`` for the LR-HSI and ``snr_msi`` for the HR-MSI; 0 dB means "no noise".
- Misregistration: the official layout stores three misaligned LR-HSIs ``lrhsi1..3``; here
  ``lrhsi{k}`` is simulated from the reference translated by ``k·misreg`` HR pixels (dy, dx) before
  blurring, i.e. a sub-pixel LR shift for |k·misreg| < ratio. Integer shifts are exact.

The official CSAKD degradation is unknown (docs/csakd.md §1.5); the defaults below are documented choices.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .spectral import apply_srf

BLUR_KINDS = ("gaussian", "b3spline", "box")
BORDER_MODES = ("reflect", "mirror", "nearest", "wrap", "constant")


@dataclasses.dataclass(frozen=True)
class Degradation:
    """All parameters of the simulated LR-HSI / HR-MSI pair (logged verbatim in ``manifest.json``)."""

    ratio: int = 4  # spatial scale factor HR/LR
    blur: str = "gaussian"  # one of BLUR_KINDS
    sigma: float = 2.0  # Gaussian σ in HR pixels (ratio / 2)
    kernel_size: int | None = None  # Gaussian taps; None -> 2·ceil(3σ)+1
    phase: int | None = None  # decimation phase in HR pixels; None -> ratio // 2
    border: str = "reflect"  # scipy.ndimage boundary mode
    snr_hsi: float = 0.0  # dB, 0 = noise-free LR-HSI
    snr_msi: float = 0.0  # dB, 0 = noise-free HR-MSI
    misreg: tuple[float, float] = (1.0, 1.0)  # (dy, dx) HR pixels per misalignment level k
    misreg_levels: int = 3  # lrhsi1..lrhsi{levels}

    def __post_init__(self) -> None:
        if int(self.ratio) != self.ratio or self.ratio < 1:
            raise ValueError(f"--scale (decimation ratio) must be a positive integer, got {self.ratio}")
        if self.blur not in BLUR_KINDS:
            raise ValueError(f"--blur must be one of {BLUR_KINDS}, got {self.blur!r}")
        if self.border not in BORDER_MODES:
            raise ValueError(f"--border must be one of {BORDER_MODES}, got {self.border!r}")
        if self.blur == "gaussian" and not self.sigma > 0:
            raise ValueError(f"--blur_sigma must be > 0 for the Gaussian blur, got {self.sigma}")
        if self.kernel_size is not None and (self.kernel_size < 1 or self.kernel_size % 2 == 0):
            raise ValueError(f"--blur_size must be a positive odd number of taps, got {self.kernel_size}")
        if not 0 <= self.decimation_phase < self.ratio:
            raise ValueError(
                f"--phase must be in [0, {self.ratio - 1}] for ratio {self.ratio}, got {self.phase}"
            )
        if self.snr_hsi < 0 or self.snr_msi < 0:
            raise ValueError(
                f"--snr_hsi/--snr_msi must be >= 0 dB (0 = no noise), got {self.snr_hsi}/{self.snr_msi}"
            )
        if len(self.misreg) != 2:
            raise ValueError(f"--misreg must be two numbers (dy dx) in HR pixels, got {self.misreg}")
        object.__setattr__(self, "misreg", (float(self.misreg[0]), float(self.misreg[1])))

    @property
    def decimation_phase(self) -> int:
        return self.ratio // 2 if self.phase is None else int(self.phase)

    def kernel_1d(self) -> np.ndarray:
        """The separable blur kernel (K,) float64, summing to 1 (the 2-D kernel is its outer product)."""
        if self.blur == "gaussian":
            return gaussian_kernel_1d(self.sigma, self.kernel_size)
        if self.blur == "b3spline":
            return b3spline_kernel_1d()
        return np.full(self.ratio, 1.0 / self.ratio)

    def to_dict(self) -> dict:
        """Every parameter, with the resolved kernel size and phase, JSON-ready."""
        d = dataclasses.asdict(self)
        d["misreg"] = list(self.misreg)
        d["phase"] = self.decimation_phase
        d["kernel_size"] = len(self.kernel_1d())
        d["kernel_1d"] = [float(v) for v in self.kernel_1d()]
        return d


def gaussian_kernel_1d(sigma: float, size: int | None = None) -> np.ndarray:
    """Sampled Gaussian (size,) with standard deviation ``sigma`` pixels, normalised to sum 1."""
    size = 2 * math.ceil(3 * sigma) + 1 if size is None else int(size)
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def b3spline_kernel_1d() -> np.ndarray:
    """Starck–Murtagh B3-spline taps [1, 4, 6, 4, 1]/16 (the à-trous / HySure blur), sums to 1."""
    return np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def kernel_2d(kernel_1d: np.ndarray) -> np.ndarray:
    """The separable 2-D kernel (K, K) = outer(k, k); sums to 1 when ``kernel_1d`` does."""
    return np.outer(kernel_1d, kernel_1d)


def blur_decimate(img: np.ndarray, deg: Degradation) -> np.ndarray:
    """LR image (⌊H/r⌋, ⌊W/r⌋, C) float32 from HR (H, W, C): separable blur, then keep every r-th pixel.

    The blur runs along H, the rows are decimated, then along W (equal to a full 2-D blur followed by
    decimation, at a fraction of the cost).
    """
    r, p, k = deg.ratio, deg.decimation_phase, deg.kernel_1d()
    h, w = img.shape[0] // r, img.shape[1] // r
    x = np.asarray(img, dtype=np.float32)
    x = ndimage.correlate1d(x, k, axis=0, mode=deg.border)[p : p + r * h : r]
    x = ndimage.correlate1d(x, k, axis=1, mode=deg.border)[:, p : p + r * w : r]
    return np.ascontiguousarray(x, dtype=np.float32)


def shift_image(img: np.ndarray, shift: Sequence[float], border: str = "reflect") -> np.ndarray:
    """Translate (H, W, C) by ``shift`` = (dy, dx) pixels: out[y, x] = img[y − dy, x − dx].

    Integer shifts are exact copies (borders filled by ``border``); fractional parts use bilinear
    interpolation (scipy.ndimage.shift, order 1).
    """
    dy, dx = float(shift[0]), float(shift[1])
    if dy == 0 and dx == 0:
        return np.asarray(img, dtype=np.float32)
    if dy.is_integer() and dx.is_integer():
        iy, ix = int(dy), int(dx)
        pad = ((abs(iy), abs(iy)), (abs(ix), abs(ix))) + ((0, 0),) * (img.ndim - 2)
        np_mode = {
            "reflect": "symmetric",
            "mirror": "reflect",
            "nearest": "edge",
            "wrap": "wrap",
            "constant": "constant",
        }[border]
        padded = np.pad(np.asarray(img, dtype=np.float32), pad, mode=np_mode)
        h, w = img.shape[:2]
        return np.ascontiguousarray(padded[abs(iy) - iy : abs(iy) - iy + h, abs(ix) - ix : abs(ix) - ix + w])
    # scipy's interpolation modes: "grid-wrap"/"grid-constant" are the true circular/zero borders.
    mode = {"wrap": "grid-wrap", "constant": "grid-constant"}.get(border, border)
    return ndimage.shift(
        np.asarray(img, dtype=np.float32),
        (dy, dx) + (0.0,) * (img.ndim - 2),
        order=1,
        mode=mode,
        prefilter=False,
    )


def noise_sigma(img: np.ndarray, snr_db: float) -> float:
    """σ of white noise giving ``snr_db`` dB on ``img``: σ² = mean(x²) / 10^(SNR/10)."""
    power = float(np.mean(np.square(img, dtype=np.float64)))
    return math.sqrt(power / 10.0 ** (snr_db / 10.0))


def add_noise(img: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``img`` + N(0, σ²) with σ from ``noise_sigma`` over the whole image; ``snr_db`` 0 returns a copy."""
    img = np.asarray(img, dtype=np.float32)
    if snr_db == 0:
        return img.copy()
    sigma = noise_sigma(img, snr_db)
    return (img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)).astype(np.float32)


def measured_snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    """10·log10(mean(clean²) / mean((noisy − clean)²)) in dB."""
    clean = np.asarray(clean, dtype=np.float64)
    err = np.asarray(noisy, dtype=np.float64) - clean
    return 10.0 * math.log10(float(np.mean(clean**2)) / float(np.mean(err**2)))


def simulate_lr_variants(cube: np.ndarray, deg: Degradation, levels: Sequence[int]) -> dict[int, np.ndarray]:
    """Noise-free LR-HSIs {k: (H/r, W/r, C)} for misalignment levels ``k`` (0 = aligned)."""
    out = {}
    for k in levels:
        shifted = shift_image(cube, (k * deg.misreg[0], k * deg.misreg[1]), deg.border) if k else cube
        out[k] = blur_decimate(shifted, deg)
    return out


def check_ratio(shape: Sequence[int], ratio: int, where: str) -> None:
    """Raise unless the spatial size (H, W) is divisible by ``ratio``."""
    if shape[0] % ratio or shape[1] % ratio:
        raise ValueError(f"{where}: spatial size {shape[0]}×{shape[1]} is not divisible by the ratio {ratio}")


@dataclasses.dataclass
class SimulatedScene:
    """A reference and its noise-free simulations, all in the reference's raw units.

    gt (H, W, C); hrmsi {M: (H, W, M)} keyed by MSI band count; lrhsi {k: (H/r, W/r, C)} keyed by
    misalignment level (0 = aligned).
    """

    gt: np.ndarray
    hrmsi: dict[int, np.ndarray]
    lrhsi: dict[int, np.ndarray]


def simulate_scene(
    cube: np.ndarray,
    srfs: Sequence[np.ndarray],
    deg: Degradation,
    levels: Sequence[int] = (0,),
    where: str = "cube",
) -> SimulatedScene:
    """Noise-free HR-MSIs (one per SRF (M, C)) and LR-HSIs (one per misalignment level) of ``cube``.

    ``cube`` (H, W, C) with H, W divisible by ``deg.ratio``; values in any units (the simulation is
    linear and every kernel/SRF row sums to 1, so units and offsets carry through unchanged).
    """
    check_ratio(cube.shape, deg.ratio, where)
    hrmsi = {}
    for srf in srfs:
        if srf.shape[0] in hrmsi:
            raise ValueError(f"two SRFs with {srf.shape[0]} bands: the layout keys HR-MSIs by band count")
        hrmsi[srf.shape[0]] = apply_srf(cube, srf)
    return SimulatedScene(np.asarray(cube, dtype=np.float32), hrmsi, simulate_lr_variants(cube, deg, levels))


def finish_pair(
    gt: np.ndarray,
    hrmsi: dict[int, np.ndarray],
    lrhsi: dict[int, np.ndarray],
    deg: Degradation,
    rng: np.random.Generator,
) -> tuple[dict, dict]:
    """Map one image's simulated inputs to [0, 1] with the GT's own min/max, then add noise.

    This is the scaling the reader undoes (docs/csakd.md §1.3: the GT is min-max normalised per image and
    the inputs are read as [0, 1] data), so after reading, LR-HSI = degradation of the target exactly.
    Noise is drawn per image at ``deg.snr_msi`` / ``deg.snr_hsi`` after scaling (values may then
    leave [0, 1] slightly; they are not clipped, so the SNR stays what was asked).
    Returns ({M: HR-MSI float32}, {k: LR-HSI float32}); raises ValueError on a constant GT.
    """
    lo, hi = float(gt.min()), float(gt.max())
    if not hi > lo:
        raise ValueError(f"constant GT (min = max = {lo}): cannot be min-max normalised")
    scale = np.float32(1.0 / (hi - lo))
    msi = {m: add_noise((v - np.float32(lo)) * scale, deg.snr_msi, rng) for m, v in sorted(hrmsi.items())}
    lr = {k: add_noise((v - np.float32(lo)) * scale, deg.snr_hsi, rng) for k, v in sorted(lrhsi.items())}
    return msi, lr


def tile_origins(size: int, tile: int, stride: int) -> list[int]:
    """Tile start offsets along one axis: 0, stride, ... while the tile fits (no partial tiles)."""
    return list(range(0, size - tile + 1, stride)) if size >= tile else []


def unusable_scene(where: str, hw: tuple[int, int], tile: int, tile_flag: str, constant: int) -> ValueError:
    """The one message for a scene that gave no tile: too small for ``tile`` or constant everywhere."""
    h, w = hw
    if tile and min(h, w) < tile:
        return ValueError(f"{where}: {h}×{w} pixels (after cropping to the scale), smaller than {tile_flag} {tile}; "
                          f"remove it from the inputs or lower {tile_flag}")
    return ValueError(f"{where}: all {constant} tile(s) are constant (no contrast to normalise); remove it from "
                      f"the inputs")


def simulated_tiles(scene: SimulatedScene, deg: Degradation, tile: int, stride: int, seed: Sequence[int]):
    """Cut a simulated scene into aligned HR/LR tiles and finish each one (``finish_pair``).

    ``tile``/``stride`` in HR pixels, multiples of the ratio (0 = the whole scene as one tile). Noise of
    tile i is drawn from ``np.random.SeedSequence([*seed, i])``. Yields (i, y, x, gt, hrmsi, lrhsi),
    or (i, y, x, None, None, None) for a constant tile that cannot be normalised.
    """
    r = deg.ratio
    h, w = scene.gt.shape[:2]
    th, tw = (h, w) if tile == 0 else (tile, tile)
    stride = stride or tile
    if tile and (tile % r or stride % r):
        raise ValueError(f"--tile {tile} and --stride {stride} must be multiples of the ratio {r}")
    origins = [(y, x) for y in tile_origins(h, th, stride or th) for x in tile_origins(w, tw, stride or tw)]
    for i, (y, x) in enumerate(origins):
        gt = scene.gt[y : y + th, x : x + tw]
        msi = {m: v[y : y + th, x : x + tw] for m, v in scene.hrmsi.items()}
        lr = {k: v[y // r : (y + th) // r, x // r : (x + tw) // r] for k, v in scene.lrhsi.items()}
        if not float(gt.max()) > float(gt.min()):
            yield i, y, x, None, None, None
            continue
        msi, lr = finish_pair(gt, msi, lr, deg, np.random.default_rng(np.random.SeedSequence([*seed, i])))
        yield i, y, x, np.ascontiguousarray(gt), msi, lr
