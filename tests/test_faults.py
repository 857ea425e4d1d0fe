"""Fault injection (issue 12, the faults outside the training loop): corrupted bytes, full disk, unwritable and
misplaced folders, bad values, bad data. Each case asserts the one-line message, the exit code and the files
left behind.

Simulated where the machine cannot make the fault: a full disk (ENOSPC) by an ``os.fsync`` that fails, as the
kernel reports a delayed write error; a read-only folder by ``chmod`` unless the tests run as root (root ignores
permission bits), then by a ``tempfile.mkstemp``/``mkdtemp`` that fails with EACCES; an error inside a
DataLoader worker by a dataset whose ``__getitem__`` raises (the forked worker inherits the patch).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import test_CSAKD
import train_CSAKD
from data import check as check_cli
from data import make_scene
from data import prepare as prepare_cli
from data.sample import FusionDataset
from models import Student
from tests.test_train_run import tiny, tiny_config, tiny_test
from utils.checkpoint import DIGEST_KEY, load_weights, read_checkpoint, save_weights
from utils.fileio import WriteError, atomic_write_text, remove_stale_temps, temp_name_prefix

SMALL = dict(bands=8, msi_bands=2, num_base_chs=8, num_agg_feat=4, scale=4, student_layers="1111")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread) -> Path:
    """One tiny finished run (1 epoch): its folder holds best/last weights and state.pth."""
    base = tmp_path_factory.mktemp("faults")
    assert train_CSAKD.main(tiny(base, epochs=1)) == 0
    return base


def fresh(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the trained run's base folder (config, checkpoints)."""
    shutil.copytree(trained / "ck", tmp_path / "ck")
    tiny_config(tmp_path)
    return tmp_path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def flip_tensor_byte(path: Path) -> None:
    """Flip one byte in the middle of the largest tensor storage record (not a header) of a torch file."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        at = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0x5A]))


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------------------------
# 1. integrity on every load


def test_corrupt_weights_are_refused_by_the_test_script(trained: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "best.pth"
    shutil.copy(trained / "ck" / "tiny" / "student" / "best.pth", bad)
    torch.load(bad, weights_only=True)  # torch itself loads the damaged file without complaint...
    flip_tensor_byte(bad)
    assert test_CSAKD.main([*tiny_test(trained), "--checkpoint", str(bad)]) == 2  # ...this code does not
    err = one_line_error(capsys)
    assert str(bad) in err and "fails its CRC check" in err


def test_corrupt_state_is_refused_by_resume(trained: Path, tmp_path: Path, capsys) -> None:
    base = fresh(trained, tmp_path)
    state = base / "ck" / "tiny" / "state.pth"
    flip_tensor_byte(state)
    before = tree(base / "ck")
    assert train_CSAKD.main(tiny(base, "--resume", epochs=2)) == 2
    err = one_line_error(capsys)
    assert f"training state {state}" in err and "CRC" in err
    assert tree(base / "ck") == before  # nothing rewritten: not the config, not the state


def test_stored_digest_catches_changes_that_keep_valid_crcs(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    save_weights(path, Student(**SMALL))
    obj = torch.load(path, weights_only=True)
    next(iter(obj["state_dict"].values())).add_(1.0)  # re-saved: fresh CRCs, stale digest
    torch.save(obj, path)
    with pytest.raises(ValueError, match=r"w\.pth: corrupt: the tensors do not match the checksum"):
        read_checkpoint(path)


def test_version_1_files_without_digest_still_load(tmp_path: Path) -> None:
    path = tmp_path / "old.pth"
    save_weights(path, Student(**SMALL))
    obj = torch.load(path, weights_only=True)
    del obj[DIGEST_KEY]
    torch.save({**obj, "format_version": 1}, path)
    assert load_weights(Student(**SMALL), path)["source"] == "csakd"


def test_nonfinite_weights_are_refused(trained: Path, tmp_path: Path, capsys) -> None:
    model = Student(**SMALL)
    with torch.no_grad():
        model.last.weight[0].fill_(float("nan"))
    path = tmp_path / "nan.pth"
    save_weights(path, model)
    assert test_CSAKD.main([*tiny_test(trained), "--checkpoint", str(path)]) == 2
    err = one_line_error(capsys)
    assert str(path) in err and "hold NaN or Inf (last.weight)" in err


def test_training_state_given_as_checkpoint_is_named(trained: Path, capsys) -> None:
    state = trained / "ck" / "tiny" / "state.pth"
    assert test_CSAKD.main([*tiny_test(trained), "--checkpoint", str(state)]) == 2
    err = one_line_error(capsys)
    assert "is a training state" in err and str(trained / "ck" / "tiny" / "student" / "best.pth") in err


# --------------------------------------------------------------------------------------------------------------------
# 2. values: checked before anything is written


@pytest.mark.parametrize(("yaml_text", "args", "message"), [
    ("", ["--lr", "inf"], "--lr: expected a finite number, got inf"),
    ("", ["--lr", "nan"], "--lr: expected a finite number, got nan"),
    ("", ["--lr", "0"], "--lr: expected a number > 0 and <= 1000, got 0.0"),
    ("", ["--batch_size", "0"], "--batch_size: expected a number >= 1, got 0"),
    ("", ["--scale", "0"], "--scale: expected a number >= 1, got 0"),
    ("", ["--w_kd", "-1"], "--w_kd: expected a number >= 0, got -1.0"),
    ("epochs: 1.5\n", [], "key 'epochs' = 1.5; expected a whole number"),
    ("snr: 1:20\n", [], "key 'snr': "),  # sexagesimal in YAML 1.1 (80); a string here, and not a number
    ("epochs: 3\nlr: 1.0e-3\nepochs: 4\n", [], "key 'epochs' appears twice (lines 1 and 3)"),
    ("prefix: [a, b]\n", [], "key 'prefix' takes one value"),
    ("prefix: no\n", [], "key 'prefix' = False; expected a string"),
    ("epochs: null\n", [], "key 'epochs' is null; expected a value like the default 600"),
    ("student_layers: 0122\n", [], "student_layers"),  # read as '0122' (not 82): a Z_mh count of 1 ... is kept
], ids=["lr-inf", "lr-nan", "lr-zero", "batch-zero", "scale-zero", "weight-negative", "fractional-epochs",
        "sexagesimal", "duplicate-key", "list-for-scalar", "yaml11-bool", "null", "octal-layers"])
def test_bad_values_end_in_one_line_before_any_file(tmp_path: Path, capsys, yaml_text, args, message) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml_text + f"checkpoint_dir: {tmp_path / 'ck'}\nlog_dir: {tmp_path / 'runs'}\n")
    argv = ["--config", str(extra), *args]
    if message == "student_layers":  # not an error: the digits survive as written
        assert train_CSAKD.load_config(argv)["student_layers"] == "0122"
        return
    assert train_CSAKD.main(argv) == 2
    assert message in one_line_error(capsys)
    assert sorted(os.listdir(tmp_path)) == ["extra.yaml"]


def test_non_utf8_yaml_names_the_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("prefix: café\n".encode("latin-1"))
    assert test_CSAKD.main(["--config", str(path)]) == 2
    err = one_line_error(capsys)
    assert f"--config {path}: not UTF-8 text (byte 0xe9 at offset 11)" in err


# --------------------------------------------------------------------------------------------------------------------
# 5. OS faults while writing; 8. the results folder


def full_disk(monkeypatch, only: str = "") -> None:
    """Every fsync (of a file whose name contains ``only``; Linux /proc) fails as on a full disk."""
    real = os.fsync

    def no_space(fd: int) -> None:
        if only and only not in os.readlink(f"/proc/self/fd/{fd}"):
            return real(fd)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)


def read_only(folder: Path, monkeypatch) -> None:
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.geteuid() != 0:
        return

    def refusing(real):  # root writes anyway: refuse new entries in ``folder`` as the kernel would for others
        def make(*args, dir=None, **kwargs):
            if dir is not None and Path(dir).resolve() == folder.resolve():
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            return real(*args, dir=dir, **kwargs)
        return make

    monkeypatch.setattr(tempfile, "mkstemp", refusing(tempfile.mkstemp))
    monkeypatch.setattr(tempfile, "mkdtemp", refusing(tempfile.mkdtemp))


def test_full_disk_keeps_the_previous_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "previous")
    full_disk(monkeypatch)
    with pytest.raises(WriteError) as exc:
        atomic_write_text(target, "new")
    assert str(exc.value) == f"cannot write {target}: No space left on device [ENOSPC]"
    assert target.read_text() == "previous" and os.listdir(tmp_path) == ["out.txt"]


def test_full_disk_while_writing_results(trained: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    results = tmp_path / "res"
    assert test_CSAKD.main([*tiny_test(trained), "--results", str(results), "--metrics", "psnr"]) == 0
    before = tree(results)
    capsys.readouterr()
    full_disk(monkeypatch)
    assert test_CSAKD.main([*tiny_test(trained), "--results", str(results), "--metrics", "psnr,sam"]) == 2
    err = one_line_error(capsys)
    assert "No space left on device [ENOSPC]" in err and str(results) in err
    assert tree(results) == before and os.listdir(tmp_path) == ["res"]  # earlier results whole, no staging left


def test_results_never_mix_with_an_earlier_run(trained: Path, tmp_path: Path, capsys) -> None:
    """A re-run replaces its own earlier results whole; a file the user put there makes it refuse, and it stays."""
    results = tmp_path / "res"
    assert test_CSAKD.main([*tiny_test(trained), "--results", str(results), "--metrics", "psnr"]) == 0
    assert test_CSAKD.main([*tiny_test(trained), "--results", str(results), "--metrics", "psnr", "--split",
                            "val"]) == 0
    assert sorted(os.listdir(results / "pred")) == ["val_0000.mat", "val_0001.mat"]
    mine = results / "pred" / "mine.mat"
    mine.write_bytes(b"mine")
    assert test_CSAKD.main([*tiny_test(trained), "--results", str(results), "--metrics", "psnr"]) == 2
    assert "holds other files (pred/mine.mat) that test_CSAKD.py did not write" in one_line_error(capsys)
    assert mine.read_bytes() == b"mine" and sorted(os.listdir(tmp_path)) == ["res"]


def test_results_folder_with_other_files_is_refused(trained: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert test_CSAKD.main([*tiny_test(trained), "--results", str(tmp_path)]) == 2
    assert "holds other files (notes.txt)" in one_line_error(capsys)
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_unwritable_results_folder_is_one_line(trained: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    read_only(parent, monkeypatch)
    try:
        assert test_CSAKD.main([*tiny_test(trained), "--results", str(parent / "res")]) == 2
        err = one_line_error(capsys)
        assert f"cannot write {parent / 'res'}: Permission denied [EACCES]" in err
        assert os.listdir(parent) == []
    finally:
        parent.chmod(stat.S_IRWXU)


def test_results_under_a_file_is_one_line(trained: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert test_CSAKD.main([*tiny_test(trained), "--results", str(blocker / "res")]) == 2
    err = one_line_error(capsys)
    assert f"cannot write {blocker / 'res'}: " in err and ("[EEXIST]" in err or "[ENOTDIR]" in err)


def test_full_disk_during_training_keeps_the_last_state(trained: Path, tmp_path: Path, monkeypatch,
                                                        capsys) -> None:
    base = fresh(trained, tmp_path)
    run = base / "ck" / "tiny"
    before = {k: v for k, v in tree(run).items() if k != "config.yaml"}  # the resumed run rewrites its config
    full_disk(monkeypatch, only=".pth")  # the disk fills during the epoch: the checkpoint writes fail
    assert train_CSAKD.main(tiny(base, "--resume", epochs=2)) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"error: cannot write {run}") and ".pth: No space left on device [ENOSPC]" in err
    after = tree(run)
    assert {k: after[k] for k in before} == before and not [k for k in after if ".tmp-" in k]


def dead_pid() -> int:
    """The pid of a process that has ended (the owner of a killed writer's temporaries)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_killed_build_leaves_a_staging_folder_that_the_next_build_removes(trained: Path, tmp_path: Path) -> None:
    leftover = tmp_path / f"{temp_name_prefix(tmp_path / 'res', pid=dead_pid())}killed"
    (leftover / "pred").mkdir(parents=True)
    assert test_CSAKD.main([*tiny_test(trained), "--results", str(tmp_path / "res"), "--metrics", "psnr"]) == 0
    assert os.listdir(tmp_path) == ["res"]


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path: Path) -> None:
    """Only temporaries whose owner (host tag, pid) is gone, directly in the folder: a live writer's, a look-alike
    without the owner marker and anything in a subfolder stay."""
    run, dead = tmp_path / "run", dead_pid()
    (run / "student").mkdir(parents=True)
    keep = [run / "student" / "best.pth", run / "notes.tmp-1", run / ".notes.md.tmp-draft",
            run / f"{temp_name_prefix(run / 'state.pth')}live", run / "student" / f"{temp_name_prefix('b', dead)}x"]
    stale = [run / f"{temp_name_prefix(run / 'state.pth', dead)}k2j4", run / f"{temp_name_prefix(run / 'res', dead)}9x"]
    for p in keep + stale[:1]:
        p.write_text("x")
    stale[1].mkdir()
    (stale[1] / "pred").mkdir()
    assert sorted(remove_stale_temps(run)) == sorted(map(str, stale))
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


# --------------------------------------------------------------------------------------------------------------------
# 7. data


WL = "visible31"


def cube(path: Path, size: tuple[int, int] = (32, 32), seed: int = 0) -> Path:
    np.save(path, make_scene(seed, size, np.arange(400.0, 701.0, 10.0)))
    return path


def prepare(out: Path, *inputs: Path, extra: tuple[str, ...] = ()) -> int:
    return prepare_cli.main([*map(str, inputs), "--out", str(out), "--wavelengths", WL, "--srf", "rgb",
                             "--tile", "16", "--split_fractions", "1", "1", "1", *extra])


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: np.save(p, np.ones((32, 32), np.float32)), "expected a 3-D cube, got an array of shape (32, 32)"),
    (lambda p: cube(p, (12, 12)), "12×12 pixels (after cropping to the scale), smaller than --tile 16"),
    (lambda p: np.save(p, np.full((32, 32, 31), 0.5, np.float32)), "all 4 tile(s) are constant"),
], ids=["not-3d", "too-small", "constant"])
def test_prepare_unusable_cube_is_one_message_and_no_dataset(tmp_path: Path, capsys, make, message) -> None:
    good = [cube(tmp_path / f"good{i}.npy", seed=i) for i in range(2)]
    bad = tmp_path / "bad.npy"
    make(bad)
    out = tmp_path / "ds"
    assert prepare(out, *good, bad) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"data.prepare: error: {bad}: ") and message in err
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


@pytest.mark.parametrize(("args", "message"), [
    (["--tile", "-16"], "--tile: expected a number >= 0, got -16"),
    (["--snr_hsi", "nan"], "--snr_hsi: expected a finite number, got nan"),
    (["--split_fractions", "1", "-1", "1"], "--split_fractions: expected a number >= 0, got -1.0"),
])
def test_prepare_bad_values(tmp_path: Path, capsys, args, message) -> None:
    assert prepare(tmp_path / "ds", cube(tmp_path / "c.npy"), extra=tuple(args)) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"data.prepare: error: {message}"
    assert os.listdir(tmp_path) == ["c.npy"]


def test_prepare_overwrite_leaves_nothing_old(tmp_path: Path, capsys) -> None:
    """--overwrite replaces a dataset this tool wrote whole (a scene dropped from the inputs is gone); a folder
    holding anything else is refused and kept."""
    inputs = [cube(tmp_path / f"c{i}.npy", seed=i) for i in range(4)]
    out = tmp_path / "ds"
    assert prepare(out, *inputs) == 0
    assert prepare(out, *inputs[:3]) == 2  # non-empty without --overwrite
    assert prepare(out, *inputs[:3], extra=("--overwrite",)) == 0
    assert not list(out.rglob("c3_*")) and (out / "manifest.json").is_file()
    (out / "train" / "stale_0GT.npz.npy").write_bytes(b"mine")
    capsys.readouterr()
    assert prepare(out, *inputs[:3], extra=("--overwrite",)) == 2
    assert "holds other files (train/stale_0GT.npz.npy) that data.prepare did not write" in capsys.readouterr().err
    assert (out / "train" / "stale_0GT.npz.npy").read_bytes() == b"mine"


def test_cube_dataset_names_a_cube_too_small_for_the_tiles(tmp_path: Path) -> None:
    from data import build_dataset

    cube(tmp_path / "big.npy")
    cube(tmp_path / "small.npy", (8, 8))
    (tmp_path / "train.txt").write_text("big.npy\nsmall.npy\n")
    cfg = dict(dataset="cube", root=str(tmp_path), train_file="train.txt", bands=31, msi_bands=3,
               wavelengths=WL, image_size=16, crop_size=8)
    with pytest.raises(ValueError, match=r"small\.npy: 8×8 pixels .* smaller than --image_size 16"):
        build_dataset(cfg, "train")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("ds")
    inputs = [cube(base / f"c{i}.npy", seed=i) for i in range(3)]
    assert prepare(base / "ds", *inputs) == 0
    return base / "ds"


def check(root: Path, *splits: Path | str) -> tuple[int, list[str]]:
    return check_cli.check_dataset(str(root), [str(s) for s in splits], check_cli.LayoutSpec(31, 3, 4, 0),
                                   progress=False)


def test_check_reports_duplicates_leakage_and_bom(dataset: Path, tmp_path: Path) -> None:
    train = (dataset / "train.txt").read_text().split()
    dup = tmp_path / "dup.txt"
    dup.write_bytes(b"\xef\xbb\xbf" + "\n".join([train[0], train[0], *train[1:]]).encode())
    leak = tmp_path / "leak.txt"
    leak.write_text(train[1] + "\n")
    _, problems = check(dataset, dup, leak)
    assert any("UTF-8 byte-order mark" in p for p in problems)
    assert any(f"{dup}: 1 entry listed more than once ({train[0]})" in p for p in problems)
    assert any(f"{dup} and {leak}: 1 entry in both splits (leakage: {train[1]})" in p for p in problems)
    assert not any("missing" in p for p in problems)  # the BOM did not hide the first entry


def test_check_folder_as_split_and_missing_root(dataset: Path, tmp_path: Path, capsys) -> None:
    _, problems = check(dataset, dataset / "train")
    assert problems == [f"--split {dataset / 'train'}: is a folder; expected a split list file (one entry per line)"]
    assert check_cli.main([str(tmp_path / "nowhere"), "--split", str(dataset / "train.txt"), "--quiet"]) == 1
    assert capsys.readouterr().out.strip() == f"{tmp_path / 'nowhere'}: dataset root not found (no such folder)"


def test_worker_errors_read_as_without_workers(trained: Path, monkeypatch, capsys) -> None:
    real = FusionDataset.__getitem__

    def broken(self, index: int) -> dict:
        if index == 1:
            raise ValueError("synthetic/test_0001: simulated unreadable file")
        return real(self, index)

    monkeypatch.setattr(FusionDataset, "__getitem__", broken)
    lines = []
    for workers in ("0", "1"):
        assert test_CSAKD.main([*tiny_test(trained), "--workers", workers, "--metrics", "psnr"]) == 2
        lines.append(one_line_error(capsys))
    assert lines[0] == lines[1] == "error: synthetic/test_0001: simulated unreadable file"
