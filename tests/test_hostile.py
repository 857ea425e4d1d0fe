"""The second hostile test (issue 21): no file this project reads runs code, and nothing it removes is anyone
else's. Every case asserts the one-line message, the exit code and what is left behind.

The planted pickle (:class:`Evil`) writes a marker file when it is unpickled; :func:`test_the_planted_pickle_is_live`
shows that a full ``torch.load`` does run it, so a missing marker elsewhere means the code never ran.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

import export_CSAKD
import test_CSAKD
import train_CSAKD
from tests.test_train_run import tiny, tiny_config, tiny_test
from utils.checkpoint import DIGEST_KEY, TRAIN_STATE_FORMAT, tensor_digest
from utils.fileio import HOST, temp_name_prefix
from utils.interrupts import Interrupted


class Evil:
    """Unpickling this object writes ``marker`` (what an attacker's ``os.system`` call would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def plant_state(path: Path, marker: Path, legacy_format: bool = False) -> Path:
    """A file that looks like a training state (format tag, config) and carries :class:`Evil`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": TRAIN_STATE_FORMAT, "format_version": 4, "epoch": 0, "iteration": 2, "first_iteration": 0,
                "config": {"prefix": "elsewhere"}, "networks": {}, "rng": {}, "x": Evil(marker)}, path,
               _use_new_zipfile_serialization=not legacy_format)
    return path


def plant_weights(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "csakd-weights", "format_version": 2, "state_dict": {"w": torch.zeros(1)},
                "x": Evil(marker)}, path)
    return path


def refusal(capsys) -> str:
    """The one line of a refused file: no traceback, and never PyTorch's advice to switch the safety off."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert "weights_only" not in err and "trust" not in err.replace("trusts NumPy", ""), err
    return err


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "outside" / "pwned"


def test_the_planted_pickle_is_live(tmp_path: Path, marker: Path) -> None:
    marker.parent.mkdir()
    path = plant_state(tmp_path / "state.pth", marker)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("form", ["auto", "file", "folder", "resume_ckpt", "legacy_format", "legacy_state",
                                  "fresh_run"])
def test_a_planted_training_state_never_runs(tmp_path: Path, marker: Path, capsys, form: str) -> None:
    marker.parent.mkdir()
    run = tmp_path / "ck" / "evil"
    plant_state(run / "state.pth", marker, legacy_format=form == "legacy_format")
    state = str(run / "state.pth")
    extra = {"auto": ("--resume",), "file": ("--resume", state), "folder": ("--resume", str(run)),
             "resume_ckpt": ("--resume_ckpt", state), "legacy_format": ("--resume", state),
             "legacy_state": ("--resume", "--legacy_state"), "fresh_run": ()}[form]
    assert train_CSAKD.main(tiny(tmp_path, *extra, prefix="evil")) == 2
    err = refusal(capsys)
    assert not marker.exists()
    assert state in err
    if form == "fresh_run":
        assert "already holds a run" in err
    else:
        assert "refused: it asks to load exec," in err


def test_planted_weight_files_never_run(tmp_path: Path, marker: Path, capsys) -> None:
    """--teacher_ckpt, test --checkpoint, export --checkpoint, and both warm starts (this project's folder and
    the official tree)."""
    marker.parent.mkdir()
    evil = plant_weights(tmp_path / "evil.pth", marker)
    warm = tmp_path / "warm"
    for role in ("teacher", "student"):
        plant_weights(warm / role / "last.pth", marker)
    official = tmp_path / "official"
    plant_weights(official / "teacher_checkpoint" / "OFF" / "best.pth", marker)
    plant_weights(official / "student_checkpoint" / "OFF" / "last.pth", marker)
    runs = [
        (train_CSAKD.main, tiny(tmp_path, "--kd_mode", "offline", "--teacher_ckpt", str(evil), prefix="t1"), evil),
        (test_CSAKD.main, tiny_test(tmp_path, "--checkpoint", str(evil)), evil),
        (export_CSAKD.main, ["--checkpoint", str(evil), "--out", str(tmp_path / "x.onnx")], evil),
        (train_CSAKD.main, tiny(tmp_path, "--resume_ind", "1", "--resume_ckpt", str(warm), prefix="t2"),
         warm / "teacher" / "last.pth"),
        (train_CSAKD.main, tiny(tmp_path, "--resume_ind", "1", "--resume_ckpt", str(official), "--compat", "official",
                                prefix="OFF"), official / "teacher_checkpoint" / "OFF" / "best.pth"),
    ]
    for main, argv, named in runs:
        assert main(argv) == 2, argv
        err = refusal(capsys)
        assert f"{named}: refused: it asks to load exec," in err, err
        assert not marker.exists()
    assert not (tmp_path / "x.onnx").exists()


def test_an_old_format_state_needs_the_opt_in(tmp_path: Path, capsys) -> None:
    """A version-3 state (a pickled NumPy RNG state) is refused in one line that names --legacy_state; with the
    flag it resumes, and the state it writes is plain data again (version 4)."""
    import numpy as np

    assert train_CSAKD.main(tiny(tmp_path, epochs=1, prefix="old")) == 0
    path = tmp_path / "ck" / "old" / "state.pth"
    state = torch.load(path, weights_only=True)
    state["rng"]["numpy"] = np.random.get_state()  # noqa: NPY002 - what versions 1-3 stored
    state["format_version"] = 3
    body = {k: v for k, v in state.items() if k not in ("format", "format_version", DIGEST_KEY)}
    torch.save({**state, DIGEST_KEY: tensor_digest(body)}, path)
    assert train_CSAKD.main(tiny(tmp_path, "--resume", epochs=2, prefix="old")) == 2
    assert "--legacy_state" in refusal(capsys)
    assert train_CSAKD.main(tiny(tmp_path, "--resume", "--legacy_state", epochs=2, prefix="old")) == 0
    assert torch.load(path, weights_only=True)["format_version"] == 4


def test_a_state_without_its_keys_is_one_line(tmp_path: Path, capsys) -> None:
    run = tmp_path / "ck" / "bare"
    run.mkdir(parents=True)
    torch.save({"format": TRAIN_STATE_FORMAT, "format_version": 4}, run / "state.pth")
    assert train_CSAKD.main(tiny(tmp_path, "--resume", prefix="bare")) == 2
    assert "incomplete (no 'config'" in refusal(capsys)


# --------------------------------------------------------------------------------------------------------------------
# YAML: aliases within a small budget, values in messages cut short


def test_a_yaml_alias_bomb_ends_at_once_in_one_line(tmp_path: Path, capsys) -> None:
    """Nine levels of nine aliases (406 bytes) would expand to 9⁹ strings; refused at the 17th alias."""
    levels = ["&a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    levels += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("synthetic_scenes: [" + ", ".join(levels) + "]\n")
    assert train_CSAKD.main(["--config", str(bomb), "--prefix", "yb", "--checkpoint_dir", str(tmp_path / "ck")]) == 2
    err = refusal(capsys)
    assert f"--config {bomb}: more than 16 aliases" in err and len(err) < 400
    assert not (tmp_path / "ck").exists()


def test_a_few_aliases_are_fine_and_long_values_are_cut_in_messages(tmp_path: Path, capsys) -> None:
    from engine.flags import build_train_parser
    from utils.config import parse_config

    ok = tmp_path / "ok.yaml"
    ok.write_text("val_metrics: &m [psnr, sam]\nsynthetic_scenes: &n [4, 2, 2]\n")
    cfg = parse_config(build_train_parser(), ["--config", str(ok)])
    assert cfg["synthetic_scenes"] == [4, 2, 2] and cfg["val_metrics"] == ["psnr", "sam"]
    long = tmp_path / "long.yaml"
    long.write_text("synthetic_scenes: [" + ", ".join(["1"] * 2000) + "]\n")
    assert train_CSAKD.main(["--config", str(long), "--prefix", "yl"]) == 2
    err = refusal(capsys)
    assert "takes 3 values, got [1, 1, 1, 1, 1, 1, 1, 1, ...]" in err and len(err) < 300


# --------------------------------------------------------------------------------------------------------------------
# Run names are names; a state resumes in its own folder


@pytest.fixture(scope="module")
def finished(tmp_path_factory, one_thread) -> Path:
    """One tiny finished run (1 epoch) in <base>/ck/base."""
    base = tmp_path_factory.mktemp("hostile")
    assert train_CSAKD.main(tiny(base, epochs=1, prefix="base")) == 0
    return base


def copy_of(finished: Path, tmp_path: Path) -> Path:
    shutil.copytree(finished / "ck", tmp_path / "ck")
    tiny_config(tmp_path)
    return tmp_path


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("prefix", "why"), [("", "is empty"), (".", "'.'"), ("..", "'..'"), ("../x", "'/'"),
                                             ("/abs/run", "'/'"), ("a/../../b", "'/'"), ("two\nlines", r"'\n'"),
                                             ("back\\slash", r"'\\'")])
def test_a_prefix_that_is_no_folder_name_is_refused(tmp_path: Path, capsys, prefix: str, why: str) -> None:
    (tmp_path / "config.yaml").write_text("mine\n")
    assert train_CSAKD.main(tiny(tmp_path, prefix=prefix)) == 2
    err = refusal(capsys)
    assert err.startswith(f"error: --prefix {prefix!r}: a run name") and why in err, err
    assert not (tmp_path / "ck").exists() and not (tmp_path / "runs").exists()
    assert (tmp_path / "config.yaml").read_text() == "mine\n"
    assert test_CSAKD.main(tiny_test(tmp_path, prefix=prefix)) == 2
    assert refusal(capsys).startswith(f"error: --prefix {prefix!r}")


def test_resuming_a_copied_run_continues_the_copy_and_leaves_the_original(finished: Path, tmp_path: Path) -> None:
    base = copy_of(finished, tmp_path)
    original = tree(base / "ck" / "base")
    shutil.copytree(base / "ck" / "base", base / "ck" / "copy")
    state = base / "ck" / "copy" / "state.pth"
    assert train_CSAKD.main(["--resume", str(state), "--epochs", "2"]) == 0
    assert tree(base / "ck" / "base") == original
    assert torch.load(state, weights_only=True)["epoch"] == 1


def test_resume_with_another_prefix_never_replaces_that_run(finished: Path, tmp_path: Path, capsys) -> None:
    base = copy_of(finished, tmp_path)
    shutil.copytree(base / "ck" / "base", base / "ck" / "other")
    other = tree(base / "ck" / "other")
    state = base / "ck" / "base" / "state.pth"
    assert train_CSAKD.main(tiny(base, "--resume", str(state), prefix="other")) == 2
    err = refusal(capsys)
    assert f"--resume {state} continues the run in {state.parent}, but --prefix names {base / 'ck' / 'other'}" in err
    assert tree(base / "ck" / "other") == other
    renamed = base / "mine.pth"
    shutil.copyfile(state, renamed)
    assert train_CSAKD.main(["--resume", str(renamed), "--epochs", "2"]) == 2
    assert "not a run's state file" in refusal(capsys)


# --------------------------------------------------------------------------------------------------------------------
# Nothing outside a tool's own outputs is removed; one writer per output folder


@pytest.fixture
def live_pid():
    """A live process on this host that is not this one (a concurrent writer)."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def hold_lock(lock_file: Path, pid: int) -> None:
    lock_file.write_text(json.dumps({"pid": pid, "host": HOST, "started": "now", "command": "the other writer"}))


def cubes(folder: Path, n: int = 3) -> list[Path]:
    from tests.test_faults import cube

    folder.mkdir(parents=True, exist_ok=True)
    return [cube(folder / f"c{i}.npy", seed=i) for i in range(n)]


def prepare_main(out: Path, *inputs: Path, extra: tuple[str, ...] = ()) -> int:
    from tests.test_faults import prepare

    return prepare(out, *inputs, extra=extra)


@pytest.mark.parametrize("where", ["out_is_their_folder", "out_is_a_parent"])
def test_prepare_overwrite_never_deletes_its_inputs_or_user_files(tmp_path: Path, capsys, where: str) -> None:
    out = tmp_path / "proj"
    inputs = cubes(out if where == "out_is_their_folder" else out / "raw")
    (out / "NOTES.txt").write_text("mine")
    before = tree(out)
    assert prepare_main(out, *inputs, extra=("--overwrite",)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"--out {out}: holds the input {inputs[0]}" in err, err
    assert tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["proj"]  # no staging, no lock left


def test_prepare_overwrite_refuses_a_folder_of_user_documents(tmp_path: Path, capsys) -> None:
    inputs = cubes(tmp_path / "raw")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "thesis.tex").write_text("mine")
    (docs / "sub" / "fig.png").write_bytes(b"png")
    before = tree(docs)
    assert prepare_main(docs, *inputs, extra=("--overwrite",)) == 2
    assert "holds other files (sub/fig.png, thesis.tex) that data.prepare did not write" in capsys.readouterr().err
    assert tree(docs) == before


def test_a_second_writer_on_one_output_folder_is_refused_naming_the_first(finished: Path, tmp_path: Path, capsys,
                                                                         live_pid: int) -> None:
    inputs = cubes(tmp_path / "raw")
    hold_lock(tmp_path / ".ds.lock", live_pid)
    assert prepare_main(tmp_path / "ds", *inputs) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'ds'} is in use by another process (pid {live_pid} on {HOST}" in err
    hold_lock(tmp_path / ".res.lock", live_pid)
    assert test_CSAKD.main([*tiny_test(finished, prefix="base"), "--results", str(tmp_path / "res")]) == 2
    assert f"--results {tmp_path / 'res'} is in use by another process (pid {live_pid}" in refusal(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ds.lock", ".res.lock", "raw"]


def test_a_run_never_removes_a_live_writers_files_or_look_alikes(finished: Path, tmp_path: Path,
                                                                live_pid: int) -> None:
    """A test staging its --results inside the run folder while the run resumes (D13), a user's file named like a
    temporary, and a nested folder's temporaries all survive; a killed writer's temporary is removed."""
    from tests.test_faults import dead_pid

    base = copy_of(finished, tmp_path)
    run = base / "ck" / "base"
    staging = run / f"{temp_name_prefix(run / 'eval', live_pid)}x"
    (staging / "pred").mkdir(parents=True)
    (staging / "pred" / "test_0000.mat").write_bytes(b"live")
    (run / ".notes.md.tmp-draft").write_text("mine")
    (run / "nested").mkdir()
    (run / "nested" / f"{temp_name_prefix('state.pth', dead_pid())}y").write_text("not this run's")
    killed = run / "student" / f"{temp_name_prefix('last.pth', dead_pid())}z"
    killed.write_bytes(b"half")
    keep = {k: v for k, v in tree(run).items() if k.startswith((".eval", ".notes", "nested/"))}
    assert len(keep) == 3
    assert train_CSAKD.main(tiny(base, "--resume", prefix="base", epochs=2)) == 0
    after = tree(run)
    assert {k: after.get(k) for k in keep} == keep
    assert not killed.exists()


def test_a_bench_never_replaces_another_configurations_runs_or_a_live_bench(tmp_path: Path, capsys,
                                                                            live_pid: int) -> None:
    """B3/B6: a second bench with another --lr on the same --out is refused naming the first's run, whose files stay
    byte for byte; B2: a user's own run named like a bench run likewise; a live bench's lock is named."""
    import pickle

    import benchmarks.kd as kd
    from tests.test_benchmarks_kd import bench_argv

    argv = bench_argv(tmp_path, "none", seeds=("1",))
    out = tmp_path / "bench"
    marker = tmp_path / "pwned"
    (out / "records").mkdir(parents=True)
    (out / "records" / "none_seed1.json").write_bytes(pickle.dumps(Evil(marker)))  # a planted "record"
    assert kd.main(argv) == 0
    assert not marker.exists()
    before = tree(out)
    other = tmp_path / "other.yaml"
    other.write_text((tmp_path / "tiny.yaml").read_text().replace("lr: 1.0e-3", "lr: 2.0e-3"))
    capsys.readouterr()
    assert kd.main([*argv[:1], str(other), *argv[2:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"benchmarks.kd: error: --out {out} holds run none_seed1 of "
                          f"another configuration ({out / 'records' / 'none_seed1.json'}: lr 0.001 there, 0.002 here)")
    assert tree(out) == before
    (out / "records" / "none_seed1.json").unlink()  # only the user's run folder is left
    before = tree(out)
    assert kd.main([*argv[:1], str(other), *argv[2:]]) == 2
    assert f"holds run none_seed1 of another configuration ({out / 'checkpoints' / 'none_seed1' / 'config.yaml'}" in \
        capsys.readouterr().err
    assert tree(out) == before
    hold_lock(out / "bench.lock", live_pid)
    assert kd.main(argv) == 2
    assert f"--out {out} is in use by another bench (pid {live_pid}" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------------------
# One scene, one split


@pytest.mark.parametrize("how", ["same_path", "symlink", "renamed_copy"])
def test_prepare_refuses_a_scene_given_twice(tmp_path: Path, capsys, how: str) -> None:
    inputs = cubes(tmp_path / "raw")
    twin = {"same_path": inputs[0], "symlink": tmp_path / "raw" / "alias.npy",
            "renamed_copy": tmp_path / "raw" / "c0_copy.npy"}[how]
    if how == "symlink":
        twin.symlink_to(inputs[0])
    elif how == "renamed_copy":
        shutil.copyfile(inputs[0], twin)
    assert prepare_main(tmp_path / "ds", *inputs, twin) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"data.prepare: error: {twin}: the same ") and str(inputs[0]) in err
    assert not (tmp_path / "ds").exists()


def test_check_reports_a_scene_copied_into_two_splits(tmp_path: Path) -> None:
    from tests.test_faults import check

    inputs = cubes(tmp_path / "raw", 4)
    assert prepare_main(tmp_path / "ds", *inputs) == 0
    ds = tmp_path / "ds"
    train = (ds / "train.txt").read_text().split()
    test = (ds / "test.txt").read_text().split()
    # what a prepare of an older version (or a hand-made dataset) allowed: a test entry copied into train
    for suffix in ("GT.npz.npy", "hrmsi.npz", "lrhsi.npz"):
        shutil.copyfile(ds / f"{test[0]}{suffix}", ds / f"train/copy_0{suffix}")
    (ds / "train.txt").write_text("\n".join([*train, "train/copy_0"]) + "\n")
    manifest = json.loads((ds / "manifest.json").read_text())
    manifest["inputs"].append({**manifest["inputs"][0], "scene": "copy"})
    (ds / "manifest.json").write_text(json.dumps(manifest))
    n, problems = check(ds, ds / "train.txt", ds / "val.txt", ds / "test.txt")
    assert n == 17
    assert any("1 group(s) of entries with identical ground truth" in p and "span two splits (leakage)" in p
               and "train/copy_0 (train.txt)" in p for p in problems), problems
    assert any("manifest.json: scenes c0, copy come from inputs with the same SHA-256" in p for p in problems)


# --------------------------------------------------------------------------------------------------------------------
# Every artefact read back is verified; numbers and header sizes are checked before anything is allocated


def test_a_tampered_onnx_file_is_refused_in_one_line(finished: Path, tmp_path: Path, capsys) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "s.onnx"
    ckpt = finished / "ck" / "base" / "student" / "best.pth"
    assert export_CSAKD.main(["--checkpoint", str(ckpt), "--out", str(out), "--exporter", "torchscript"]) == 0
    capsys.readouterr()
    proto = onnx.load(out)
    weight = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    raw = bytearray(weight.raw_data)
    raw[len(raw) // 2] ^= 0xFF  # flipped weight bytes: a valid protobuf, a different network
    weight.raw_data = bytes(raw)
    tampered = tmp_path / "tampered.onnx"
    onnx.save(proto, tampered)
    argv = tiny_test(finished, "--backend", "onnxruntime", "--checkpoint", str(tampered), prefix="base")
    assert test_CSAKD.main(argv) == 2
    err = refusal(capsys)
    assert f"{tampered}: corrupt: its graph (weights) does not match the SHA-256 stored at export" in err
    assert test_CSAKD.main([*argv[:-1], str(out)]) == 0  # the intact file runs


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--lr", "1e308", "--lr: expected a number > 0 and <= 1000, got 1e+308"),
    ("--snr", "1e300", "--snr: expected a number >= 0 and <= 300, got 1e+300"),
    ("--lr", "nan", "--lr: expected a finite number, got nan"),
])
def test_absurd_numbers_end_at_parse_time(tmp_path: Path, capsys, flag: str, value: str, message: str) -> None:
    assert train_CSAKD.main(tiny(tmp_path, flag, value, prefix="n")) == 2
    assert refusal(capsys) == f"error: {message}"
    assert not (tmp_path / "ck").exists()


def forged_npz(path: Path, key: str, shape: tuple[int, ...]) -> Path:
    """A few KB whose member header claims ``shape`` float32."""
    import io
    import zipfile

    import numpy as np

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{key}.npy", header.getvalue() + bytes(4096))
    return path


def test_header_sizes_are_checked_before_any_allocation(tmp_path: Path, capsys) -> None:
    """An .npz member and an unwritten HDF5 dataset claiming gigabytes: one line naming the file (data.prepare),
    and a dataset entry whose LR-HSI claims terabytes: a reported problem (data.check), not a MemoryError."""
    h5py = pytest.importorskip("h5py")
    from tests.test_faults import check

    huge = forged_npz(tmp_path / "huge.npz", "cube", (10**6, 10**6, 200))
    fill = tmp_path / "fill.h5"
    with h5py.File(fill, "w") as f:
        f.create_dataset("cube", shape=(4000, 4000, 31), dtype="f4")  # 1.98 GB of fill values, never written
    for bomb, what in ((huge, "member 'cube' claims shape (1000000, 1000000, 200)"),
                       (fill, "dataset '/cube' claims shape (4000, 4000, 31)")):
        assert prepare_main(tmp_path / "ds", bomb, *cubes(tmp_path / "raw", 2)) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
        assert err.startswith(f"data.prepare: error: {bomb}: {what}") and "Traceback" not in err, err
    inputs = cubes(tmp_path / "raw", 3)
    assert prepare_main(tmp_path / "ds", *inputs) == 0
    entry = (tmp_path / "ds" / "train.txt").read_text().split()[0]
    forged_npz(tmp_path / "ds" / f"{entry}lrhsi.npz", "lrhsi", (10**6, 10**6, 200))
    _, problems = check(tmp_path / "ds", tmp_path / "ds" / "train.txt")
    assert any(p.startswith(f"{tmp_path / 'ds' / entry}lrhsi.npz: member 'lrhsi' claims shape") for p in problems)


# --------------------------------------------------------------------------------------------------------------------
# Signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_last_validation_lets_the_run_finish(tmp_path: Path, monkeypatch, capsys,
                                                                  signum: int) -> None:
    """F1, F2: the run had finished its work; it must not promise a --resume that has nothing to train."""
    import engine.train

    real, calls = engine.train.validate, []

    def validate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the last epoch's validation (--eval_step 1, 2 epochs)
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.train, "validate", validate)
    assert train_CSAKD.main(tiny(tmp_path, prefix="sig", epochs=2)) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "arrived during the last epoch, which is complete and saved: the run finishes" in text
    assert "finished: epoch 1" in out.out and "continue with --resume" not in text
    assert torch.load(tmp_path / "ck" / "sig" / "state.pth", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_export_is_one_line_and_leaves_nothing(finished: Path, tmp_path: Path, monkeypatch, capsys,
                                                               signum: int) -> None:
    pytest.importorskip("onnx")
    import engine.deploy

    real = engine.deploy._trace

    def trace(model, path, exporter):
        real(model, path, exporter)
        try:
            os.kill(os.getpid(), signum)  # as the exporter returns: the handler raises here
            time.sleep(5)
        except Interrupted as stop:
            raise RuntimeError("torch.onnx wrapped it") from stop  # what the dynamo exporter does with errors

    monkeypatch.setattr(engine.deploy, "_trace", trace)
    ckpt = finished / "ck" / "base" / "student" / "best.pth"
    out = tmp_path / "exp" / "s.onnx"
    code = export_CSAKD.main(["--checkpoint", str(ckpt), "--out", str(out), "--exporter", "torchscript"])
    assert code == 128 + signum
    err = capsys.readouterr().err.strip()
    assert err == (f"interrupted by {signal.Signals(signum).name}: nothing was written ({out} appears whole or not "
                   f"at all)")
    assert os.listdir(tmp_path / "exp") == []


def test_export_os_faults_and_unexportable_networks_are_one_line(finished: Path, tmp_path: Path, capsys) -> None:
    ckpt = finished / "ck" / "base" / "student" / "best.pth"
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    (tmp_path / "dir.onnx").mkdir()
    for out, message in ((blocker / "s.onnx", f"cannot write {blocker / 's.onnx'}: "),
                         (tmp_path / "dir.onnx", f"--out {tmp_path / 'dir.onnx'}: is a folder")):
        assert export_CSAKD.main(["--checkpoint", str(ckpt), "--out", str(out), "--exporter", "torchscript"]) == 2
        assert message in refusal(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.onnx", "file.txt"]


def _killed_peer_worker(rank: int, port: int, tmp: str) -> None:
    """Rank ``rank`` of a 2-process run (gloo) whose rank 1 SIGKILLs itself in its third step; each rank's exit
    code and stderr go to ``<tmp>/rank<r>.json``."""
    import io
    import sys

    from engine.cotrainer import CoTrainer
    from tests.test_ddp import _join, _run_args

    _join(rank, port)
    real, calls = CoTrainer.step, []

    def step(self, *args, **kwargs):
        calls.append(1)
        if rank == 1 and len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, *args, **kwargs)

    CoTrainer.step = step
    sys.stderr = err = io.StringIO()
    code = train_CSAKD.main(_run_args(Path(tmp), "peer"))
    Path(tmp, f"rank{rank}.json").write_text(json.dumps({"code": code, "err": err.getvalue()}))


def test_a_killed_ddp_rank_ends_the_other_in_one_line(tmp_path: Path) -> None:
    """F11: the surviving process does not hang and ends with one line, exit 2, naming what to do; the state of
    the last epoch's end stays intact and no lock is left."""
    import multiprocessing

    from tests.test_ddp import _free_port

    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_killed_peer_worker, args=(r, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
        if p.is_alive():
            p.kill()
            pytest.fail("a process of the distributed run hung after its peer was killed")
    assert procs[1].exitcode == -signal.SIGKILL
    survivor = json.loads((tmp_path / "rank0.json").read_text())
    lines = [line for line in survivor["err"].strip().splitlines() if line.startswith("error:")]
    assert survivor["code"] == 2 and len(lines) == 1 and "Traceback" not in survivor["err"], survivor
    assert lines[0].startswith("error: process 0 of 2: another process of this distributed run ended or lost")
    assert lines[0].endswith("the last saved state continues with --resume")
    run = tmp_path / "ck" / "peer"
    assert torch.load(run / "state.pth", weights_only=True)["epoch"] == 0 and not (run / "run.lock").exists()


def test_a_bench_json_under_a_file_fails_before_any_run(tmp_path: Path, capsys) -> None:
    import benchmarks.kd as kd
    from tests.test_benchmarks_kd import bench_argv

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    argv = bench_argv(tmp_path, "none", seeds=("1",))
    argv[argv.index("--json") + 1] = str(blocker / "r.json")
    assert kd.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"benchmarks.kd: error: cannot write {blocker / 'r.json'}: ") and "\n" not in err
    assert not (tmp_path / "bench").exists()


def test_onnx_metadata_that_contradicts_the_graph_is_one_line(finished: Path, tmp_path: Path, capsys) -> None:
    """O3: metadata is outside the graph's digest; a file whose metadata promises other bands than its graph
    takes ends in one line when onnxruntime refuses the inputs."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "s.onnx"
    ckpt = finished / "ck" / "base" / "student" / "best.pth"
    assert export_CSAKD.main(["--checkpoint", str(ckpt), "--out", str(out), "--exporter", "torchscript"]) == 0
    proto = onnx.load(out)
    for prop in proto.metadata_props:
        if prop.key == "bands":
            prop.value = "16"
    onnx.save(proto, tmp_path / "meta16.onnx")
    capsys.readouterr()
    argv = tiny_test(finished, "--backend", "onnxruntime", "--checkpoint", str(tmp_path / "meta16.onnx"), prefix="base")
    assert test_CSAKD.main(argv) == 2
    assert f"{tmp_path / 'meta16.onnx'}: onnxruntime refused LR-HSI" in refusal(capsys)
