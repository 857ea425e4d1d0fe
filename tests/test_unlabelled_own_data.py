"""``--unlabelled_file``: teacher labels on input pairs of own data whose GT is never read (issue 18, method a).

An aviris-layout entry of the list is its input pair only (``<e>lrhsi.npz``, ``<e>hrmsi.npz``: a full-resolution
acquisition, no HR-HSI exists); a ``cube`` list holds cubes whose simulated pairs are used without their GT.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_run import TINY_YAML

import train_CSAKD
from data import build_dataset
from data.aviris import SUFFIXES, write_entry
from engine.train import train
from engine.upcycle import UnlabelledInputs, unlabelled_stream
from utils.config import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

C, M, S, HR = 8, 2, 4, 16  # the tiny runs' bands, MSI bands, scale and HR size (test_train_run.TINY_YAML)


def _pair(rng: np.random.Generator, hr: int = HR, bands: int = C) -> tuple[np.ndarray, dict, dict]:
    """(GT raw units, {M: HR-MSI}, {level: LR-HSI}) of one random scene, the inputs in [0, 1]."""
    gt = rng.uniform(100.0, 200.0, (hr, hr, bands)).astype(np.float32)
    g01 = (gt - gt.min()) / (gt.max() - gt.min())
    lr = g01.reshape(hr // S, S, hr // S, S, bands).mean(axis=(1, 3))
    return gt, {M: g01[..., :M]}, {k: np.roll(lr, k, axis=1) for k in range(4)}


def _root(tmp_path: Path) -> Path:
    """A tiny official-layout dataset (2 train, 1 val, 1 test entries with GT) and the list ``unlabelled.txt`` of
    3 input pairs: two without any GT file, one whose GT file would fail to load if it were opened."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for split, entries in (("train", ["train/a", "train/b"]), ("val", ["val/c"]), ("test", ["test/d"]),
                           ("unlabelled", ["acq/u0", "acq/u1", "acq/u2"])):
        for e in entries:
            write_entry(str(root), e, *_pair(rng))
        (root / f"{split}.txt").write_text("\n".join(entries) + "\n")
    for e in ("acq/u0", "acq/u1"):
        (root / (e + SUFFIXES["gt"])).unlink()
    (root / ("acq/u2" + SUFFIXES["gt"])).write_bytes(b"not an array: reading this GT would fail")
    return root


def _argv(tmp_path: Path, *extra: str, prefix: str = "own", epochs: int = 1) -> list[str]:
    root = _root(tmp_path) if not (tmp_path / "data").exists() else tmp_path / "data"
    config = tmp_path / "own.yaml"
    yaml = TINY_YAML.replace("dataset: synthetic", "dataset: aviris").replace("tb_scenes: 1", "tb_scenes: 0")
    config.write_text(yaml +
                      f"root: {root}\ntrain_file: {root / 'train.txt'}\nval_file: {root / 'val.txt'}\n"
                      f"test_file: {root / 'test.txt'}\nlog_dir: {tmp_path / 'runs'}\n"
                      f"checkpoint_dir: {tmp_path / 'ck'}\n")
    return ["--config", str(config), "--epochs", str(epochs), "--prefix", prefix, *extra]


def _teacher(tmp_path: Path) -> str:
    from models import build_model
    from utils.checkpoint import save_weights

    cfg = train_CSAKD.load_config(_argv(tmp_path))
    torch.manual_seed(3)
    path = tmp_path / "teacher.pth"
    save_weights(path, build_model(cfg, "teacher"), cfg)
    return str(path)


def _offline(tmp_path: Path, *extra: str, **kw) -> list[str]:
    return _argv(tmp_path, "--kd_mode", "offline", "--teacher_ckpt", _teacher(tmp_path), *extra, **kw)


def test_an_unlabelled_list_of_input_pairs_never_reads_a_gt(tmp_path):
    root = _root(tmp_path)
    cfg = train_CSAKD.load_config(_offline(tmp_path, "--unlabelled_file", str(root / "unlabelled.txt")))
    ds = build_dataset(cfg, "unlabelled")
    assert ds.without_gt == ("acq/u0", "acq/u1")
    items = [UnlabelledInputs(ds)[i] for i in range(3)]  # u2's GT file is unreadable: never opened
    assert all(set(item) == {"lrhsi", "hrmsi"} for item in items)
    assert items[0]["hrmsi"].shape == (M, 8, 8) and items[0]["lrhsi"].shape == (C, 2, 2)  # the training crop
    assert float(items[0]["lrhsi"].min()) >= -1 and float(items[0]["lrhsi"].max()) <= 1  # x ↦ 2x − 1
    batch = unlabelled_stream(cfg).next()
    assert set(batch) == {"lrhsi", "hrmsi"} and batch["lrhsi"].shape[0] == cfg["batch_size"]
    # a whole offline run with the list and the augmentation consistency
    summary = train(train_CSAKD.load_config(_offline(tmp_path, "--unlabelled_file", str(root / "unlabelled.txt"),
                                                     "--kd_augment", prefix="run")))
    assert summary["epoch"] == 0


def test_the_control_needs_the_gt_and_says_so_before_writing_anything(tmp_path):
    root = _root(tmp_path)
    listed = root / "unlabelled.txt"
    cfg = train_CSAKD.load_config(_argv(tmp_path, "--kd_mode", "none", "--unlabelled_file", str(listed)))
    with pytest.raises(ValueError, match=r"--unlabelled_file .*unlabelled.txt.*2 entries have no GT.*'acq/u0'.*"
                                         r"--kd_mode offline"):
        unlabelled_stream(cfg)
    assert train_CSAKD.main(_argv(tmp_path, "--kd_mode", "none", "--unlabelled_file", str(listed),
                                  prefix="control")) != 0
    assert not (tmp_path / "ck" / "control").exists()
    # entries that have their GT: the control trains on it (more labelled data)
    listed.write_text("train/a\nval/c\n")
    assert "gt" in unlabelled_stream(train_CSAKD.load_config(_argv(tmp_path, "--kd_mode", "none",
                                                                    "--unlabelled_file", str(listed)))).next()


def _error(tmp_path: Path, capsys, *extra: str) -> str:
    assert train_CSAKD.main(_offline(tmp_path, *extra, prefix="bad")) != 0
    assert not (tmp_path / "ck" / "bad").exists()  # nothing written
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


def test_bad_unlabelled_lists_end_with_one_clear_message(tmp_path, capsys):
    root = _root(tmp_path)
    missing = _error(tmp_path, capsys, "--unlabelled_file", str(root / "nope.txt"))
    assert "--unlabelled_file" in missing and "nope.txt" in missing and "no such file" in missing
    rng = np.random.default_rng(1)
    write_entry(str(root), "acq/cube", *_pair(rng))
    for key in ("hrmsi", "lrhsi"):
        os.remove(root / ("acq/cube" + SUFFIXES[key]))
    (root / "gt_only.txt").write_text("acq/cube\n")
    gt_only = _error(tmp_path, capsys, "--unlabelled_file", str(root / "gt_only.txt"))
    assert "gt_only.txt" in gt_only and "'acq/cube' holds only a GT" in gt_only and "lrhsi.npz" in gt_only
    _, msi, lr = _pair(rng, bands=C + 1)
    write_entry(str(root), "acq/wide", np.ones((HR, HR, C + 1), np.float32), msi, lr)
    (root / "wide.txt").write_text("acq/wide\n")
    bands = _error(tmp_path, capsys, "--unlabelled_file", str(root / "wide.txt"))
    assert "--unlabelled_file" in bands and "wide.txt" in bands and f"{C + 1})" in bands and f"{C})" in bands


def test_each_dataset_kind_takes_its_unlabelled_pairs_from_its_own_flag(tmp_path):
    root = _root(tmp_path)
    listed = str(root / "unlabelled.txt")
    with pytest.raises(ConfigError, match="--unlabelled 3: --dataset aviris takes them from --unlabelled_file"):
        train_CSAKD.load_config(_offline(tmp_path, "--unlabelled", "3"))
    with pytest.raises(ConfigError, match="--dataset synthetic takes them from --unlabelled "):
        train_CSAKD.load_config(_offline(tmp_path, "--unlabelled_file", listed, "--dataset", "synthetic"))
    with pytest.raises(ConfigError, match="give one"):
        train_CSAKD.load_config(_offline(tmp_path, "--unlabelled_file", listed, "--unlabelled", "2"))
    with pytest.raises(ConfigError, match=r"--unlabelled_file .*--kd_mode online"):
        train_CSAKD.load_config(_argv(tmp_path, "--unlabelled_file", listed))


def test_a_cube_list_gives_simulated_pairs_without_their_gt_and_noise_of_their_own(tmp_path):
    cubes = tmp_path / "cubes"
    cubes.mkdir()
    rng = np.random.default_rng(2)
    for name in ("c0", "c1"):
        np.save(cubes / f"{name}.npy", rng.uniform(0.1, 1.0, (HR, HR, C)).astype(np.float32))
    for split, names in (("train", "c0 c1"), ("val", "c0"), ("test", "c1"), ("unlabelled", "c0")):
        (cubes / f"{split}.txt").write_text("\n".join(f"{n}.npy" for n in names.split()) + "\n")
    argv = _offline(tmp_path, "--dataset", "cube", "--root", str(cubes), "--snr_hsi", "30",
                    *(a for s in ("train", "val", "test", "unlabelled") for a in (f"--{s}_file", str(cubes /
                                                                                               f"{s}.txt"))))
    cfg = train_CSAKD.load_config(argv)
    ds = build_dataset(cfg, "unlabelled")
    assert len(ds) == 1 and set(UnlabelledInputs(ds)[0]) == {"lrhsi", "hrmsi"}
    same_cube = build_dataset(cfg, "train").load(0, 0)  # c0 listed for training too: other noisy inputs
    assert not np.array_equal(ds.load_inputs(0, 0)[2], same_cube[3])
    assert np.array_equal(ds.load(0, 0)[1], same_cube[1])  # the same (never read) GT
    assert unlabelled_stream(cfg).next()["hrmsi"].shape == (1, M, 8, 8)  # one cube of one tile: a short batch
