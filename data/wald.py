"""Wald's protocol for pansharpening, as the toolbox codes it (``resize_images.m``), and the built-in scenes seen
through a WV3-like sensor.

Reduced-resolution (RR) example of a full-resolution pair (:func:`reduced_resolution_example`): the MS
(C, h, w) becomes the ground truth; the inputs are the pair degraded by the ratio r = 4:

- ``ms`` (C, h/r, w/r): each band correlated with the sensor's 41-tap MTF filter (``data.sensors.mtf_filter``,
  replicated borders; ``MTF.m``), then pixels ``r//2 :: r`` kept (MATLAB ``imresize(…, 1/r, 'nearest')`` keeps
  the 1-based pixels 3, 7, 11, … for r = 4);
- ``pan`` (1, h, w): MATLAB ``imresize(PAN, 1/r)``, bicubic with antialiasing (``data.resample``); with
  ``pan_blur="mtf"`` the sensor's PAN MTF filter (``MTF_PAN.m``) and the same decimation as the MS instead;
- ``lms`` (C, h, w): the 23-tap interpolation of ``ms`` (``interp23tap.m``), PanCollection's ``lms``.

Everything is float64 DN, never clipped or rounded (PanCollection's RR files are float DN; ``lms`` overshoots).

Built-in scenes (:func:`scene_acquisition`): a reflectance cube (H, W, C) in [0, 1] at known wavelengths is
integrated over the WV3 band edges of ``data.sensors.SPECTRAL_BANDS`` (box responses), scaled so that
reflectance 1 is the sensor's scale (2047 DN), the MS blurred by its MTF and decimated by r (the MS is acquired
r times coarser than the PAN), and both quantised to integers in [0, 2^bits − 1] as an acquisition would be.
No solar irradiance, atmosphere, noise or measured band responses: approximate DN, documented as such in
docs/pansharpening.md. Cubes that do not cover 400–1040 nm (the visible-only 400–700 nm scenes) are refused.
"""

from __future__ import annotations

import numpy as np

from .resample import imresize_bicubic, interp23tap
from .sensors import SPECTRAL_BANDS, box_srf, get_sensor, ms_gains, mtf_filter
from .spectral import to_nanometres

PAN_BLURS = ("bicubic", "mtf")


def decimate(img: np.ndarray, ratio: int) -> np.ndarray:
    """(C, H, W) → (C, H/ratio, W/ratio): keep pixels ``ratio//2 :: ratio`` (MATLAB's 'nearest' at 1/ratio)."""
    if img.shape[1] % ratio or img.shape[2] % ratio:
        raise ValueError(f"decimate: {img.shape[1]}×{img.shape[2]} is not divisible by the ratio {ratio}")
    p = ratio // 2
    return np.ascontiguousarray(img[:, p::ratio, p::ratio])


def degrade_ms(ms: np.ndarray, sensor: str, ratio: int = 4) -> np.ndarray:
    """MS (C, H, W) DN → (C, H/ratio, W/ratio) float64: the sensor's MS MTF filter, then :func:`decimate`."""
    return decimate(mtf_filter(ms, ms_gains(sensor, ms.shape[0]), ratio), ratio)


def degrade_pan(pan: np.ndarray, sensor: str, ratio: int = 4, pan_blur: str = "bicubic") -> np.ndarray:
    """PAN (1, H, W) DN → (1, H/ratio, W/ratio) float64: MATLAB bicubic ``imresize`` (antialiased) or, with
    ``pan_blur="mtf"``, the sensor's PAN MTF filter then :func:`decimate`."""
    if pan_blur == "bicubic":
        return imresize_bicubic(pan, 1 / ratio)
    if pan_blur != "mtf":
        raise ValueError(f"--pan_blur must be one of {PAN_BLURS}, got {pan_blur!r}")
    gain = get_sensor(sensor).gnyq_pan
    if gain is None:
        raise ValueError(f"--pan_blur mtf: sensor {sensor} has no PAN MTF gain in the toolbox (MTF_PAN.m); "
                         f"use --pan_blur bicubic")
    return decimate(mtf_filter(pan, (gain,), ratio), ratio)


def _check_pair(ms: np.ndarray, pan: np.ndarray, ratio: int) -> None:
    """One ValueError unless ms is (C, h, w) and pan (1, ratio·h, ratio·w), finite, h and w multiples of ratio."""
    if ms.ndim != 3 or pan.ndim != 3 or pan.shape[0] != 1:
        raise ValueError(f"Wald protocol: expected MS (C, h, w) and PAN (1, H, W), got MS {ms.shape}, "
                         f"PAN {pan.shape}")
    _, h, w = ms.shape
    if h % ratio or w % ratio:
        raise ValueError(f"Wald protocol: the MS is {h}×{w}, not divisible by the ratio {ratio}; crop it to "
                         f"{h - h % ratio}×{w - w % ratio} (and the PAN to {ratio * (h - h % ratio)}×"
                         f"{ratio * (w - w % ratio)})")
    if pan.shape[1:] != (ratio * h, ratio * w):
        raise ValueError(f"Wald protocol: the PAN is {pan.shape[1]}×{pan.shape[2]}, expected {ratio * h}×"
                         f"{ratio * w} ({ratio} × the MS {h}×{w})")
    for name, x in (("MS", ms), ("PAN", pan)):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"Wald protocol: the {name} holds {int(np.sum(~np.isfinite(x)))} NaN/Inf values")


def reduced_resolution_example(ms: np.ndarray, pan: np.ndarray, sensor: str, ratio: int = 4,
                               pan_blur: str = "bicubic") -> dict[str, np.ndarray]:
    """The RR example of a full-resolution pair, PanCollection keys and axes.

    ``ms`` (C, h, w) and ``pan`` (1, ratio·h, ratio·w) in DN; h, w multiples of ``ratio`` (a power of two).
    Returns float64 DN ``gt`` (C, h, w) = ms, ``ms`` (C, h/r, w/r), ``lms`` (C, h, w), ``pan`` (1, h, w).
    """
    ms = np.asarray(ms, dtype=np.float64)
    pan = np.asarray(pan, dtype=np.float64)
    _check_pair(ms, pan, ratio)
    ms_lr = degrade_ms(ms, sensor, ratio)
    return {"gt": ms.copy(), "ms": ms_lr, "lms": interp23tap(ms_lr, ratio),
            "pan": degrade_pan(pan, sensor, ratio, pan_blur)}


def quantise(dn: np.ndarray, bits: int) -> np.ndarray:
    """Round half up and saturate to the integers 0 … 2^bits − 1 (float64), as an acquisition stores DN."""
    return np.clip(np.floor(dn + 0.5), 0, 2**bits - 1)


def sensor_images(cube: np.ndarray, wavelengths: np.ndarray, sensor: str = "WV3") -> tuple[np.ndarray, np.ndarray]:
    """A reflectance cube (H, W, C) in [0, 1] sampled at ``wavelengths`` (C,) nm (µm accepted) through the box bands of
    ``sensor``: MS (B, H, W) and PAN (1, H, W) float64 DN, reflectance 1 = the sensor's scale, not quantised."""
    if sensor not in SPECTRAL_BANDS:
        raise ValueError(f"--sensor {sensor}: no spectral bands known for the built-in scenes; expected one of "
                         f"{', '.join(SPECTRAL_BANDS)}")
    cube, wl = np.asarray(cube, dtype=np.float64), to_nanometres(wavelengths)
    if cube.ndim != 3 or cube.shape[2] != wl.size:
        raise ValueError(f"sensor_images: expected a cube (H, W, {wl.size}) for {wl.size} wavelengths, "
                         f"got {cube.shape}")
    if not np.all(np.isfinite(cube)):
        raise ValueError(f"sensor_images: the cube holds {int(np.sum(~np.isfinite(cube)))} NaN/Inf values")
    bands, scale = SPECTRAL_BANDS[sensor], get_sensor(sensor).scale
    srf = box_srf(wl, (*bands.ms, ("pan", *bands.pan)))
    out = np.moveaxis(cube @ srf.T, -1, 0) * scale
    return out[:-1], out[-1:]


def scene_acquisition(cube: np.ndarray, wavelengths: np.ndarray, sensor: str = "WV3",
                      ratio: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A full-resolution pair of a reflectance cube (H, W, C), H and W multiples of ``ratio``: MS (B, H/r, W/r)
    = the HR MS through the sensor's MTF, decimated; PAN (1, H, W); both integer DN (float64) of the sensor's
    bit depth. Feed it to :func:`reduced_resolution_example` for the RR example."""
    h, w = np.shape(cube)[:2]
    if h % ratio or w % ratio:
        raise ValueError(f"scene_acquisition: the cube is {h}×{w}, not divisible by the ratio {ratio}")
    ms_hr, pan = sensor_images(cube, wavelengths, sensor)
    bits = get_sensor(sensor).bits
    return quantise(degrade_ms(ms_hr, sensor, ratio), bits), quantise(pan, bits)
