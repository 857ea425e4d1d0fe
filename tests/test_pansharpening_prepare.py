"""``data.prepare --pairs``: own full-resolution PAN + MS acquisitions → PanCollection files
(``data.prepare_pancollection``).

The acquisitions are small integer (and one float) DN images written here in the formats a researcher has (.npy,
.tif, one .mat holding both images); the files are read back with ``data.pancollection.PanCollectionFile`` and
every example is compared with ``data.wald`` applied to the whole acquisition.
"""

import hashlib
import json
import os

import numpy as np
import pytest
import scipy.io
import tifffile

from data import prepare as prepare_cli
from data.pancollection import PanCollectionFile, read_examples
from data.resample import interp23tap
from data.sensors import get_sensor
from data.synthetic import make_scene
from data.wald import degrade_ms, degrade_pan, reduced_resolution_example, scene_acquisition

TILES = ["--train_tile", "16", "--train_overlap", "8"]  # small acquisitions: 16-px RR tiles every 8 px


def _pair(seed: int, h: int, w: int, bands: int = 8, dtype=np.uint16) -> tuple[np.ndarray, np.ndarray]:
    """An MS (h, w, bands) and a PAN (4h, 4w) of smooth integer DN in 100…1900 plus texture (as stored: H×W×C)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : 4 * h, 0 : 4 * w] / (4.0 * max(h, w))
    pan = 1000 + 600 * np.sin(6 * yy + 3 * xx + seed) + rng.integers(0, 200, yy.shape)
    ms = np.stack([pan[2::4, 2::4] * (0.5 + 0.05 * b) + rng.integers(0, 80, (h, w)) for b in range(bands)], -1)
    return ms.astype(dtype), pan.astype(dtype)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict:
    """Five acquisitions (two train, one valid, two test) and their list file; returns {name: (ms C×h×w, pan)}."""
    d = tmp_path_factory.mktemp("acq")
    images = {"t0": _pair(0, 40, 40), "t1": _pair(1, 36, 44), "v0": _pair(2, 32, 32), "s0": _pair(3, 32, 32)}
    ms, pan = _pair(4, 32, 32, dtype=np.float64)
    images["s1"] = (ms + 0.123456789, pan + 1 / 3)  # float DN: the FR file must keep every bit
    np.save(d / "t0_ms.npy", images["t0"][0])
    tifffile.imwrite(d / "t0_pan.tif", images["t0"][1])
    scipy.io.savemat(d / "t1.mat", {"ms": images["t1"][0], "pan": images["t1"][1]})
    for name in ("v0", "s0", "s1"):
        np.save(d / f"{name}_ms.npy", images[name][0])
        np.save(d / f"{name}_pan.npy", images[name][1])
    (d / "pairs.txt").write_text("# split  MS  PAN\n"
                                 "train t0_ms.npy t0_pan.tif\n"
                                 "train t1.mat    t1.mat   # both images in one .mat: --ms_key/--pan_key\n\n"
                                 "valid v0_ms.npy v0_pan.npy\n"
                                 "test  s0_ms.npy s0_pan.npy\n"
                                 f"test  {d / 's1_ms.npy'} s1_pan.npy\n")
    return {"dir": d, **{k: (np.moveaxis(m, -1, 0).astype(np.float64), p[None].astype(np.float64))
                         for k, (m, p) in images.items()}}


def _run(sources, out, *extra) -> int:
    return prepare_cli.main(["--pairs", str(sources["dir"] / "pairs.txt"), "--sensor", "WV3", "--ms_key", "ms",
                             "--pan_key", "pan", *TILES, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def prepared(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "own_wv3"
    assert _run(sources, out) == 0
    return out


def _examples(path) -> dict[str, np.ndarray]:
    return read_examples(str(path))[0]


def _tile(img: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    return img[:, y : y + size, x : x + size]


def test_files_have_the_pancollection_layout(prepared):
    m = json.loads((prepared / "manifest.json").read_text())
    assert sorted(p for p in os.listdir(prepared) if p.endswith(".h5")) == sorted(m["files"]) == [
        "test_wv3_OrigScale_multiExm1.h5", "test_wv3_multiExm1.h5", "train_wv3.h5", "valid_wv3.h5"]
    # 40×40 → 4×4 tiles, 36×44 cropped to 32×40 → 3×4, valid 32×32 → 3×3, two whole test acquisitions
    expected = {"train_wv3.h5": (28, 16), "valid_wv3.h5": (9, 16), "test_wv3_multiExm1.h5": (2, 32)}
    for name, (n, size) in expected.items():
        f = PanCollectionFile(str(prepared / name), sensor="WV3")
        assert (len(f), f.keys, f.full, f.ratio) == (n, ("gt", "ms", "lms", "pan"), False, 4)
        ex = f.example(n - 1)
        assert {k: v.shape for k, v in ex.items()} == {"gt": (8, size, size), "ms": (8, size // 4, size // 4),
                                                        "lms": (8, size, size), "pan": (1, size, size)}
        assert f[0]["gt"].dtype == np.float32 and np.allclose(f[0]["gt"] * 2047, f.example(0)["gt"], rtol=1e-6)
    full = PanCollectionFile(str(prepared / "test_wv3_OrigScale_multiExm1.h5"), sensor="WV3")
    assert (len(full), full.keys, full.full) == (2, ("ms", "lms", "pan"), True)
    assert {k: v.shape for k, v in full.example(1).items()} == {"ms": (8, 32, 32), "lms": (8, 128, 128),
                                                                "pan": (1, 128, 128)}
    import h5py

    with h5py.File(prepared / "train_wv3.h5") as f:  # as MATLAB's PanCollection files: float64 N×C×H×W
        assert {k: (f[k].dtype, f[k].shape) for k in f} == {
            "gt": (np.float64, (28, 8, 16, 16)), "ms": (np.float64, (28, 8, 4, 4)),
            "lms": (np.float64, (28, 8, 16, 16)), "pan": (np.float64, (28, 1, 16, 16))}


def test_reduced_resolution_tiles_are_walds_protocol_of_the_whole_acquisition(prepared, sources):
    m = json.loads((prepared / "manifest.json").read_text())
    train = _examples(prepared / "train_wv3.h5")
    for src in m["files"]["train_wv3.h5"]["sources"]:
        ms, pan = sources[src["acquisition"].split("_")[0]]
        h, w = (s - s % 8 for s in ms.shape[1:])
        ms, pan = ms[:, :h, :w], pan[:, : 4 * h, : 4 * w]
        ms_lr, pan_lr = degrade_ms(ms, "WV3"), degrade_pan(pan, "WV3")
        lms = interp23tap(ms_lr)
        origins = [(y, x) for y in src["tile_rows_y"] for x in src["tile_cols_x"]]
        assert len(origins) == src["count"]
        for i, (y, x) in enumerate(origins, src["first"]):
            np.testing.assert_array_equal(train["gt"][i], _tile(ms, y, x, 16))  # the MS itself
            np.testing.assert_array_equal(train["ms"][i], _tile(ms_lr, y // 4, x // 4, 4))
            np.testing.assert_array_equal(train["lms"][i], _tile(lms, y, x, 16))
            np.testing.assert_array_equal(train["pan"][i], _tile(pan_lr, y, x, 16))
    assert [s["tile_rows_y"] for s in m["files"]["train_wv3.h5"]["sources"]] == [[0, 8, 16, 24], [0, 8, 16]]
    test = _examples(prepared / "test_wv3_multiExm1.h5")
    for i, name in enumerate(("s0", "s1")):
        rr = reduced_resolution_example(*sources[name], "WV3")
        for key in ("gt", "ms", "lms", "pan"):
            np.testing.assert_array_equal(test[key][i], rr[key])


def test_full_resolution_examples_are_the_acquisitions_bit_for_bit(prepared, sources):
    fr = _examples(prepared / "test_wv3_OrigScale_multiExm1.h5")
    assert "gt" not in fr
    for i, name in enumerate(("s0", "s1")):
        ms, pan = sources[name]
        assert fr["ms"][i].tobytes() == ms.tobytes() and fr["pan"][i].tobytes() == pan.tobytes()
        np.testing.assert_array_equal(fr["lms"][i], interp23tap(ms))
    assert fr["ms"][1, 0, 0, 0] % 1 != 0  # the float acquisition kept its fractions


def test_manifest_records_sensor_protocol_inputs_and_checksums(prepared, sources):
    m = json.loads((prepared / "manifest.json").read_text())
    wv3 = get_sensor("WV3")
    assert (m["sensor"], m["bands"], m["bits"], m["scale"], m["ratio"], m["pan_blur"]) == ("WV3", 8, 11, 2047.0, 4,
                                                                                           "bicubic")
    assert m["gnyq_ms"] == list(wv3.gnyq_ms) and m["gnyq_pan"] == wv3.gnyq_pan
    assert (m["train_tile"], m["train_overlap"], m["train_stride"], m["test_tile"]) == (16, 8, 8, 0)
    acq = {a["name"]: a for a in m["acquisitions"]}
    assert [(a["name"], a["split"]) for a in m["acquisitions"]] == [
        ("t0_ms", "train"), ("t1", "train"), ("v0_ms", "valid"), ("s0_ms", "test"), ("s1_ms", "test")]
    assert acq["t1"]["ms_shape_used"] == [8, 32, 40] and acq["t1"]["pan_shape_used"] == [1, 128, 160]
    assert acq["s0_ms"]["examples"] == {"test": 1, "test_full": 1}
    for a in m["acquisitions"]:
        for key in ("ms", "pan"):
            assert a[f"{key}_sha256"] == hashlib.sha256(open(a[key], "rb").read()).hexdigest()
    for name, record in m["files"].items():
        assert record["sha256"] == hashlib.sha256((prepared / name).read_bytes()).hexdigest()
    assert m["notes"] == []


def test_rerun_gives_the_same_bytes(prepared, sources, tmp_path):
    assert _run(sources, tmp_path / "again") == 0
    for name in json.loads((prepared / "manifest.json").read_text())["files"]:
        assert (tmp_path / "again" / name).read_bytes() == (prepared / name).read_bytes(), name


def test_built_in_scene_pancollection_tiles_mtf_pan_and_test_tiles(tmp_path):
    """A WV3-like acquisition of a built-in scene (data.wald.scene_acquisition) and a taller integer one with
    PanCollection's 64/16 tiles, the PAN by its MTF, test examples in 32-px tiles; a split without acquisitions
    gets no file."""
    wl = np.arange(400, 1041, 20)
    ms, pan = scene_acquisition(make_scene(5, 256, wl), wl, "WV3")  # MS 8×64×64, PAN 256×256, integer DN
    np.save(tmp_path / "scene_ms.npy", ms)  # C×H×W, as PanCollection stores it: --layout chw
    np.save(tmp_path / "scene_pan.npy", pan[0])
    tall_ms, tall_pan = _pair(10, 112, 64)
    np.save(tmp_path / "tall_ms.npy", np.moveaxis(tall_ms, -1, 0))
    np.save(tmp_path / "tall_pan.npy", tall_pan)
    test_ms, test_pan = _pair(11, 32, 32)
    np.save(tmp_path / "test_ms.npy", np.moveaxis(test_ms, -1, 0))
    np.save(tmp_path / "test_pan.npy", test_pan)
    (tmp_path / "pairs.txt").write_text("train scene_ms.npy scene_pan.npy\ntrain tall_ms.npy tall_pan.npy\n"
                                        "test test_ms.npy test_pan.npy\n")
    assert prepare_cli.main(["--pairs", str(tmp_path / "pairs.txt"), "--sensor", "WV3", "--layout", "chw",
                             "--pan_blur", "mtf", "--test_tile", "32", "--name", "own",
                             "--out", str(tmp_path / "o")]) == 0
    out = tmp_path / "o"
    assert sorted(p for p in os.listdir(out) if p.endswith(".h5")) == [
        "test_own_OrigScale_multiExm1.h5", "test_own_multiExm1.h5", "train_own.h5"]
    train = _examples(out / "train_own.h5")
    assert train["gt"].shape == (3, 8, 64, 64) and train["ms"].shape == (3, 8, 16, 16)  # 1 + 2 (y 0, 48) tiles
    np.testing.assert_array_equal(train["gt"][0], ms)
    np.testing.assert_array_equal(train["pan"][0], degrade_pan(pan, "WV3", pan_blur="mtf"))
    tall = np.moveaxis(tall_ms, -1, 0).astype(np.float64)
    np.testing.assert_array_equal(train["gt"][2], tall[:, 48:112])
    np.testing.assert_array_equal(train["ms"][2], degrade_ms(tall, "WV3")[:, 12:28])
    m = json.loads((out / "manifest.json").read_text())
    assert (m["train_stride"], m["pan_blur"]) == (48, "mtf")
    assert m["notes"] == ["split 'valid' has no acquisition: no valid_own.h5 written"]
    rr, full = _examples(out / "test_own_multiExm1.h5"), _examples(out / "test_own_OrigScale_multiExm1.h5")
    assert rr["gt"].shape == (1, 8, 32, 32) and full["pan"].shape == (16, 1, 32, 32)  # FR 128×128 in 32-px tiles
    np.testing.assert_array_equal(full["ms"][5], np.moveaxis(test_ms, -1, 0)[:, 8:16, 8:16])  # row 1, column 1
    np.testing.assert_array_equal(full["pan"][5], test_pan[None, 32:64, 32:64])


def test_an_acquisition_in_two_places_is_refused(tmp_path, capsys):
    ms, pan = _pair(12, 32, 32)
    np.save(tmp_path / "ms.npy", ms)
    np.save(tmp_path / "pan.npy", pan)
    np.save(tmp_path / "copy_ms.npy", ms)
    for line, message in (("test ms.npy pan.npy\n", "pairs.txt:2: MS file"),
                          ("test copy_ms.npy pan.npy\n", "pairs.txt:2: PAN file"),
                          ("test copy_ms.npy other_pan.npy\n", "the same bytes as the input")):
        np.save(tmp_path / "other_pan.npy", pan)
        (tmp_path / "pairs.txt").write_text("train ms.npy pan.npy\n" + line)
        assert prepare_cli.main(["--pairs", str(tmp_path / "pairs.txt"), "--sensor", "WV3", *TILES,
                                 "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert message in err, err


def _bad(tmp_path, ms, pan, *extra, line="train ms.npy pan.npy\n"):
    np.save(tmp_path / "ms.npy", ms)
    np.save(tmp_path / "pan.npy", pan)
    (tmp_path / "pairs.txt").write_text(line)
    return prepare_cli.main(["--pairs", str(tmp_path / "pairs.txt"), "--sensor", "WV3", *TILES,
                             "--out", str(tmp_path / "out"), *extra])


_MS, _PAN = _pair(7, 16, 16)
_NAN = _MS.astype(np.float64)
_NAN[3, 4, 5] = np.nan


@pytest.mark.parametrize("ms, pan, extra, line, message", [
    (_MS, _PAN, (), "train ms.npy missing_pan.tif\n", "pairs.txt:1: PAN file"),
    (_MS, _PAN[:-4], (), None, "pan.npy is 60×64, expected 64×64 (4 × the MS 16×16"),
    (_MS[..., :4], _PAN, (), None, "ms.npy has 4 bands"),
    (np.zeros((16, 16, 224), np.uint16), _PAN, (), None, "224 bands (shape (16, 16) × 224 as H×W×C), --sensor WV3 "
                                                          "has 8: a hyperspectral cube?"),
    (np.moveaxis(_MS, -1, 0), _PAN, (), None, "a C×H×W file? pass --layout chw"),
    (_NAN, _PAN, (), None, "ms.npy: the image has 1 NaN/Inf value(s)"),
    (_MS, np.stack([_PAN] * 3, -1), (), None, "pan.npy has shape (64, 64) × 3 bands, expected one band"),
    (_MS, _PAN, ("--train_tile", "32"), None, "16×16 pixels (after cropping to multiples of 8), smaller than "
                                              "--train_tile 32"),
    (_MS, _PAN, (), "test ms.npy pan.npy\n", "smaller than 32 pixels (a whole test example"),
    (_MS, _PAN, (), "training ms.npy pan.npy\n", "pairs.txt:1: expected 'SPLIT MS_FILE PAN_FILE'"),
    (_MS, _PAN, (), "# nothing\n", "lists no acquisition"),
    (_MS, _PAN, ("--srf", "rgb"), None, "--srf: do(es) not apply to --pairs"),
    (_MS, _PAN, ("--train_overlap", "16"), None, "--train_tile 16 and --train_overlap 16"),
    (_MS, _PAN, ("--test_tile", "48"), None, "--test_tile 48: expected 0 (whole acquisitions) or a multiple of 32"),
    (_MS[..., :4], _PAN, ("--sensor", "GF2", "--pan_blur", "mtf"), None, "sensor GF2 has no PAN MTF gain"),
    (_MS, _PAN, ("--name", "../wv3"), None, "--name '../wv3': expected a file name tag"),
    (_MS, _PAN, (), "train ms.npy 'pan.npy\n", "pairs.txt:1: cannot parse"),
])
def test_bad_input_is_one_message_and_writes_nothing(tmp_path, capsys, ms, pan, extra, line, message):
    assert _bad(tmp_path, ms, pan, *extra, line=line or "train ms.npy pan.npy\n") == 2
    err = capsys.readouterr().err
    assert message in err, err
    errors = [line for line in err.splitlines() if "error" in line]  # beside the progress bar
    assert len(errors) == 1 and errors[0].startswith("data.prepare: error: ") and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".out")]


def test_a_failure_at_the_last_acquisition_leaves_nothing(tmp_path, capsys):
    """The whole output or nothing: the first acquisition is written, the second fails (test sizes differ)."""
    big_ms, big_pan = _pair(8, 32, 32)
    np.save(tmp_path / "a_ms.npy", big_ms)
    np.save(tmp_path / "a_pan.npy", big_pan)
    np.save(tmp_path / "b_ms.npy", _pair(9, 40, 40)[0])
    np.save(tmp_path / "b_pan.npy", _pair(9, 40, 40)[1])
    (tmp_path / "pairs.txt").write_text("test a_ms.npy a_pan.npy\ntest b_ms.npy b_pan.npy\n")
    rc = prepare_cli.main(["--pairs", str(tmp_path / "pairs.txt"), "--sensor", "WV3", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "pairs.txt:2: its reduced 'gt' is 8×40×40, the first example of test_wv3_multiExm1.h5 is " \
                      "8×32×32" in err and "pass --test_tile" in err
    assert not (tmp_path / "o").exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".o")]


def test_hsi_flags_and_pansharpening_flags_do_not_mix(tmp_path, capsys):
    assert prepare_cli.main(["--synthetic", "1", "--bands", "31", "--sensor", "WV3", "--out", str(tmp_path)]) == 2
    assert "--sensor: do(es) not apply to HSI fusion data (give --pairs" in capsys.readouterr().err
    (tmp_path / "pairs.txt").write_text("train a.npy b.npy\n")
    assert prepare_cli.main(["cube.mat", "--pairs", str(tmp_path / "pairs.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "the inputs cube.mat: do(es) not apply to --pairs" in capsys.readouterr().err
    assert prepare_cli.main(["--pairs", str(tmp_path / "pairs.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "--pairs needs --sensor (one of QB, IKONOS, GeoEye1, WV2, WV3, GF2)" in capsys.readouterr().err


def test_a_file_holding_both_images_needs_the_keys_and_values_beyond_the_scale_are_noted(tmp_path, capsys):
    ms, pan = _pair(13, 32, 32, bands=4)
    scipy.io.savemat(tmp_path / "both.mat", {"ms": ms * 2, "pan": pan})  # DN up to ~3200 for an 11-bit sensor
    (tmp_path / "pairs.txt").write_text("train both.mat both.mat\n")
    args = ["--pairs", str(tmp_path / "pairs.txt"), "--sensor", "QB", "--out", str(tmp_path / "o"), *TILES]
    assert prepare_cli.main(args) == 2
    assert "both.mat: several 2-D or 3-D arrays ['ms', 'pan']; pass --ms_key to choose the image" in \
        capsys.readouterr().err
    assert prepare_cli.main([*args, "--ms_key", "ms", "--pan_key", "pan"]) == 0
    err = capsys.readouterr().err
    assert "note: " in err and "MS values" in err and "leave 0…2047, the QB scale" in err
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert len(m["notes"]) == 3 and m["acquisitions"][0]["ms_range"][1] == float((ms * 2).max())  # + no valid/test


def test_score_reads_the_prepared_test_files(prepared, tmp_path, capsys):
    """``test_CSAKD.py --score`` scores the EXP baseline (lms) against both test files as written."""
    import h5py

    import test_CSAKD

    for name, mode, metric in (("test_wv3_multiExm1.h5", "reduced", "q2n"),
                               ("test_wv3_OrigScale_multiExm1.h5", "full", "hqnr")):
        with h5py.File(tmp_path / f"exp_{name}", "w") as f:
            f.create_dataset("fused", data=_examples(prepared / name)["lms"])
        out = tmp_path / f"{mode}.json"
        assert test_CSAKD.main(["--score", str(tmp_path / f"exp_{name}"), "--reference", str(prepared / name),
                                "--sensor", "WV3", "--json", str(out)]) == 0, capsys.readouterr().err
        result = json.loads(out.read_text())
        assert (result["mode"], result["images"]) == (mode, 2) and 0 < result["metrics"][metric] <= 1


def test_ctrl_c_while_preparing_leaves_nothing(sources, tmp_path, monkeypatch, capsys):
    import signal

    import data.prepare_pancollection as pc

    real = pc.reduced_resolution_example

    def interrupted(*a, **k):  # Ctrl-C during the second acquisition, after the first one's tiles are written
        if interrupted.calls == 1:
            os.kill(os.getpid(), signal.SIGINT)
        interrupted.calls += 1
        return real(*a, **k)

    interrupted.calls = 0
    monkeypatch.setattr(pc, "reduced_resolution_example", interrupted)
    out = tmp_path / "o"
    assert _run(sources, out) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        f"data.prepare: interrupted by SIGINT: no dataset was written ({out} appears whole or not at all)")
    assert os.listdir(tmp_path) == []


def test_dataset_pancollection_reads_the_prepared_files(prepared):
    """``--dataset pancollection`` (data/pansharpening.py, issue 20 item 1) reads every file as written."""
    pytest.importorskip("data.pansharpening", reason="--dataset pancollection is not on this branch yet")
    from data import build_dataset

    cfg = {"dataset": "pancollection", "sensor": "WV3", "bands": 8, "msi_bands": 1, "root": str(prepared),
           "crop_size": 16, "train_file": "train_wv3.h5", "val_file": "valid_wv3.h5",
           "test_file": "test_wv3_multiExm1.h5"}
    sizes = {"train": (28, 16), "val": (9, 16), "test": (2, 32)}
    for split, (n, size) in sizes.items():
        ds = build_dataset(cfg, split)
        assert (len(ds), ds.task, ds.full, tuple(ds[0]["gt"].shape)) == (n, "pansharpening", False, (8, size, size))
    full = build_dataset({**cfg, "test_file": "test_wv3_OrigScale_multiExm1.h5", "resolution": "full"}, "test")
    assert full.full and "gt" not in full[0] and tuple(full[0]["hrmsi"].shape) == (1, 128, 128)
