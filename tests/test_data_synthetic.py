"""Synthetic scenes and the ``synthetic`` dataset: determinism, range, spatial detail, splits."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data import Degradation, build_dataset, builtin_srf, make_scene, simulate_scene
from data.spectral import aviris172_wavelengths, visible31_wavelengths
from data.synthetic import ENDMEMBERS, VALUE_RANGE, abundances, endmembers


def test_same_seed_same_cube_different_seed_differs():
    a, b, c = make_scene(11, 32), make_scene(11, 32), make_scene(12, 32)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.01
    assert a.shape == (32, 32, 172) and a.dtype == np.float32


@pytest.mark.parametrize("size, wl", [((24, 40), visible31_wavelengths()), (32, aviris172_wavelengths()),
                                      (16, np.linspace(420, 1000, 50))])
def test_values_in_declared_range_any_size_and_bands(size, wl):
    cube = make_scene(3, size, wl)
    h, w = (size, size) if isinstance(size, int) else size
    assert cube.shape == (h, w, wl.size)
    assert VALUE_RANGE[0] <= cube.min() and cube.max() <= VALUE_RANGE[1]
    assert cube.std() > 0.02


def test_abundances_and_spectra_are_physical():
    a = abundances((48, 48), np.random.default_rng(0))
    assert a.min() >= 0
    np.testing.assert_allclose(a.sum(axis=-1), 1.0, atol=1e-5)
    assert ((a > 0.05).sum(axis=-1) >= 2).mean() > 0.1  # a good share of mixed pixels
    assert (a.max(axis=-1) > 0.999).mean() > 0.05  # and pure ones (man-made objects)
    wl = aviris172_wavelengths()
    e = dict(zip(ENDMEMBERS, endmembers(wl), strict=True))
    at = lambda name, nm: e[name][np.argmin(np.abs(wl - nm))]  # noqa: E731
    assert at("vegetation", 850) > 4 * at("vegetation", 660)  # red edge
    assert at("vegetation", 550) > at("vegetation", 660)  # green peak over the chlorophyll well
    assert at("vegetation", 1650) > at("vegetation", 1960)  # leaf-water absorption
    assert at("water", 500) > 3 * at("water", 1000)
    assert at("kaolinite", 2100) > at("kaolinite", 2207)  # Al-OH doublet


@pytest.mark.parametrize("seed", range(6))
def test_hrmsi_spatially_richer_than_upsampled_lrhsi(seed):
    wl = visible31_wavelengths() if seed % 2 else aviris172_wavelengths()
    cube = make_scene(seed, 64, wl)
    srf = builtin_srf("ms4", wl)
    scene = simulate_scene(cube, [srf], Degradation(ratio=4))
    lr_up = F.interpolate(torch.from_numpy(scene.lrhsi[0]).permute(2, 0, 1)[None], scale_factor=4,
                          mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    msi_from_lr = lr_up @ srf.T.astype(np.float32)

    def grad_energy(x):
        return float((np.diff(x, axis=0) ** 2).mean() + (np.diff(x, axis=1) ** 2).mean())

    assert grad_energy(scene.hrmsi[4]) > 5 * grad_energy(msi_from_lr)


def synth_cfg(**kw):
    cfg = dict(dataset="synthetic", image_size=32, crop_size=16, bands=31, msi_bands=4, scale=4,
               synthetic_scenes=[3, 2, 2], seed=5)
    cfg.update(kw)
    return cfg


def test_synthetic_dataset_contract_and_determinism():
    tr = build_dataset(synth_cfg(), "train")
    va = build_dataset(synth_cfg(), "val")
    assert (len(tr), len(va)) == (3, 2)
    s = tr[0]
    assert s["gt"].shape == (31, 16, 16) and s["hrmsi"].shape == (4, 16, 16) and s["lrhsi"].shape == (31, 4, 4)
    v = va[1]
    assert v["gt"].shape == (31, 32, 32) and v["lrhsi"].shape == (31, 8, 8) and v["name"] == "synthetic/val_0001"
    assert v["gt"].min() == -1 and v["gt"].max() == 1 and 0 <= v["minv"] < v["maxv"] <= 1
    again = build_dataset(synth_cfg(), "val")[1]
    assert torch.equal(again["gt"], v["gt"]) and torch.equal(again["lrhsi"], v["lrhsi"])
    # splits come from separate seed streams: no scene is shared
    gts = [build_dataset(synth_cfg(), sp)[i]["maxv"] for sp, n in (("train", 3), ("val", 2), ("test", 2))
           for i in range(n)]
    assert len(set(gts)) == len(gts)


def test_synthetic_dataset_options():
    s = build_dataset(synth_cfg(bands=172, msi_bands=6, snr_hsi=30, mis_pix=2), "test")[0]
    assert s["gt"].shape == (172, 32, 32) and s["hrmsi"].shape == (6, 32, 32)
    s3 = build_dataset(synth_cfg(msi_bands=3), "test")[0]
    assert s3["hrmsi"].shape == (3, 32, 32)  # built-in RGB camera for 3 bands
    mixed = build_dataset(synth_cfg(mixed_align_opt=1), "train")
    assert mixed[0]["lrhsi"].shape == (31, 4, 4)
    with pytest.raises(ValueError, match=r"--srf \['ms6'\]: none has --msi_bands 4 bands"):
        build_dataset(synth_cfg(srf=["ms6"]), "train")
    with pytest.raises(ValueError, match="--image_size 30 must be a positive multiple of the scale 4"):
        build_dataset(synth_cfg(image_size=30), "train")
    with pytest.raises(ValueError, match="the test split has no scenes"):
        build_dataset(synth_cfg(synthetic_scenes=[2, 1, 0]), "test")
