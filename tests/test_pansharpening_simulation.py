"""Tests of data/wald.py (Wald's protocol as the toolbox codes it) and the WV3-like sensor of data/sensors.py.

Golden values: the toolbox's own ``resize_images.m``, ``interp23tap.m`` and ``MTF_PAN.m`` (DLPan-Toolbox a34f884)
run under GNU Octave 7.3 (benchmarks/toolbox_octave/wald_values.m, docs/pansharpening.md "Simulation") on the
integer fixture: MS = fixture(H, W, B) gt, PAN = fixture(4H, 4W, B) pan (64×64×4 QB, 64×64×8 WV3, 64×48×4 GeoEye1).
"""

from __future__ import annotations

import numpy as np
import pytest

from data.pancollection import check_layout
from data.sensors import SENSORS, SPECTRAL_BANDS, box_srf, frequency_response, mtf_kernel
from data.spectral import visible31_wavelengths
from data.synthetic import make_scene
from data.wald import degrade_ms, reduced_resolution_example, scene_acquisition, sensor_images
from tests.test_pansharpening_metrics import fixture

REL = 1e-12  # the Python code agrees with Octave to ~1e-15 relative; summation order is not pinned

# (sensor, key): (shape, sum, weighted sum with weights 1..numel in MATLAB's column-major H×W×C order, first, last)
GOLDEN = {
    ("QB", "ms"): ((16, 16, 4), 943153.63713828148, 501839120.18385035, 804.14257008546235, 1496.9699959912061),
    ("QB", "lms"): ((64, 64, 4), 15090458.182019472, 128127007368.62378, 1148.2683093779729, 1394.9164428232682),
    ("QB", "pan"): ((64, 64), 36637314.375, 94044832673.800262, 906.52749538421631, 27391.277157843113),
    ("QB", "pan_mtf"): ((64, 64), 36780471.861719795, 94380629407.425507, 898.39638159502101, 27282.534504969102),
    ("WV3", "ms"): ((16, 16, 8), 2053390.2084165365, 2223881915.3322196, 804.00778972831358, 1623.7581241765331),
    ("WV3", "lms"): ((64, 64, 8), 32854243.308118481, 568636777738.32849, 1147.5795937533585, 1543.932178947932),
    ("WV3", "pan"): ((64, 64), 36579980.6875, 93217194080.352951, 1023.0987786054611, 27252.200450897217),
    ("WV3", "pan_mtf"): ((64, 64), 36718720.792290792, 93544130919.963226, 1013.6925355048726,
                         27138.785126368839),
    # non-square (MS 64×48, PAN 256×192): catches rows and columns swapped anywhere
    ("GeoEye1", "ms"): ((16, 12, 4), 663188.51630852092, 263782891.40365604, 802.96730133772962,
                        1263.6142021937624),
    ("GeoEye1", "lms"): ((64, 48, 4), 10611016.252362657, 67353286070.321823, 1003.6475685485452,
                         1213.8054202180404),
    ("GeoEye1", "pan"): ((64, 48), 21293173.8125, 38410557924.83799, 906.52749538421631, 21030.654797196388),
    ("GeoEye1", "pan_mtf"): ((64, 48), 21389629.078396678, 38581178547.880966, 898.63429514906375,
                             20946.713564442012),
}
CASES = {"QB": (64, 64, 4), "WV3": (64, 64, 8), "GeoEye1": (64, 48, 4)}


def matlab_order(x: np.ndarray) -> np.ndarray:
    """(C, H, W) → MATLAB's x(:) of the H×W×C array (column-major)."""
    return np.transpose(x, (1, 2, 0)).ravel(order="F")


def fr_pair(height: int, width: int, bands: int) -> tuple[np.ndarray, np.ndarray]:
    """MS = the fixture's gt (bands, height, width), PAN = the fixture's pan at 4× (1, 4·height, 4·width)."""
    return fixture(height, width, bands)[0], fixture(4 * height, 4 * width, bands)[2]


@pytest.mark.parametrize("sensor", CASES)
def test_reduced_resolution_matches_toolbox(sensor):
    ms, pan = fr_pair(*CASES[sensor])
    ex = reduced_resolution_example(ms, pan, sensor)
    ex["pan_mtf"] = reduced_resolution_example(ms, pan, sensor, pan_blur="mtf")["pan"]
    np.testing.assert_array_equal(ex["gt"], ms)
    for key in ("ms", "lms", "pan", "pan_mtf"):
        shape, total, wsum, first, last = GOLDEN[(sensor, key)]
        x = matlab_order(ex[key])
        assert np.transpose(ex[key], (1, 2, 0)).squeeze().shape == shape, key
        assert x.dtype == np.float64
        np.testing.assert_allclose([x.sum(), x @ np.arange(1, x.size + 1), x[0], x[-1]],
                                   [total, wsum, first, last], rtol=REL, err_msg=key)


def test_reduced_resolution_is_a_pancollection_example():
    ms, pan = fr_pair(64, 64, 8)
    ex = reduced_resolution_example(ms, pan, "WV3")
    assert check_layout({k: (1, *v.shape) for k, v in ex.items()}, "simulated") == 4
    assert ex["lms"].shape == ex["gt"].shape and ex["pan"].shape == (1, 64, 64)


def test_ms_decimation_keeps_pixels_2_mod_4():
    """A constant image stays constant up to the kernel's Σ; an impulse at a kept pixel lands in one LR pixel
    centred in its 4×4 block (0-based HR 2, 6, 10, ...)."""
    img = np.zeros((4, 32, 32))
    img[:, 10, 14] = 1.0  # HR (10, 14) = LR (2, 3) + phase 2
    lr = degrade_ms(img, "QB")
    assert lr.shape == (4, 8, 8)
    peak = np.unravel_index(np.argmax(lr[0]), lr[0].shape)
    assert peak == (2, 3)
    centre = mtf_kernel(SENSORS["QB"].gnyq_ms[0])[20, 20]
    assert lr[0, 2, 3] == pytest.approx(centre, rel=1e-12)
    with pytest.raises(ValueError, match="33×32 is not divisible by the ratio 4"):
        degrade_ms(np.zeros((4, 33, 32)), "QB")


def test_degraded_spectrum_at_the_design_frequency_is_the_gain():
    """A cosine at 5/41 cycle/HR-px (the design point, |H| = GNyq within 0.3 %) through the whole MS path (MTF,
    then 2::4): the LR image is a cosine at 20/41 cycle/LR-px whose amplitude is |H| of the band's kernel."""
    gains = SENSORS["WV3"].gnyq_ms
    x = np.arange(41 * 4 * 3)
    wave = np.broadcast_to(np.cos(2 * np.pi * 5 / 41 * x), (8, 16, x.size))
    lr = degrade_ms(wave, "WV3")[:, 2, 41:82]  # 41 LR samples = 20 whole periods, away from the borders
    i = np.arange(41, 82)
    basis = np.stack([np.cos(2 * np.pi * 20 / 41 * i), np.sin(2 * np.pi * 20 / 41 * i)], axis=1)
    for b, g in enumerate(gains):
        coef, *_ = np.linalg.lstsq(basis, lr[b], rcond=None)
        amplitude = float(np.hypot(*coef))
        assert amplitude == pytest.approx(frequency_response(mtf_kernel(g), 0, 5 / 41), rel=1e-9)
        assert amplitude == pytest.approx(g, rel=3e-3)


@pytest.mark.parametrize("ms_shape, pan_shape, match", [
    ((4, 30, 32), (1, 120, 128), "30×32, not divisible by the ratio 4"),
    ((4, 32, 32), (1, 64, 64), "expected 128×128"),
    ((4, 32, 32), (3, 128, 128), "PAN \\(1, H, W\\)"),
])
def test_bad_sizes_are_one_clear_error(ms_shape, pan_shape, match):
    with pytest.raises(ValueError, match=match):
        reduced_resolution_example(np.ones(ms_shape), np.ones(pan_shape), "QB")


def test_bad_inputs():
    ms, pan = fr_pair(64, 64, 4)
    with pytest.raises(ValueError, match="WV3 has 8 MS bands, the image has 4"):
        reduced_resolution_example(ms, pan, "WV3")
    with pytest.raises(ValueError, match="no PAN MTF gain"):
        reduced_resolution_example(ms, pan, "GF2", pan_blur="mtf")
    with pytest.raises(ValueError, match="--pan_blur"):
        reduced_resolution_example(ms, pan, "QB", pan_blur="box")
    ms[0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="MS holds 1 NaN"):
        reduced_resolution_example(ms, pan, "QB")


def test_box_srf_band_means():
    wl = np.arange(400.0, 1041.0, 10.0)
    srf = box_srf(wl, SPECTRAL_BANDS["WV3"].ms)
    np.testing.assert_allclose(srf.sum(axis=1), 1.0)
    yellow = srf[3]  # 585–625 nm: cells 590, 600, 610 whole, 580 and 620 half (their cells 575–585, 615–625)
    np.testing.assert_allclose(yellow[wl == 590], 0.25)
    np.testing.assert_allclose(yellow[wl == 620], 0.25)
    assert yellow[wl == 580] == 0 and yellow[wl == 630] == 0
    spectrum = np.sin(wl / 37.0) + 2  # the band mean of the spectrum held constant over each sample's cell
    for (_, a, b), row in zip(SPECTRAL_BANDS["WV3"].ms, srf, strict=True):
        fine = np.arange(a, b, 0.01) + 0.005
        cells = np.searchsorted((wl[1:] + wl[:-1]) / 2, fine)
        assert row @ spectrum == pytest.approx(spectrum[cells].mean(), rel=1e-9)


def test_visible_cube_cannot_be_wv3():
    wl = visible31_wavelengths()
    with pytest.raises(ValueError, match="covers 395–705 nm and cannot represent red_edge 705–745 nm, nir1"):
        sensor_images(np.zeros((8, 8, wl.size)), wl)


def test_scene_acquisition_and_rr_example():
    wl = np.arange(400.0, 1041.0, 10.0)
    cube = make_scene(3, 64, wl)
    ms, pan = scene_acquisition(cube, wl)
    assert ms.shape == (8, 16, 16) and pan.shape == (1, 64, 64)
    for x in (ms, pan):
        assert np.all(x == np.round(x)) and x.min() >= 0 and x.max() <= 2047
    ms_hr, pan_hr = sensor_images(cube, wl)
    assert ms_hr.min() >= 0 and ms_hr.max() <= 2047 and ms_hr[6].mean() > ms_hr[4].mean()  # vegetation: NIR > red
    np.testing.assert_allclose(pan, np.clip(np.floor(pan_hr + 0.5), 0, 2047))
    ex = reduced_resolution_example(ms, pan, "WV3")
    assert {k: v.shape for k, v in ex.items()} == {"gt": (8, 16, 16), "ms": (8, 4, 4), "lms": (8, 16, 16),
                                                   "pan": (1, 16, 16)}
    with pytest.raises(ValueError, match="not divisible by the ratio 4"):
        scene_acquisition(cube[:62], wl)
    with pytest.raises(ValueError, match="no spectral bands"):
        sensor_images(cube, wl, "QB")
    np.testing.assert_array_equal(sensor_images(cube, wl / 1000)[1], pan_hr)  # µm read as nm
    cube[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="cube holds 1 NaN"):
        scene_acquisition(cube, wl)
