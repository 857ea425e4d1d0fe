"""Realistic scenes of measured spectra (data/realistic.py): determinism, ranges, the camera HR-MSI against an
independent integration of colour-science's measured tables, scene-disjoint splits (in memory and through
data.prepare), and clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

colour = pytest.importorskip("colour", reason="optional dependency colour-science (requirements-realistic.txt)")

from data import build_dataset  # noqa: E402
from data.prepare import main as prepare_main  # noqa: E402
from data.realistic import make_realistic_scene, reflectance_library  # noqa: E402
from data.sensors import camera_srf, resolve_srf  # noqa: E402
from data.spectral import visible31_wavelengths  # noqa: E402

WL = visible31_wavelengths()
TINY = {"dataset": "realistic", "bands": 31, "wavelengths": "visible31", "msi_bands": 3,
        "srf": ["camera:nikon5100@D65"], "image_size": 16, "crop_size": 8, "synthetic_scenes": [3, 2, 2],
        "seed": 5, "snr_hsi": 0.0, "snr_msi": 0.0}


@pytest.fixture(scope="module")
def library() -> np.ndarray:
    return reflectance_library(WL)[0]


def test_library_holds_measured_reflectances():
    spectra, names = reflectance_library(WL)
    assert spectra.shape[1] == 31 and spectra.shape[0] > 200 and len(set(names)) == len(names) == len(spectra)
    assert spectra.min() >= 0 and spectra.max() <= 1
    # The BabelColor average "white 9.5" patch is bright and flat above 450 nm: a spot check of the resampling.
    white = spectra[names.index("ColorChecker (BabelColor average)/white 9.5 (.05 D)")][WL >= 450]
    assert 0.8 < white.min() and white.max() < 0.95 and white.max() - white.min() < 0.1


def test_scenes_are_deterministic_in_range_and_structured(library):
    a = make_realistic_scene(7, (24, 32), WL, library)
    assert a.shape == (24, 32, 31) and a.dtype == np.float32
    assert np.array_equal(a, make_realistic_scene(7, (24, 32), WL, library))
    assert np.array_equal(a, make_realistic_scene(7, (24, 32), WL))  # the library is loaded the same way
    assert not np.array_equal(a, make_realistic_scene(8, (24, 32), WL, library))
    assert a.min() >= 0 and a.max() <= 1
    # Several materials, not one spectrum: distinct spectral shapes across the scene.
    shapes = a.reshape(-1, 31) / np.linalg.norm(a.reshape(-1, 31), axis=1, keepdims=True)
    assert np.unique(np.round(shapes, 2), axis=0).shape[0] > 20


def independent_camera_srf(camera: str, illuminant: str) -> np.ndarray:
    """S_m(λ)·E(λ) read directly at the 10 nm band centres from colour-science's tables (which hold them)."""
    sens = colour.MSDS_CAMERA_SENSITIVITIES[camera]
    light = colour.SDS_ILLUMINANTS[illuminant]
    s_at = dict(zip(sens.domain.tolist(), sens.values.tolist(), strict=True))
    e_at = dict(zip(light.domain.tolist(), light.values.tolist(), strict=True))
    r = np.array([[s_at[w][m] * e_at[w] for w in WL] for m in range(3)])
    return r / r.sum(axis=1, keepdims=True)


def test_hrmsi_is_the_camera_integration_of_the_gt():
    r = independent_camera_srf("Nikon 5100 (NPL)", "A")
    np.testing.assert_allclose(camera_srf("nikon5100", WL, "A"), r, rtol=1e-12)
    ds = build_dataset({**TINY, "srf": ["camera:nikon5100@A"]}, "test")
    for i in range(len(ds)):
        sample = ds[i]
        gt, msi = sample["gt"].double().numpy(), sample["hrmsi"].double().numpy()
        # Both are min-max normalised with the GT's min/max and every SRF row sums to 1, so the normalised
        # HR-MSI is the normalised GT seen through the SRF.
        np.testing.assert_allclose(msi, np.einsum("mc,chw->mhw", r, gt), atol=2e-6)
        assert sample["lrhsi"].shape == (31, 4, 4)


def test_camera_srf_spec_and_errors():
    r, desc = resolve_srf("camera:sigma_sdmerrill", WL)
    assert desc == "camera:sigma_sdmerrill@D65" and r.shape == (3, 31)
    np.testing.assert_allclose(r.sum(axis=1), 1.0)
    assert np.all(r[:, WL > 680] == 0)  # the Sigma table stops at 680 nm: no response beyond
    with pytest.raises(ValueError, match="unknown camera; expected one of"):
        resolve_srf("camera:canon", WL)
    with pytest.raises(ValueError, match="unknown illuminant"):
        resolve_srf("camera:nikon5100@D99", WL)
    with pytest.raises(ValueError, match="visible-only"):
        reflectance_library(np.linspace(400, 1000, 31))


def test_missing_colour_science_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "colour", None)  # import colour now raises ImportError
    with pytest.raises(ValueError, match=r"requirements-realistic\.txt"):
        reflectance_library(WL)


def test_in_memory_splits_are_scene_disjoint():
    flat = []
    for split in ("train", "val", "test"):
        ds = build_dataset(TINY, split)
        flat += [ds.load(i, 0)[1] for i in range(len(ds))]  # whole scenes (the training split serves crops)
    assert len(flat) == sum(TINY["synthetic_scenes"])
    for i, a in enumerate(flat):
        assert not any(np.allclose(a, b) for b in flat[i + 1:])


def test_prepare_writes_realistic_scenes_split_by_scene(tmp_path, capsys):
    out = tmp_path / "ds"
    assert prepare_main(["--realistic", "5", "--synthetic_size", "32", "--bands", "31", "--wavelengths",
                         "visible31", "--srf", "camera:nikon5100@D65", "--tile", "16", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    scenes = manifest["scenes"]
    assert sorted(n for names in scenes.values() for n in names) == [f"realistic{i:03d}" for i in range(5)]
    for split, names in scenes.items():
        entries = (out / f"{split}.txt").read_text().split()
        assert {e.split("/")[1].rsplit("_", 1)[0] for e in entries} == set(names)
        assert len(entries) == 4 * len(names)  # 2 × 2 tiles of 16 per 32×32 scene
    assert manifest["srf"][0]["srf"] == "camera:nikon5100@D65"
    cfg = {"dataset": "aviris", "root": str(out), "train_file": "train.txt", "val_file": "val.txt",
           "test_file": "test.txt", "bands": 31, "msi_bands": 3, "image_size": 16, "crop_size": 8}
    assert build_dataset(cfg, "test")[0]["hrmsi"].shape == (3, 16, 16)


def test_realistic_config_builds_its_data():
    import train_CSAKD

    config = Path(__file__).resolve().parents[1] / "configs" / "realistic31_rgb.yaml"
    cfg = train_CSAKD.load_config(["--config", str(config)])
    ds = build_dataset(cfg, "val")
    sample = ds[0]
    assert len(ds) == 4 and sample["name"] == "realistic/val_0000"
    assert sample["lrhsi"].shape == (31, 16, 16) and sample["hrmsi"].shape == (3, 64, 64)
