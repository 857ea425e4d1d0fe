"""The pansharpening datasets (``data.pansharpening``): PanCollection files as samples (÷ scale, then 2x − 1, lms,
full-resolution samples without gt, the layout and flag checks), the built-in WV3-like scenes (shapes, seeds,
splits), the PanCollection configs on tiny files named as the release names them, and the quick start trained for
one epoch on tiny sizes. The tests write their own h5 files (spec §6.4 "Reader fixture")."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from data import build_dataset
from data.resample import interp23tap
from data.wald import degrade_ms
from engine.flags import resolve_train_config
from engine.loaders import check_dataset

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
QB = 2047.0

pytestmark = pytest.mark.usefixtures("one_thread")


def fixture_gt(bands: int, h: int, w: int, offset: int = 0) -> np.ndarray:
    """The integer fixture of spec §6.4 as (C, H, W) DN: all values < 2048 for 64×64."""
    y, x, b = np.meshgrid(np.arange(h), np.arange(w), np.arange(bands), indexing="ij")
    gt = 600 + ((x - 20 - 2 * b) ** 2 + (y - 24 + b) ** 2) // 4 + (x * y * (b + 1)) % 97 + 40 * b + offset
    return np.moveaxis(gt, -1, 0).astype(np.float64)


def fixture_examples(bands: int = 4, h: int = 64, w: int = 64, n: int = 2, sensor: str = "QB") -> dict:
    """{key: N×C×H×W float64 DN}: gt, ms = MTF + 2::4 of gt, lms = interp23tap(ms), pan (N×1×H×W)."""
    gts = [fixture_gt(bands, h, w, 7 * i) for i in range(n)]
    ms = [degrade_ms(g, sensor) for g in gts]
    yy, xx = np.mgrid[:h, :w]
    pans = [(g.sum(0) // bands + (3 * xx + 5 * yy + i) % 40)[None] for i, g in enumerate(gts)]
    return {"gt": np.stack(gts), "ms": np.stack(ms), "lms": np.stack([interp23tap(m) for m in ms]),
            "pan": np.stack(pans)}


def write_h5(path: Path, examples: dict, full: bool = False, transpose: bool = False) -> Path:
    """A PanCollection .h5 (N×C×H×W as h5py reads the release); ``full``: the FR twin without gt;
    ``transpose``: each array reversed to W×H×C×N (the MATLAB order read without h5py's reversal)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, arr in examples.items():
            if not (full and key == "gt"):
                f[key] = arr.transpose(3, 2, 1, 0) if transpose else arr
    return path


def cfg_for(path: Path, split: str = "test", **kw) -> dict:
    return {"dataset": "pancollection", "sensor": "QB", "bands": 4, "msi_bands": 1, "root": str(path.parent),
            f"{split}_file": path.name, "crop_size": 32, **kw}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("pancollection")
    ex = fixture_examples()
    return {"examples": ex, "rr": write_h5(folder / "test_qb_multiExm1.h5", ex),
            "fr": write_h5(folder / "test_qb_OrigScale_multiExm1.h5", ex, full=True),
            "wide": write_h5(folder / "wide.h5", fixture_examples(h=64, w=48, n=1)),
            "transposed": write_h5(folder / "transposed.h5", ex, transpose=True)}


def signed(dn: np.ndarray, scale: float = QB) -> torch.Tensor:
    """What the samples hold: DN ÷ scale in float32, then 2x − 1."""
    return torch.from_numpy((dn / scale).astype(np.float32) * np.float32(2) - np.float32(1))


def test_reduced_resolution_samples_are_the_file_divided_by_the_scale_then_signed(files):
    ds = build_dataset(cfg_for(files["rr"]), "test")
    assert (ds.task, ds.sensor, ds.full, ds.ratio, len(ds)) == ("pansharpening", "QB", False, 4, 2)
    ex = files["examples"]
    for i in range(2):
        s = ds[i]
        assert set(s) == {"lrhsi", "hrmsi", "gt", "lms", "name", "maxv", "minv"}
        assert (s["maxv"], s["minv"], s["name"]) == (QB, 0.0, f"test_qb_multiExm1_{i:04d}")
        assert s["lrhsi"].shape == (4, 16, 16) and s["hrmsi"].shape == (1, 64, 64)
        assert s["gt"].shape == s["lms"].shape == (4, 64, 64)
        for key, name in (("lrhsi", "ms"), ("hrmsi", "pan"), ("lms", "lms")):
            assert torch.equal(s[key], signed(ex[name][i])), key
        # the GT by the fusion rule with (maxv, minv) = (scale, 0): the same values to float32 rounding
        assert torch.allclose(s["gt"], signed(ex["gt"][i]), rtol=0, atol=2e-7)
        dn = (s["gt"].double() + 1) / 2 * (s["maxv"] - s["minv"]) + s["minv"]
        assert torch.allclose(dn, torch.from_numpy(ex["gt"][i]), rtol=0, atol=1e-3)


def test_a_non_square_example_keeps_its_height_and_width(files):
    s = build_dataset(cfg_for(files["wide"]), "test")[0]
    ex = fixture_examples(h=64, w=48, n=1)
    assert s["gt"].shape == (4, 64, 48) and s["lrhsi"].shape == (4, 16, 12) and s["hrmsi"].shape == (1, 64, 48)
    assert torch.equal(s["lrhsi"], signed(ex["ms"][0])) and torch.equal(s["hrmsi"], signed(ex["pan"][0]))


def test_img_range_overrides_the_sensor_scale(files):
    s = build_dataset(cfg_for(files["rr"], img_range=4095.0), "test")[0]
    assert s["maxv"] == 4095.0 and torch.equal(s["hrmsi"], signed(files["examples"]["pan"][0], 4095.0))
    assert build_dataset(cfg_for(files["rr"], sensor=None, img_range=QB), "test")[0]["maxv"] == QB


def test_full_resolution_samples_have_no_gt_and_the_lms(files):
    ds = build_dataset(cfg_for(files["fr"], resolution="full"), "test")
    s = ds[1]
    assert ds.full and "gt" not in s and s["maxv"] == QB
    assert torch.equal(s["lms"], signed(files["examples"]["lms"][1]))
    check_dataset(ds, {"bands": 4, "msi_bands": 1, "scale": 4}, "test")  # a test split may have no gt
    with pytest.raises(ValueError, match=r"val split .*no GT \(full-resolution data\)"):
        check_dataset(ds, {"bands": 4, "msi_bands": 1, "scale": 4}, "val")


def test_nothing_is_clipped(tmp_path):
    ex = fixture_examples(n=1)
    ex["lms"][0, 0, 0, :2] = (-5.0, 2100.0)  # the 23-tap interpolation overshoots both ends in the release
    s = build_dataset(cfg_for(write_h5(tmp_path / "overshoot.h5", ex)), "test")[0]
    assert s["lms"][0, 0, 0] < -1 and s["lms"][0, 0, 1] > 1
    assert torch.equal(s["lms"], signed(ex["lms"][0]))


def test_the_lms_is_interpolated_when_the_file_has_none(tmp_path):
    ex = fixture_examples(n=1)
    path = write_h5(tmp_path / "nolms.h5", {k: v for k, v in ex.items() if k != "lms"})
    assert torch.equal(build_dataset(cfg_for(path), "test")[0]["lms"], signed(ex["lms"][0]))


@pytest.mark.parametrize(("which", "extra", "split", "message"), [
    ("fr", {}, "test", r"test_qb_OrigScale_multiExm1.h5: a full-resolution file \(no 'gt'\): pass --resolution full"),
    ("fr", {}, "train", r"a full-resolution file \(no 'gt'\): training and validation need reduced-resolution"),
    ("rr", {"resolution": "full"}, "test", r"test_qb_multiExm1.h5: a reduced-resolution file \(has 'gt'\), read "
                                           r"with --resolution full"),
    ("rr", {"resolution": "full"}, "train", r"--resolution full: .*for testing only"),
    ("rr", {"bands": 8}, "test", r"--bands 8: .*test_qb_multiExm1.h5 has 4 MS bands; expected --bands 4"),
    ("rr", {"msi_bands": 3}, "test", r"--msi_bands 3: .*expected --msi_bands 1"),
    ("rr", {"sensor": "WV3", "bands": 8}, "test", r"'ms' has 4 bands, --sensor WV3 has 8"),
    ("rr", {"sensor": None}, "test", r"pass --sensor .* or --img_range"),
    ("rr", {"scale": 2}, "test", r"--scale 2: .* a PAN/MS ratio of 4; expected --scale 4"),
    ("transposed", {}, "test", r"transposed.h5: 'ms' has shape \(16, 16, 4, 2\), expected N×C×h×w .*transposed"),
])
def test_bad_files_and_flags_are_one_clear_error(files, which, extra, split, message):
    with pytest.raises(ValueError, match=message):
        build_dataset(cfg_for(files[which], split=split, **extra), split)


def test_a_missing_file_names_the_flag(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--val_file valid_wv3.h5: no such file"):
        build_dataset(cfg_for(tmp_path / "valid_wv3.h5", split="val"), "val")


def test_training_samples_are_crops_without_lms(files):
    ds = build_dataset(cfg_for(files["rr"], split="train"), "train")
    s = ds[0]
    assert set(s) == {"lrhsi", "hrmsi", "gt", "name", "maxv", "minv"}
    assert s["gt"].shape == (4, 32, 32) and s["lrhsi"].shape == (4, 8, 8) and s["hrmsi"].shape == (1, 32, 32)
    whole = build_dataset(cfg_for(files["rr"], split="train", crop_size=64), "train")[1]
    # a crop of the whole tile is the tile up to a flip/rotation: the same values
    assert torch.equal(whole["gt"].flatten().sort().values, build_dataset(cfg_for(files["rr"]), "test")[1]["gt"]
                       .flatten().sort().values)


# ---------------------------------------------------------------------------------------------------------------------
# The built-in scenes through the WV3-like sensor

SYNTHETIC = {"dataset": "synthetic_pan", "bands": 8, "msi_bands": 1, "image_size": 64, "crop_size": 8,
             "synthetic_scenes": [2, 2, 1], "data_seed": 3}


def test_synthetic_pan_shapes_at_both_resolutions():
    rr = build_dataset(SYNTHETIC, "val")
    s = rr[0]
    assert (rr.task, rr.sensor, rr.full) == ("pansharpening", "WV3", False)
    assert s["gt"].shape == s["lms"].shape == (8, 16, 16) and s["lrhsi"].shape == (8, 4, 4)
    assert s["hrmsi"].shape == (1, 16, 16) and (s["maxv"], s["minv"]) == (2047.0, 0.0)
    fr = build_dataset({**SYNTHETIC, "resolution": "full"}, "test")[0]
    assert "gt" not in fr and fr["lrhsi"].shape == (8, 16, 16) and fr["hrmsi"].shape == (1, 64, 64)
    assert fr["lms"].shape == (8, 64, 64)
    dn = (fr["hrmsi"].double() + 1) / 2 * 2047  # integer DN of the acquisition
    assert torch.allclose(dn, dn.round(), atol=1e-3)
    train = build_dataset(SYNTHETIC, "train")[0]
    assert train["gt"].shape == (8, 8, 8) and "lms" not in train


def test_synthetic_pan_is_a_function_of_the_data_seed_and_the_splits_differ():
    a, b = build_dataset(SYNTHETIC, "val"), build_dataset(SYNTHETIC, "val")
    assert torch.equal(a[1]["gt"], b[1]["gt"]) and torch.equal(a[1]["hrmsi"], b[1]["hrmsi"])
    other = build_dataset({**SYNTHETIC, "data_seed": 4}, "val")
    assert not torch.equal(a[1]["gt"], other[1]["gt"])
    test = build_dataset(SYNTHETIC, "test")
    gts = [a[0]["gt"], a[1]["gt"], test[0]["gt"]]
    assert all(not torch.equal(x, y) for i, x in enumerate(gts) for y in gts[i + 1:])


@pytest.mark.parametrize(("extra", "message"), [
    ({"bands": 4}, r"--bands 4: --sensor WV3 has 8 MS bands; expected --bands 8"),
    ({"msi_bands": 3}, r"expected --msi_bands 1"),
    ({"image_size": 40}, r"--image_size 40: .*multiple of 16"),
    ({"sensor": "QB", "bands": 4}, r"--sensor QB: no spectral bands known"),
])
def test_synthetic_pan_flag_errors(extra, message):
    with pytest.raises(ValueError, match=message):
        build_dataset({**SYNTHETIC, **extra}, "val")[0]


# ---------------------------------------------------------------------------------------------------------------------
# Configs


@pytest.mark.parametrize(("name", "sensor", "bands", "scale"), [("wv3", "WV3", 8, 2047.0), ("qb", "QB", 4, 2047.0),
                                                                ("gf2", "GF2", 4, 1023.0)])
def test_pancollection_configs_build_their_datasets(tmp_path, name, sensor, bands, scale):
    path = CONFIGS / f"pancollection_{name}.yaml"
    cfg = resolve_train_config(str(path), {"root": str(tmp_path)})
    assert (cfg["dataset"], cfg["sensor"], cfg["bands"], cfg["msi_bands"]) == ("pancollection", sensor, bands, 1)
    assert (cfg["crop_size"], cfg["batch_size"]) == (64, 32)
    assert (cfg["train_file"], cfg["val_file"], cfg["test_file"]) == \
        (f"train_{name}.h5", f"valid_{name}.h5", f"test_{name}_multiExm1.h5")
    ex = fixture_examples(bands=bands, n=1, sensor=sensor)
    for split in ("train", "val", "test"):
        write_h5(tmp_path / cfg[f"{split}_file"], ex)
        s = build_dataset(cfg, split)[0]
        check_dataset(build_dataset(cfg, split), cfg, split)
        assert s["gt"].shape == (bands, 64, 64) and s["maxv"] == scale  # crop 64: the whole tile


def test_pansharpening_quick_start_trains_one_epoch_on_tiny_sizes(tmp_path):
    from engine.train import train

    tiny = {"image_size": 64, "crop_size": 8, "synthetic_scenes": [2, 1, 1], "epochs": 1, "num_base_chs": 8,
            "num_agg_feat": 4, "student_layers": "1111", "teacher_layers": "1111", "tb_scenes": 1,
            "checkpoint_dir": str(tmp_path / "ck"), "log_dir": str(tmp_path / "runs"), "no_progress": True}
    cfg = resolve_train_config(str(CONFIGS / "pansharpening_quickstart.yaml"), tiny)
    assert (cfg["dataset"], cfg["sensor"], cfg["bands"], cfg["msi_bands"], cfg["kd_mode"]) == \
        ("synthetic_pan", "WV3", 8, 1, "online")
    train(cfg)
    run = tmp_path / "ck" / cfg["prefix"]
    assert (run / "teacher" / "best.pth").is_file() and (run / "student" / "best.pth").is_file()
