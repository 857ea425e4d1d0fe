"""Tests of engine/pansharpening_metrics.py, data/sensors.py and data/resample.py against the toolbox.

The golden values are the Vivone/DLPan toolbox's own MATLAB code run under GNU Octave 7.3 on the integer fixture
below (benchmarks/toolbox_octave/golden_values.m, docs/pansharpening.md); they also equal an independent NumPy
transcription (spec §6.4) to every printed digit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from data.resample import imresize_bicubic, interp23tap
from data.sensors import SENSORS, frequency_response, get_sensor, mtf_filter, mtf_kernel
from engine.pansharpening_metrics import (
    FR_METRICS,
    RR_METRICS,
    block_uqi,
    border_cut,
    d_lambda,
    d_lambda_k,
    d_s,
    direction,
    full_resolution,
    q2n,
    q2n_map,
    q_avg,
    reduced_resolution,
    scc,
)
from utils.metrics import ergas, sam

TOL = 1e-8


def fixture(height: int, width: int, bands: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spec §6.4 (0-based y, x, b), as (C, H, W) float64 DN: gt, fused f, pan (1, H, W); all integers < 2048."""
    y, x, b = np.meshgrid(np.arange(height), np.arange(width), np.arange(bands), indexing="ij")
    gt = 600 + ((x - 20 - 2 * b) ** 2 + (y - 24 + b) ** 2) // 4 + (x * y * (b + 1)) % 97 + 40 * b
    fused = (19 * gt) // 20 + 30 + (x * y + 13 * b) % 50
    pan = gt.sum(axis=-1) // bands + (3 * x[..., 0] + 5 * y[..., 0]) % 40
    return (gt.transpose(2, 0, 1).astype(np.float64), fused.transpose(2, 0, 1).astype(np.float64),
            pan[None].astype(np.float64))


# Octave 7.3 running DLPan-Toolbox a34f884 Quality_Indices/ (q2n, SAM, ERGAS, SCC, Q; QNR, HQNR).
GOLDEN_RR = {
    (64, 64, 4): {"q2n": 0.977944381495, "sam": 0.886425995992, "ergas": 0.501366135693, "scc": 0.998774567728,
                  "q_avg": 0.978093214784},
    (64, 64, 8): {"q2n": 0.983358487934, "sam": 0.873744601278, "ergas": 0.448102721651, "scc": 0.998979009077,
                  "q_avg": 0.978604264204},
    (50, 70, 4): {"q2n": 0.977196910315, "sam": 0.907485814793, "ergas": 0.525204354428, "scc": 0.998865956584,
                  "q_avg": 0.973978821960},
}
GOLDEN_FR = {
    ((64, 64, 4), "QB"): {"d_lambda": 0.034214452998, "d_s": 0.068306900383, "qnr": 0.899815729852,
                          "d_lambda_k": 0.060451716068, "hqnr": 0.875370652896},
    ((64, 64, 8), "WV3"): {"d_lambda": 0.021641306608, "d_s": 0.050425739297, "qnr": 0.929024232980,
                           "d_lambda_k": 0.050315647684, "hqnr": 0.901795816751},
}


@pytest.mark.parametrize("shape", list(GOLDEN_RR))
def test_reduced_resolution_golden(shape):
    gt, fused, _ = fixture(*shape)
    got = reduced_resolution(fused, gt, ratio=4, dim_cut=0)
    for name, value in GOLDEN_RR[shape].items():
        assert got[name] == pytest.approx(value, abs=TOL), name


@pytest.mark.parametrize(("shape", "sensor"), list(GOLDEN_FR))
def test_full_resolution_golden(shape, sensor):
    gt, fused, pan = fixture(*shape)  # I_F = f, MS↑ = gt, PAN = pan
    got = full_resolution(fused, gt, pan, get_sensor(sensor).gnyq_ms)
    for name, value in GOLDEN_FR[(shape, sensor)].items():
        assert got[name] == pytest.approx(value, abs=TOL), name
    assert got["d_lambda_nan_blocks"] == got["d_s_nan_blocks"] == 0


def test_q2n_padding_mirrors_the_edge_pixel():
    """50×70 is padded to 64×96 by symmetric mirroring that repeats the edge pixel, then cast and scored."""
    gt, fused, _ = fixture(50, 70, 4)
    pad = ((0, 0), (0, 14), (0, 26))
    padded = q2n_map(np.pad(gt, pad, mode="symmetric"), np.pad(fused, pad, mode="symmetric"))
    assert q2n_map(gt, fused).shape == (2, 3)
    np.testing.assert_array_equal(q2n_map(gt, fused), padded)
    other = q2n(np.pad(gt, pad, mode="reflect"), np.pad(fused, pad, mode="reflect"))  # fr-pansh's variant
    assert abs(other - GOLDEN_RR[(50, 70, 4)]["q2n"]) > 1e-5


def test_identical_images_are_perfect():
    gt, _, _ = fixture(64, 64, 4)
    rr = reduced_resolution(gt, gt)
    assert rr["q2n"] == pytest.approx(1.0, abs=1e-12)
    assert rr["sam"] == pytest.approx(0.0, abs=1e-6)
    assert rr["ergas"] == 0.0
    assert rr["scc"] == pytest.approx(1.0, abs=1e-12)
    assert rr["q_avg"] == pytest.approx(1.0, abs=1e-12)
    assert d_lambda(gt, gt)[0] == 0.0


def test_every_index_has_one_better_direction_that_the_ideal_image_takes():
    """direction() covers every RR and FR name (and the HSI ones); the GT scored against itself is at least as
    good as a distorted image in each RR index's stated direction; QNR and HQNR rise as the D indices fall."""
    gt, fused, _ = fixture(64, 64, 4)
    ideal, distorted = reduced_resolution(gt, gt), reduced_resolution(fused, gt)
    for m in RR_METRICS:
        assert (ideal[m] >= distorted[m]) if direction(m) == "higher" else (ideal[m] <= distorted[m]), m
    assert {direction(m) for m in FR_METRICS} == {"higher", "lower"}
    assert {direction(m) for m in ("qnr", "hqnr")} != {direction(m) for m in ("d_lambda", "d_s", "d_lambda_k")}
    assert (direction("psnr"), direction("rmse")) == ("higher", "lower")
    with pytest.raises(KeyError):
        direction("q4")


def test_ergas_of_a_scaled_image():
    """ERGAS(g, c·g) = 25·|1 − c|·sqrt(mean_b E[g_b²] / E[g_b]²)."""
    gt, _, _ = fixture(64, 64, 4)
    expected = 25 * 0.1 * math.sqrt(np.mean((gt**2).mean(axis=(1, 2)) / gt.mean(axis=(1, 2)) ** 2))
    assert ergas(1.1 * gt, gt, 4) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(2.5386094931, abs=1e-9)


def test_q2n_needs_dn_not_unit_range():
    """The uint16 cast: on [0, 1] data Q2n scores 0/1 images. Octave running the toolbox gives 0.945798774911
    (spec §2.1's 0.8554 is not what the toolbox computes; docs/pansharpening.md)."""
    gt, fused, _ = fixture(64, 64, 4)
    assert q2n(gt / 2047, fused / 2047) == pytest.approx(0.945798774911, abs=TOL)
    assert q2n(gt + 0.4, fused - 0.4) == q2n(gt, fused)  # rounded back to the same integers
    # MATLAB's uint16 rounds halves away from zero and saturates at 0 (Octave + toolbox values)
    assert q2n(gt, fused + 0.5) == pytest.approx(0.976885286675, abs=TOL)
    assert q2n(gt, fused - 0.5) == pytest.approx(GOLDEN_RR[(64, 64, 4)]["q2n"], abs=TOL)
    assert q2n(gt, fused - 700) == pytest.approx(0.388386684563, abs=TOL)


def test_q2n_pads_bands_to_a_power_of_two():
    gt, fused, _ = fixture(64, 64, 4)
    three = q2n(gt[:3], fused[:3])
    zero_band = np.zeros((1, 64, 64))
    assert three == q2n(np.concatenate([gt[:3], zero_band]), np.concatenate([fused[:3], zero_band]))


def test_sam_and_scc_are_the_toolbox_definitions():
    gt, fused, _ = fixture(40, 36, 3)
    dot = (gt * fused).sum(0)
    ref = np.degrees(np.mean(np.arccos(dot / np.sqrt((gt**2).sum(0) * (fused**2).sum(0)))))
    assert sam(fused, gt) == pytest.approx(ref, abs=1e-10)
    assert scc(gt, fused) == pytest.approx(scc(fused, gt), abs=1e-14)  # symmetric, no mean removal
    assert scc(gt, 2 * gt + 0) == pytest.approx(1.0, abs=1e-12)


def _reference_uqi_mean(x: np.ndarray, y: np.ndarray, s: int) -> float:
    """The toolbox's uqi over distinct blocks, block by block with np.cov (a plain restatement)."""
    values = []
    for r in range(0, x.shape[0], s):
        for c in range(0, x.shape[1], s):
            a, b = x[r:r + s, c:c + s].ravel(), y[r:r + s, c:c + s].ravel()
            cov = np.cov(a, b)
            values.append(4 * cov[0, 1] * a.mean() * b.mean() / (cov[0, 0] + cov[1, 1]) / (a.mean()**2 + b.mean()**2))
    return float(np.mean(values))


def test_d_lambda_and_d_s_restated():
    gt, fused, pan = fixture(64, 96, 4)
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    ref = np.mean([abs(_reference_uqi_mean(fused[i], fused[j], 32) - _reference_uqi_mean(gt[i], gt[j], 32))
                   for i, j in pairs])
    assert d_lambda(fused, gt)[0] == pytest.approx(ref, abs=1e-12)
    pan_lp = interp23tap(imresize_bicubic(pan, 0.25))[0]
    ref = np.mean([abs(_reference_uqi_mean(fused[b], pan[0], 32) - _reference_uqi_mean(gt[b], pan_lp, 32))
                   for b in range(4)])
    assert d_s(fused, gt, pan)[0] == pytest.approx(ref, abs=1e-12)
    assert block_uqi(gt[0], gt[0]).shape == (2, 3)


def test_q2n_flat_blocks_as_the_toolbox():
    """Octave + toolbox: a zero block in both images scores 1; GT 500 under fused 700 scores 2.2204e-18."""
    gt, fused, _ = fixture(64, 64, 4)
    gt[:, :32, :32] = fused[:, :32, :32] = 0.0
    assert q2n_map(gt, fused)[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert q2n(gt, fused) == pytest.approx(0.993502319181, abs=TOL)
    gt[:, :32, :32], fused[:, :32, :32] = 500.0, 700.0
    assert q2n_map(gt, fused)[0, 0] == pytest.approx(2.2204e-18, abs=1e-21)
    assert q2n(gt, fused) == pytest.approx(0.743502319181, abs=TOL)


def test_flat_qnr_blocks_keep_the_toolbox_nan_and_are_counted():
    gt, fused, pan = fixture(64, 64, 4)
    fused[:, 32:, 32:] = 700.0  # no variance in F: every pair of that block is 0/0
    value, nan_blocks = d_lambda(fused, gt)
    assert math.isnan(value) and nan_blocks == 6
    assert d_s(fused, gt, pan)[1] == 0  # PAN has variance there: Q(F_b, PAN) = 0, not NaN
    pan[:, 32:, 32:] = 900.0
    fr = full_resolution(fused, gt, pan, SENSORS["QB"].gnyq_ms)
    assert math.isnan(fr["qnr"]) and math.isnan(fr["hqnr"]) and fr["d_s_nan_blocks"] == 4
    assert fr["d_lambda_nan_blocks"] == 6 and math.isfinite(fr["d_lambda_k"])


def test_unscorable_sizes_are_one_clear_error():
    gt, fused, pan = fixture(15, 40, 4)
    with pytest.raises(ValueError, match=r"q2n: a 15×40 image cannot be scored .* at least 16 pixels"):
        q2n(gt, fused)
    gt, fused, _ = fixture(16, 40, 4)  # 16 is enough: mirrored to 32
    assert math.isfinite(q2n(gt, fused)) and math.isnan(q_avg(gt, fused))
    gt, fused, pan = fixture(48, 64, 4)
    for call in (lambda: d_lambda(fused, gt), lambda: d_s(fused, gt, pan),
                 lambda: d_lambda_k(fused, gt, SENSORS["QB"].gnyq_ms)):
        with pytest.raises(ValueError, match=r"48×64; .* multiples of the block size 32"):
            call()


def test_border_cut_is_matlab_indexing():
    img = np.arange(256 * 256, dtype=np.float64).reshape(1, 256, 256)
    cut = border_cut(img, 21)
    assert cut.shape == (1, 215, 215)
    assert cut[0, 0, 0] == img[0, 20, 20] and cut[0, -1, -1] == img[0, 234, 234]  # 1-based 21 … 235
    assert border_cut(img, 0) is img


def test_sewar_q2n_oracle():
    """sewar's q2n is the toolbox's without the uint16 cast: equal on integer DN."""
    full_ref = pytest.importorskip("sewar.full_ref")
    for shape in ((64, 64, 4), (50, 70, 4), (64, 64, 8)):
        gt, fused, _ = fixture(*shape)
        oracle = full_ref.q2n(gt.transpose(1, 2, 0), fused.transpose(1, 2, 0), ws=32)
        assert q2n(gt, fused) == pytest.approx(oracle, abs=1e-10)


# ---------------------------------------------------------------------------------------------------
# Sensors, MTF, resamplers


@pytest.mark.parametrize("name", list(SENSORS))
def test_mtf_kernel_matches_its_gain(name):
    sensor = SENSORS[name]
    for gain in sensor.gnyq_ms + ((sensor.gnyq_pan,) if sensor.gnyq_pan else ()):
        k = mtf_kernel(gain)
        assert k.shape == (41, 41)
        np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-15)
        np.testing.assert_allclose(k, k.T, atol=1e-15)
        assert abs(k.sum() - 1) < 3e-3
        # the design point: sample 5 of the 41-point frequency grid, 5/41 cycle/px (ratio 4)
        assert frequency_response(k, 0, 5 / 41) == pytest.approx(gain, rel=0.01)
        assert frequency_response(k, 5 / 41, 0) == pytest.approx(gain, rel=0.01)
        assert 0.88 * gain < frequency_response(k, 0, 1 / 8) < 0.96 * gain  # below G at the LR Nyquist


def test_sensor_table():
    assert {n: (s.bands, s.bits, s.scale) for n, s in SENSORS.items()} == {
        "QB": (4, 11, 2047.0), "IKONOS": (4, 11, None), "GeoEye1": (4, 11, 2047.0), "WV2": (8, 11, 2047.0),
        "WV3": (8, 11, 2047.0), "GF2": (4, 10, 1023.0)}
    with pytest.raises(ValueError, match="--sensor 'wv3': unknown sensor; expected one of QB, IKONOS"):
        get_sensor("wv3")


def test_mtf_filter_keeps_a_constant_and_replicates_borders():
    img = np.full((4, 40, 36), 1000.0)
    out = mtf_filter(img, SENSORS["QB"].gnyq_ms)
    sums = np.array([mtf_kernel(g).sum() for g in SENSORS["QB"].gnyq_ms])
    np.testing.assert_allclose(out, np.broadcast_to(1000 * sums[:, None, None], out.shape), rtol=1e-12)  # borders too


def test_interp23tap_keeps_the_samples_at_phase_two():
    _, _, pan = fixture(16, 12, 1)
    up = interp23tap(pan, 4)
    assert up.shape == (1, 64, 48)
    np.testing.assert_allclose(up[:, 2::4, 2::4], pan, atol=1e-9)
    np.testing.assert_allclose(interp23tap(np.full((2, 8, 8), 5.0)), 5.0, atol=1e-9)


def test_imresize_bicubic_matches_octave():
    """Octave image 2.14 ``imresize(a, 1/4)`` (bicubic, antialiased like MATLAB) of a 10×13 pattern."""
    y, x = np.mgrid[0:10, 0:13]
    a = ((7 * x * x + 3 * y**3 + x * y) % 31).astype(np.float64)[None]
    octave = np.array([12.7929948568344, 15.300494492054, 13.2459605336189, 10.8948405981064, 14.9096294641495,
                       14.9423944354057, 15.0196214318275, 12.6566866636276, 11.9070072174072, 15.1508188247681,
                       10.3167364597321, 9.98837614059448]).reshape(1, 3, 4)
    np.testing.assert_allclose(imresize_bicubic(a, 0.25), octave, atol=1e-12)
    np.testing.assert_allclose(imresize_bicubic(np.full((1, 64, 48), 3.0), 0.25), 3.0, atol=1e-12)


def test_toolbox_border_cut_golden():
    """Octave running ``indexes_evaluation(f, gt, 4, 11, 32, 1, 21, 0)`` on a 256×256×4 fixture (215×215 kept)."""
    gt, fused, _ = fixture(256, 256, 4)
    got = reduced_resolution(fused, gt, ratio=4, dim_cut=21)
    golden = {"q2n": 0.753620985688, "sam": 0.181513794889, "ergas": 1.309035942217, "scc": 0.999965605480,
              "q_avg": 0.997448389818}
    for name, value in golden.items():
        assert got[name] == pytest.approx(value, abs=TOL), name


def test_interp23tap_and_mtf_match_the_toolbox():
    """Octave running the toolbox's ``interp23tap.m`` and ``MTF.m`` (its ``genMTF.m``) on the 64×64×4 fixture."""
    gt, _, _ = fixture(64, 64, 4)
    lms = interp23tap(gt[:, 2::4, 2::4], 4)
    assert lms.sum() == pytest.approx(15089087.987808, rel=1e-12)
    assert lms[0, 0, 0] == pytest.approx(1151.05141405715, rel=1e-12)
    blurred = mtf_filter(gt, SENSORS["QB"].gnyq_ms)
    assert blurred.sum() == pytest.approx(15012351.13211, rel=1e-12)
    assert blurred[0, 0, 0] == pytest.approx(827.984652663438, rel=1e-12)
    assert mtf_kernel(0.325)[20, 20] == pytest.approx(0.0415702720229386, rel=1e-12)
