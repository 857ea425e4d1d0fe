"""Wald's-protocol simulation: kernels, blur/decimation, SRFs, noise by SNR, misregistration."""

import numpy as np
import pytest

from data import Degradation, add_noise, blur_decimate, builtin_srf, load_srf_csv, shift_image, simulate_scene
from data.degrade import BLUR_KINDS, BORDER_MODES, finish_pair, kernel_2d, measured_snr
from data.sensors import resolve_srf
from data.spectral import aviris172_wavelengths, visible31_wavelengths


@pytest.mark.parametrize("blur", BLUR_KINDS)
@pytest.mark.parametrize("border", [b for b in BORDER_MODES if b != "constant"])
def test_constant_image_stays_constant(blur, border):
    img = np.full((24, 20, 3), 0.37, np.float32)
    lr = blur_decimate(img, Degradation(ratio=4, blur=blur, border=border))
    assert lr.shape == (6, 5, 3)
    np.testing.assert_allclose(lr, 0.37, rtol=1e-6)


@pytest.mark.parametrize("deg", [Degradation(blur="gaussian", sigma=1.3), Degradation(blur="gaussian", sigma=2.0,
                                 kernel_size=7), Degradation(blur="b3spline"), Degradation(blur="box", ratio=3)])
def test_kernels_sum_to_one(deg):
    k = deg.kernel_1d()
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    assert kernel_2d(k).sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(k, k[::-1])  # symmetric
    assert deg.to_dict()["kernel_size"] == len(k)


def test_b3spline_taps_and_gaussian_size():
    np.testing.assert_allclose(Degradation(blur="b3spline").kernel_1d(), [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16])
    assert len(Degradation(sigma=2.0).kernel_1d()) == 13


def test_box_blur_with_default_phase_is_the_block_mean():
    img = np.random.default_rng(0).random((16, 12, 2)).astype(np.float32)
    lr = blur_decimate(img, Degradation(ratio=4, blur="box"))
    np.testing.assert_allclose(lr, img.reshape(4, 4, 3, 4, 2).mean(axis=(1, 3)), atol=1e-6)


def test_blur_matches_full_2d_convolution():
    from scipy import ndimage

    img = np.random.default_rng(1).random((20, 16, 2)).astype(np.float32)
    deg = Degradation(ratio=4, sigma=1.5, phase=1, border="wrap")
    full = ndimage.correlate(img, kernel_2d(deg.kernel_1d())[..., None], mode="wrap")
    np.testing.assert_allclose(blur_decimate(img, deg), full[1::4, 1::4], atol=1e-5)


@pytest.mark.parametrize("name, wl", [("rgb", visible31_wavelengths()), ("ms4", aviris172_wavelengths()),
                                      ("ms6", aviris172_wavelengths()), ("ms4", visible31_wavelengths()),
                                      ("rgb", aviris172_wavelengths())])
def test_builtin_srf_rows_sum_to_one_and_flat_spectrum_gives_flat_msi(name, wl):
    r = builtin_srf(name, wl)
    assert r.shape == ({"rgb": 3, "ms4": 4, "ms6": 6}[name], wl.size)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, atol=1e-12)
    assert (r >= 0).all()
    cube = np.full((4, 4, wl.size), 0.25, np.float32)
    msi = simulate_scene(cube, [r], Degradation()).hrmsi[r.shape[0]]
    np.testing.assert_allclose(msi, 0.25, rtol=1e-5)


def test_ms_bands_span_the_range_in_order():
    wl = aviris172_wavelengths()
    r = builtin_srf("ms6", wl)
    centres = r @ wl
    assert np.all(np.diff(centres) > 0) and centres[0] < 800 and centres[-1] > 2000


def test_user_srf_csv(tmp_path):
    wl = visible31_wavelengths()
    rows = ["wavelength,blue,green,red"] + [
        f"{v},{np.exp(-((v - 460) / 30) ** 2):.6f},{np.exp(-((v - 550) / 30) ** 2):.6f},"
        f"{np.exp(-((v - 620) / 30) ** 2):.6f}" for v in range(380, 741, 5)]
    (tmp_path / "cam.csv").write_text("\n".join(rows))
    r, names = load_srf_csv(str(tmp_path / "cam.csv"), wl)
    assert names == ["blue", "green", "red"] and r.shape == (3, 31)
    np.testing.assert_allclose(r.sum(axis=1), 1.0)
    assert int(np.argmax(r[0])) == 6 and int(np.argmax(r[2])) == 22  # 460 nm, 620 nm
    assert resolve_srf(str(tmp_path / "cam.csv"), wl)[0].shape == (3, 31)
    (tmp_path / "nir.csv").write_text("wl,nir\n800,0\n850,1\n900,0\n")
    with pytest.raises(ValueError, match=r"nir\.csv: MSI band\(s\) \[0\] have no response over the HSI wavelengths"):
        load_srf_csv(str(tmp_path / "nir.csv"), wl)
    with pytest.raises(ValueError, match="unknown built-in SRF 'landsat'"):
        resolve_srf("landsat", wl)


def test_noise_snr_within_0_2_db():
    rng = np.random.default_rng(5)
    img = rng.random((256, 256, 8)).astype(np.float32)
    for snr in (20.0, 30.0, 35.0, 45.0):
        noisy = add_noise(img, snr, rng)
        assert abs(measured_snr(img, noisy) - snr) < 0.2
    np.testing.assert_array_equal(add_noise(img, 0.0, rng), img)  # 0 dB means "no noise"


@pytest.mark.parametrize("border", BORDER_MODES)
def test_integer_misregistration_is_an_exact_shift(border):
    img = np.random.default_rng(2).random((16, 12, 3)).astype(np.float32)
    out = shift_image(img, (2, -3), border)
    np.testing.assert_array_equal(out[2:, :-3], img[:-2, 3:])
    assert out.shape == img.shape


def test_misaligned_lr_variants():
    img = np.random.default_rng(3).random((32, 32, 2)).astype(np.float32)
    deg = Degradation(ratio=4, blur="box", misreg=(4.0, 0.0), border="wrap")
    lr = simulate_scene(img, [], deg, levels=(0, 1, 2)).lrhsi
    np.testing.assert_allclose(lr[1], np.roll(lr[0], 1, axis=0), atol=1e-6)  # 4 HR px = 1 LR px
    np.testing.assert_allclose(lr[2], np.roll(lr[0], 2, axis=0), atol=1e-6)
    sub = simulate_scene(img, [], Degradation(ratio=4, blur="box", misreg=(1.0, 1.0)), levels=(0, 1)).lrhsi
    assert 0 < np.abs(sub[1] - sub[0]).mean() < np.abs(lr[1] - lr[0]).mean()  # sub-pixel: smaller change
    half = shift_image(img, (0.5, 0.0), "wrap")
    np.testing.assert_allclose(half[1:], (img[1:] + img[:-1]) / 2, atol=1e-6)  # bilinear for fractions


def test_finish_pair_scales_with_gt_min_max():
    rng = np.random.default_rng(4)
    gt = (rng.random((16, 16, 5)) * 1000 + 50).astype(np.float32)
    deg = Degradation(ratio=4)
    scene = simulate_scene(gt, [builtin_srf("ms4", np.linspace(400, 900, 5))], deg)
    msi, lr = finish_pair(scene.gt, scene.hrmsi, scene.lrhsi, deg, rng)
    g01 = (gt - gt.min()) / (gt.max() - gt.min())
    np.testing.assert_allclose(lr[0], blur_decimate(g01, deg), atol=1e-5)
    assert 0 <= msi[4].min() and msi[4].max() <= 1
    with pytest.raises(ValueError, match="constant GT"):
        finish_pair(np.ones((8, 8, 2), np.float32), {}, {}, deg, rng)


def test_bad_parameters_give_clear_messages():
    with pytest.raises(ValueError, match="--blur must be one of"):
        Degradation(blur="motion")
    with pytest.raises(ValueError, match=r"--phase must be in \[0, 3\] for ratio 4, got 4"):
        Degradation(phase=4)
    with pytest.raises(ValueError, match="--blur_size must be a positive odd number"):
        Degradation(kernel_size=4)
    with pytest.raises(ValueError, match="--border must be one of"):
        Degradation(border="circular")
    with pytest.raises(ValueError, match=r"cube: spatial size 10×12 is not divisible by the ratio 4"):
        simulate_scene(np.zeros((10, 12, 2), np.float32), [], Degradation())
