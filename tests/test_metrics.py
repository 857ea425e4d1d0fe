"""Tests of utils/metrics.py: hand-computed cases, NumPy restatements of the official trainOps.py
formulas (compat="official"), and torchmetrics where its conventions coincide with ours."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchmetrics.functional.image as tmf

from utils.metrics import (
    COUNT_KEYS,
    METRIC_DIRECTIONS,
    METRIC_NAMES,
    cc,
    ergas,
    evaluate_batch,
    improves,
    mean_metrics,
    psnr,
    rmse,
    sam,
    ssim,
    ssim_window,
    to_unit_range,
    uiqi,
)


def random_pair(shape=(4, 36, 34), seed=0, noise=0.05):
    """A smooth positive GT in [0.1, 0.9] and a noisy prediction (not clipped), float64."""
    gen = torch.Generator().manual_seed(seed)
    c, h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(0, 3, h, dtype=torch.float64),
                            torch.linspace(0, 2, w, dtype=torch.float64), indexing="ij")
    bands = torch.arange(1, c + 1, dtype=torch.float64).view(c, 1, 1)
    gt = 0.5 + 0.2 * torch.sin(bands * yy + xx) + 0.1 * torch.rand(shape, generator=gen, dtype=torch.float64)
    pred = gt + noise * torch.randn(shape, generator=gen, dtype=torch.float64)
    return pred, gt


# ---------------------------------------------------------------------------------------------------
# Hand-computed cases


def test_identical_images():
    _, gt = random_pair()
    assert psnr(gt, gt) == math.inf
    assert sam(gt, gt) == pytest.approx(0.0, abs=1e-6)
    assert ergas(gt, gt, 4) == 0.0
    assert rmse(gt, gt, maxv=700.0, minv=3.0) == 0.0
    assert ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)
    assert uiqi(gt, gt) == pytest.approx(1.0, abs=1e-9)
    assert cc(gt, gt) == pytest.approx(1.0, abs=1e-12)


def test_constant_offset():
    _, gt = random_pair()
    delta, maxv, minv, ratio = 0.02, 900.0, 10.0, 4
    pred = gt + delta
    band_peak = gt.amax(dim=(1, 2))
    assert psnr(pred, gt) == pytest.approx(torch.mean(10 * torch.log10(band_peak**2 / delta**2)).item(), rel=1e-10)
    expected_ergas = 100 / ratio * math.sqrt(torch.mean(delta**2 / gt.mean(dim=(1, 2)) ** 2).item())
    assert ergas(pred, gt, ratio) == pytest.approx(expected_ergas, rel=1e-10)
    assert rmse(pred, gt, maxv, minv) == pytest.approx(delta * (maxv - minv), rel=1e-10)
    assert rmse(pred, gt, maxv, minv, compat="official") == pytest.approx(delta * (maxv - minv) + minv, rel=1e-10)
    assert cc(pred, gt) == pytest.approx(1.0, abs=1e-12)  # an offset keeps the correlation


def test_one_pixel_shift_of_a_ramp():
    # g[c, h, w] = a_c·(w + 1); the prediction is g shifted right by one pixel (first column repeated).
    # Every pixel spectrum is proportional to a, so SAM = 0; band errors are a_c on W − 1 of W columns:
    # PSNR_c = 10·log10((a_c W)² / (a_c² (W−1)/W)) = 10·log10(W³/(W−1)); mean(g_c) = a_c (W+1)/2.
    c, h, w = 3, 12, 16
    a = torch.tensor([0.01, 0.03, 0.05], dtype=torch.float64).view(c, 1, 1)
    gt = a * torch.arange(1, w + 1, dtype=torch.float64).view(1, 1, w).expand(c, h, w)
    pred = torch.cat((gt[:, :, :1], gt[:, :, :-1]), dim=2)
    assert psnr(pred, gt) == pytest.approx(10 * math.log10(w**3 / (w - 1)), rel=1e-12)
    assert sam(pred, gt) == pytest.approx(0.0, abs=1e-5)
    assert ergas(pred, gt, 4) == pytest.approx(25 * math.sqrt(4 * (w - 1) / (w * (w + 1) ** 2)), rel=1e-12)
    assert rmse(pred, gt, 1.0, 0.0) == pytest.approx(torch.sqrt(a.pow(2).mean() * (w - 1) / w).item(), rel=1e-12)
    assert ssim(pred, gt) < 1.0


def test_known_angle():
    pred = torch.tensor([1.0, 0.0], dtype=torch.float64).view(2, 1, 1).expand(2, 3, 3)
    gt = torch.tensor([1.0, 1.0], dtype=torch.float64).view(2, 1, 1).expand(2, 3, 3)
    assert sam(pred, gt) == pytest.approx(45.0, rel=1e-12)
    assert sam(pred, gt, unit="rad") == pytest.approx(math.pi / 4, rel=1e-12)


def test_zero_norm_pixels_are_excluded_and_counted():
    pred, gt = random_pair(shape=(4, 32, 32))
    gt[:, 0, 0] = 0.0
    gt[:, 5, 7] = 0.0
    pred[:, 9, 9] = 0.0
    value, excluded = sam(pred, gt, return_zero_pixels=True)
    assert excluded == 3
    keep = torch.ones(32, 32, dtype=torch.bool)
    keep[0, 0] = keep[5, 7] = keep[9, 9] = False
    p, g = pred[:, keep], gt[:, keep]
    cos = (p * g).sum(0) / (p.norm(dim=0) * g.norm(dim=0))
    assert value == pytest.approx(math.degrees(torch.arccos(cos).mean().item()), rel=1e-10)
    assert math.isnan(sam(pred, gt, compat="official"))
    assert sam(pred, gt, compat="official", return_zero_pixels=True)[1] == 3
    rows = evaluate_batch(2 * torch.stack((pred, pred)) - 1, 2 * torch.stack((gt, gt)) - 1, 1.0, 0.0,
                          metrics=("sam",))
    assert [row["sam_zero_pixels"] for row in rows] == [3, 3]
    assert mean_metrics(rows)["sam_zero_pixels"] == 6
    assert math.isnan(mean_metrics(evaluate_batch(2 * pred[None] - 1, 2 * gt[None] - 1, 1.0, 0.0,
                                                  compat="official", metrics=("sam",)))["sam"])
    assert math.isnan(sam(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4)))  # no pixel has an angle


def test_uiqi_matches_explicit_window_loop():
    pred, gt = random_pair(shape=(2, 36, 34))

    def q_loop(p: np.ndarray, g: np.ndarray, block: int) -> float:
        band_means = []
        for b in range(p.shape[0]):
            qs = []
            for i in range(p.shape[1] - block + 1):
                for j in range(p.shape[2] - block + 1):
                    x, y = p[b, i : i + block, j : j + block], g[b, i : i + block, j : j + block]
                    mx, my = x.mean(), y.mean()
                    cov = ((x - mx) * (y - my)).mean()
                    qs.append(4 * cov * mx * my / ((x.var() + y.var()) * (mx**2 + my**2)))
            band_means.append(np.mean(qs))
        return float(np.mean(band_means))

    assert uiqi(pred, gt) == pytest.approx(q_loop(pred.numpy(), gt.numpy(), 32), rel=1e-9)
    assert uiqi(pred, gt, block=8) == pytest.approx(q_loop(pred.numpy(), gt.numpy(), 8), rel=1e-9)


def test_uiqi_flat_windows():
    flat_p = torch.full((1, 32, 32), 0.3, dtype=torch.float64)
    flat_g = torch.full((1, 32, 32), 0.6, dtype=torch.float64)
    assert uiqi(flat_p, flat_g) == pytest.approx(2 * 0.3 * 0.6 / (0.3**2 + 0.6**2), rel=1e-12)
    assert uiqi(torch.zeros(1, 32, 32), torch.zeros(1, 32, 32)) == 1.0


def test_cc_matches_numpy():
    pred, gt = random_pair(noise=0.2)
    expected = np.mean([np.corrcoef(pred[b].ravel(), gt[b].ravel())[0, 1] for b in range(pred.shape[0])])
    assert cc(pred, gt) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------------------------------
# torchmetrics, where the conventions coincide


def test_sam_radians_matches_torchmetrics():
    pred, gt = random_pair(noise=0.1)
    expected = tmf.spectral_angle_mapper(pred.unsqueeze(0), gt.unsqueeze(0)).item()
    assert sam(pred, gt, unit="rad") == pytest.approx(expected, rel=1e-10)


def test_ergas_matches_torchmetrics_100_over_ratio():
    # torchmetrics ≥ 1.4 uses 100/ratio with ratio = high/low resolution (PR #2498), as we do.
    pred, gt = random_pair(noise=0.1)
    for ratio in (4, 8):
        expected = tmf.error_relative_global_dimensionless_synthesis(pred.unsqueeze(0), gt.unsqueeze(0), ratio=ratio)
        assert ergas(pred, gt, ratio) == pytest.approx(expected.item(), rel=1e-10)


def test_psnr_matches_torchmetrics_per_band():
    pred, gt = random_pair(noise=0.1)
    per_band = [tmf.peak_signal_noise_ratio(pred[b], gt[b], data_range=gt[b].max().item()).item()
                for b in range(gt.shape[0])]
    # torchmetrics keeps data_range in float32, hence the looser tolerance.
    assert psnr(pred, gt) == pytest.approx(float(np.mean(per_band)), rel=1e-6)


def test_ssim_matches_torchmetrics_per_band():
    pred, gt = random_pair(noise=0.1)
    options = {"gaussian_kernel": True, "sigma": 1.5, "kernel_size": 11, "data_range": 1.0,
               "k1": 0.01, "k2": 0.03}
    # reflect: torchmetrics pads by reflection and averages the whole map.
    per_band = tmf.structural_similarity_index_measure(pred.unsqueeze(1), gt.unsqueeze(1), reduction="none",
                                                       **options)
    assert ssim(pred, gt, border="reflect") == pytest.approx(per_band.mean().item(), rel=1e-10)
    # valid: the same map restricted to the window positions that need no padding.
    _, full_map = tmf.structural_similarity_index_measure(pred.unsqueeze(1), gt.unsqueeze(1),
                                                          return_full_image=True, **options)
    assert ssim(pred, gt) == pytest.approx(full_map[..., 5:-5, 5:-5].mean().item(), rel=1e-10)


# ---------------------------------------------------------------------------------------------------
# compat="official" against NumPy restatements of trainOps.py (sam2, psnr, ERGAS, rmse)


def numpy_official(p: np.ndarray, g: np.ndarray, maxv: float, minv: float) -> dict[str, float]:
    dot = (p * g).sum(0)
    den = np.sqrt((p**2).sum(0) * (g**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        sam_deg = np.degrees(np.arccos(dot / den)).sum() / (p.shape[1] * p.shape[2])
    bands = p.shape[0]
    mse = ((p.reshape(bands, -1) - g.reshape(bands, -1)) ** 2).mean(1)
    psnr_db = np.mean(10 * np.log10(g.reshape(bands, -1).max(1) ** 2 / mse))
    acc = sum(np.mean((g[b] - p[b]) ** 2) / np.mean(g[b]) ** 2 for b in range(bands))
    ergas_4 = 100.0 / 4 * np.sqrt(acc / bands)
    rmse_test = np.sqrt(np.mean((p - g) ** 2)) * (maxv - minv) + minv
    return {"sam": sam_deg, "psnr": psnr_db, "ergas": ergas_4, "rmse": rmse_test}


def test_official_conventions_match_numpy_restatement():
    pred01, gt01 = zip(*(random_pair(shape=(5, 32, 32), seed=s) for s in (1, 2)), strict=True)
    pred = 2 * torch.stack(pred01) - 1  # network domain
    gt = 2 * torch.stack(gt01) - 1
    maxv, minv = torch.tensor([812.0, 640.0]), torch.tensor([3.0, 0.0])
    rows = evaluate_batch(pred, gt, maxv, minv, scale=8, compat="official")
    for i, row in enumerate(rows):
        expected = numpy_official(pred01[i].numpy(), gt01[i].numpy(), maxv[i].item(), minv[i].item())
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, rel=1e-10), name
    default = evaluate_batch(pred, gt, maxv, minv, scale=8)
    for off, cor, mn in zip(rows, default, minv.tolist(), strict=True):
        assert off["rmse"] == pytest.approx(cor["rmse"] + mn, rel=1e-10)  # the test-script offset
        assert off["ergas"] == pytest.approx(2 * cor["ergas"], rel=1e-10)  # ratio 4 instead of 8
        assert off["sam"] == pytest.approx(cor["sam"], rel=1e-10)  # no zero pixels here
        assert off["psnr"] == cor["psnr"] and off["ssim"] == cor["ssim"]


# ---------------------------------------------------------------------------------------------------
# evaluate_batch / mean_metrics


def test_evaluate_batch_maps_to_unit_range_and_computes_in_float64():
    pred01, gt01 = random_pair(shape=(4, 32, 32), seed=3)
    pred, gt = (2 * pred01 - 1).float(), (2 * gt01 - 1).float()
    rows = evaluate_batch(pred.unsqueeze(0), gt.unsqueeze(0), maxv=500.0, minv=2.0)
    assert len(rows) == 1 and set(rows[0]) == set(METRIC_NAMES) | {"sam_zero_pixels"}
    p64, g64 = to_unit_range(pred.double()), to_unit_range(gt.double())
    assert rows[0]["psnr"] == psnr(p64, g64)
    assert rows[0]["ssim"] == ssim(p64, g64)
    assert rows[0]["ergas"] == ergas(p64, g64, 4)
    assert rows[0]["rmse"] == rmse(p64, g64, 500.0, 2.0)
    # Predictions are not clipped: an out-of-range prediction changes the metrics.
    over = pred.clone()
    over[0, 0, 0] = 3.0
    assert evaluate_batch(over[None], gt[None], 1.0, 0.0, metrics=["psnr"])[0]["psnr"] < rows[0]["psnr"]


def test_mean_metrics_and_directions():
    rows = [{"psnr": 30.0, "sam": 2.0, "sam_zero_pixels": 1}, {"psnr": 40.0, "sam": 4.0, "sam_zero_pixels": 2}]
    assert mean_metrics(rows) == {"psnr": 35.0, "sam": 3.0, "sam_zero_pixels": 3}
    assert set(METRIC_DIRECTIONS) == set(METRIC_NAMES)
    assert set(METRIC_DIRECTIONS.values()) == {"higher", "lower"}
    assert "sam_zero_pixels" in COUNT_KEYS
    with pytest.raises(ValueError, match="no per-image results"):
        mean_metrics([])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p, g: evaluate_batch(p, g[:, :3], 1.0, 0.0), "same shape"),
        (lambda p, g: evaluate_batch(p[0], g[0], 1.0, 0.0), r"\(B, C, H, W\)"),
        (lambda p, g: evaluate_batch(p, g, [1.0, 2.0, 3.0], 0.0), "maxv must hold 1 or 2 values"),
        (lambda p, g: evaluate_batch(p, g, 1.0, 0.0, metrics=["psnr", "qnr"]), "unknown metric"),
        (lambda p, g: evaluate_batch(p, g, 1.0, 0.0, compat="offical"), "compat"),
        (lambda p, g: evaluate_batch(p, g.clone().fill_(math.nan), 1.0, 0.0), "gt contains NaN"),
        (lambda p, g: uiqi(p[0, :, :16], g[0, :, :16], block=32), "block"),
        (lambda p, g: rmse(p[0], g[0], maxv=0.0, minv=1.0), "maxv must be >= minv"),
        (lambda p, g: ergas(p[0], g[0], 0), "ratio"),
        (lambda p, g: sam(p[0], g[0], unit="grad"), "unit"),
    ],
)
def test_bad_input_is_rejected(call, message):
    pred = torch.zeros(2, 4, 32, 32)
    gt = torch.zeros(2, 4, 32, 32)
    with pytest.raises(ValueError, match=message):
        call(pred, gt)


@pytest.mark.parametrize("size", [4, 8, 16])
def test_small_images_use_windows_that_fit(size):
    """SSIM: the largest odd window ≤ min(11, H, W); UIQI: min(32, H, W) (docs/metrics.md)."""
    pred, gt = random_pair(shape=(3, size, size))
    expected = min(11, size if size % 2 else size - 1)
    assert ssim_window(size, size) == expected and ssim_window(size, 50) == expected
    # UIQI with the default window equals the explicit fitting window; SSIM of identical images is 1.
    assert uiqi(pred, gt) == pytest.approx(uiqi(pred, gt, block=min(32, size)), rel=1e-12)
    assert ssim(gt, gt) == pytest.approx(1.0) and ssim(gt, gt, border="reflect") == pytest.approx(1.0)
    assert -1 <= ssim(pred, gt) <= 1
    rows = evaluate_batch(2 * pred[None] - 1, 2 * gt[None] - 1, 1.0, 0.0)
    assert all(math.isfinite(rows[0][k]) for k in ("ssim", "uiqi"))


def test_windows_of_large_images_are_unchanged():
    pred, gt = random_pair(shape=(2, 40, 40))
    assert ssim_window(40, 40) == 11
    assert uiqi(pred, gt) == pytest.approx(uiqi(pred, gt, block=32), rel=0, abs=0)


@pytest.mark.parametrize("compat", [None, "official"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_prediction_pixel_makes_sam_nan(compat, bad):
    """Before, a NaN pixel had ‖p‖·‖g‖ = NaN, was skipped like a zero spectrum, and the rest scored well."""
    pred, gt = random_pair(shape=(4, 16, 16))
    pred[2, 3, 4] = bad
    value, zero = sam(pred, gt, compat=compat, return_zero_pixels=True)
    assert math.isnan(value) and zero == 0
    row = evaluate_batch(2 * pred[None] - 1, 2 * gt[None] - 1, 1.0, 0.0, compat=compat, metrics=("sam",))[0]
    assert math.isnan(row["sam"])


def test_improves_never_accepts_a_non_finite_value():
    assert improves("sam", 1.0, math.inf) and not improves("sam", 2.0, 1.0)
    assert not improves("sam", math.nan, math.inf) and not improves("sam", -math.inf, 1.0)
    assert improves("psnr", 30.0, 20.0) and not improves("psnr", math.inf, 20.0)


def test_validation_rmse_under_official_compat_has_no_offset():
    """The official training validation de-normalises then takes the RMSE; only its test script adds minv."""
    pred, gt = random_pair(shape=(3, 8, 8))
    p, g = 2 * pred[None] - 1, 2 * gt[None] - 1
    default = evaluate_batch(p, g, 300.0, 100.0, metrics=("rmse",))[0]["rmse"]
    test = evaluate_batch(p, g, 300.0, 100.0, compat="official", metrics=("rmse",))[0]["rmse"]
    val = evaluate_batch(p, g, 300.0, 100.0, compat="official", metrics=("rmse",), test_rmse=False)[0]["rmse"]
    assert val == pytest.approx(default, rel=1e-12) and test == pytest.approx(default + 100.0, rel=1e-12)
