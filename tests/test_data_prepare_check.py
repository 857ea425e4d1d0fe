"""``data.prepare`` (reproducible, split by scene, atomic) and ``data.check`` (reports every problem)."""

import json
import os

import numpy as np
import pytest

from data import build_dataset
from data import check as check_cli
from data import prepare as prepare_cli
from utils.fileio import atomic_write

SYNTH = ["--synthetic", "5", "--synthetic_size", "32", "--bands", "31", "--tile", "16", "--snr_hsi", "35",
         "--snr_msi", "40"]


def run_prepare(out, *extra):
    return prepare_cli.main([*SYNTH, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "ds"
    assert run_prepare(out) == 0
    return out


def test_layout_manifest_and_split_by_scene(prepared):
    m = json.loads((prepared / "manifest.json").read_text())
    scenes = m["scenes"]
    assert sum(len(v) for v in scenes.values()) == 5 and all(scenes[s] for s in scenes)
    assert not (set(scenes["train"]) & set(scenes["val"]) or set(scenes["train"]) & set(scenes["test"]))
    for split in ("train", "val", "test"):
        entries = (prepared / f"{split}.txt").read_text().split()
        assert len(entries) == m["entries"][split] == 4 * len(scenes[split])  # 32² scene -> 4 tiles of 16²
        assert {e.split("/")[1].rsplit("_", 1)[0] for e in entries} == set(scenes[split])
    for rel, digest in m["files_sha256"].items():
        assert (prepared / rel).is_file() and len(digest) == 64
    deg = m["degradation"]
    assert deg["blur"] == "gaussian" and deg["phase"] == 2 and deg["snr_hsi"] == 35 and deg["kernel_size"] == 13
    assert {s["srf"] for s in m["srf"]} == {"ms4", "ms6"} and m["seed"] == 1029
    assert len(m["srf"][0]["matrix"]) == 4 and len(m["srf"][0]["matrix"][0]) == 31
    assert not [p for p in os.listdir(prepared / "train") if p.endswith(".tmp")]


def test_rerun_reproduces_the_same_files(prepared, tmp_path):
    assert run_prepare(prepared, "--overwrite") == 0
    first = json.loads((prepared / "manifest.json").read_text())["files_sha256"]
    other = tmp_path / "again"
    assert run_prepare(other) == 0
    second = json.loads((other / "manifest.json").read_text())["files_sha256"]
    assert first == second


def test_reader_and_check_accept_the_prepared_dataset(prepared, capsys):
    cfg = dict(dataset="aviris", root=str(prepared), train_file="train.txt", val_file="val.txt",
               test_file="test.txt", bands=31, msi_bands=6, image_size=16, crop_size=8, mixed_align_opt=1)
    s = build_dataset(cfg, "train")[0]
    assert s["gt"].shape == (31, 8, 8) and s["hrmsi"].shape == (6, 8, 8) and s["lrhsi"].shape == (31, 2, 2)
    v = build_dataset(cfg, "val")[0]
    assert v["gt"].shape == (31, 16, 16)
    rc = check_cli.main([str(prepared), "--split", "train.txt", "--split", "val.txt", "--split", "test.txt",
                         "--bands", "31", "--image_size", "16", "--mixed_align_opt", "1", "--quiet"])
    assert rc == 0
    assert "0 problem(s)" in capsys.readouterr().err


def test_prepare_from_cube_files_with_user_srf(tmp_path):
    from data import make_scene

    wl = np.arange(400.0, 701.0, 10.0)
    for i in range(3):
        np.savez(tmp_path / f"scene{i}.npz", cube=make_scene(i, (20, 24), wl) * 4000, wavelengths=wl)
    (tmp_path / "cam.csv").write_text("nm,blue,red\n400,1,0\n500,0.5,0\n600,0,1\n700,0,0.5\n")
    inputs = [str(tmp_path / f"scene{i}.npz") for i in range(3)]
    out = tmp_path / "ds"
    args = ["--out", str(out), "--tile", "8", "--srf", "rgb", str(tmp_path / "cam.csv"), "--blur", "b3spline",
            "--misreg", "0.5", "0", "--split_fractions", "1", "1", "1"]
    assert prepare_cli.main([*inputs, *args]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert [s["msi_bands"] for s in m["srf"]] == [3, 2] and m["bands"] == 31
    assert [i["shape"] for i in m["inputs"]] == [[20, 24, 31]] * 3 and len(m["inputs"][0]["sha256"]) == 64
    assert m["entries"] == {"train": 6, "val": 6, "test": 6}  # 20×24 -> 2×3 tiles of 8 (remainder dropped)
    cfg = dict(root=str(out), test_file="test.txt", bands=31, msi_bands=2, image_size=8, mis_pix=1)
    s = build_dataset(cfg, "test")[0]
    assert s["hrmsi"].shape == (2, 8, 8) and s["lrhsi"].shape == (31, 2, 2) and s["maxv"] > 100
    assert prepare_cli.main([*inputs, *args[:6], "rgb", "rgb", "--out", str(tmp_path / "dup")]) == 2


def test_prepare_bad_input_messages(tmp_path, capsys):
    assert prepare_cli.main([str(tmp_path / "missing.mat"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.mat: no such file" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert run_prepare(tmp_path / "full") == 2
    assert "folder is not empty (pass --overwrite" in capsys.readouterr().err
    np.save(tmp_path / "c.npy", np.ones((8, 8, 5), np.float32))
    assert prepare_cli.main([str(tmp_path / "c.npy"), "--out", str(tmp_path / "o2"), "--bands", "6"]) == 2
    assert "c.npy: has 5 bands, expected 6" in capsys.readouterr().err


def test_atomic_write_never_leaves_a_half_written_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def failing(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(str(target), failing)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_prepare_interrupted_leaves_no_partial_files(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = np.lib.format.write_array

    def flaky(fp, array, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            fp.write(b"garbage")
            raise OSError("simulated crash")
        return real(fp, array, *a, **k)

    monkeypatch.setattr(np.lib.format, "write_array", flaky)
    out = tmp_path / "ds"
    with pytest.raises(OSError, match="simulated crash"):
        prepare_cli.prepare(prepare_cli.build_parser().parse_args([*SYNTH, "--out", str(out)]))
    # the dataset is staged beside --out and moved in whole: a failure leaves neither it nor the staging folder
    assert os.listdir(tmp_path) == []


def test_check_reports_every_problem_at_once(prepared, tmp_path, capsys):
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(prepared, root)
    entries = (root / "train.txt").read_text().split()
    os.remove(root / (entries[0] + "lrhsi.npz"))
    gt = np.load(root / (entries[1] + "GT.npz.npy"))
    gt[0, 0, 0] = np.nan
    np.save(root / (entries[1] + "GT.npz.npy"), gt)
    np.savez(root / (entries[2] + "hrmsi.npz"), hrmsi6=np.zeros((16, 16, 6), np.float32))
    with np.load(root / (entries[3] + "lrhsi.npz")) as z:
        lr = {k: z[k] for k in z.files}
    np.savez(root / (entries[3] + "lrhsi.npz"), **{**lr, "lrhsi": lr["lrhsi"][:3]})
    np.savez(root / (entries[4] + "lrhsi.npz"), **{**lr, "lrhsi2": lr["lrhsi2"] + 5.0})
    gt = np.load(root / (entries[5] + "GT.npz.npy"))
    gt[..., 7] = 0.0  # a dead band
    np.save(root / (entries[5] + "GT.npz.npy"), gt)
    (root / "empty.txt").write_text("")
    rc = check_cli.main([str(root), "--split", "train.txt", "--split", "empty.txt", "--bands", "31",
                         "--image_size", "16", "--quiet"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 1
    expected = [
        f"missing file {root / (entries[0] + 'lrhsi.npz')}",
        f"{root / (entries[1] + 'GT.npz.npy')}: GT has 1 NaN/Inf value(s)",
        f"{root / (entries[2] + 'hrmsi.npz')}: key 'hrmsi4' missing (found ['hrmsi6'])",
        f"{root / (entries[3] + 'lrhsi.npz')}: lrhsi (ratio 4) has shape (3, 4, 31), expected (4, 4, 31)",
        f"{root / (entries[4] + 'lrhsi.npz')}: lrhsi2 values span",
        f"{root / (entries[5] + 'GT.npz.npy')}: GT has 1 constant band(s), 0-based: 7 (= 0)",
        "empty.txt: the split is empty",
    ]
    for e in expected:
        assert sum(e in line for line in out) == 1, (e, out)
    assert len(out) == len(expected)


def test_cube_dataset_simulates_own_cubes_on_the_fly(tmp_path):
    from data import make_scene

    wl = np.arange(400.0, 701.0, 10.0)
    for i in range(2):
        np.save(tmp_path / f"c{i}.npy", make_scene(10 + i, (18, 16), wl) * 1000)  # 18 -> 16 (multiple of 4)
    (tmp_path / "train.txt").write_text("c0.npy\nc1.npy\n")
    cfg = dict(dataset="cube", root=str(tmp_path), train_file="train.txt", bands=31, msi_bands=3,
               wavelengths="visible31", image_size=8, crop_size=4, snr_hsi=30)
    ds = build_dataset(cfg, "train")
    assert len(ds) == 8 and ds.items[0][0] == "c0_0_y0x0"
    s = ds[3]
    assert s["gt"].shape == (31, 4, 4) and s["hrmsi"].shape == (3, 4, 4) and s["lrhsi"].shape == (31, 1, 1)
    assert s["maxv"] > 10  # raw units kept for RMSE
    with pytest.raises(ValueError, match=r"c0\.npy: the cube has 31 bands, --bands is 30"):
        build_dataset({**cfg, "bands": 30, "wavelengths": None}, "train")
