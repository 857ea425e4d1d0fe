"""Bad input to both scripts: one clear message, exit code 2, nothing overwritten."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train_run import ROOT, tiny, tiny_test, weights

import test_CSAKD
import train_CSAKD


def run_cli(script, argv: list[str], capsys) -> tuple[int, str]:
    code = script.main(argv)
    return code, capsys.readouterr().err


def test_bad_inputs_give_one_message(tmp_path: Path, capsys) -> None:
    args = tiny(tmp_path, prefix="ok", epochs=1)
    targs = tiny_test(tmp_path, prefix="ok")
    assert train_CSAKD.main(args) == 0
    run = tmp_path / "ck" / "ok"
    stamp = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}

    # a second fresh run on the same prefix would overwrite it
    code, err = run_cli(train_CSAKD, args, capsys)
    assert code == 2 and "already holds a run" in err and "--resume" in err
    # a config key that does not exist
    bad = tmp_path / "bad.yaml"
    bad.write_text("epoch: 3\n")
    code, err = run_cli(train_CSAKD, [*args, "--config", str(bad)], capsys)
    assert code == 2 and "'epoch'" in err and "did you mean 'epochs'" in err
    # an empty split
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    code, err = run_cli(train_CSAKD, [*args, "--dataset", "aviris", "--root", str(tmp_path), "--train_file",
                                      str(empty), "--overwrite"], capsys)
    assert code == 2 and "empty" in err and str(empty) in err
    # a missing checkpoint
    code, err = run_cli(test_CSAKD, [*targs, "--test_mode", "2", "--checkpoint", str(tmp_path / "nope.pth")], capsys)
    assert code == 2 and "nope.pth" in err and "no such file" in err
    # a mismatched (official-style, bare) checkpoint: every offending key with both shapes
    sd = {f"decoder.{k}": v for k, v in weights(run / "student" / "last.pth").items()}
    sd["decoder.last.weight"] = torch.zeros(8, 8, 1, 1)
    torch.save(sd, tmp_path / "official.pth")
    code, err = run_cli(test_CSAKD, [*targs, "--test_mode", "2", "--checkpoint", str(tmp_path / "official.pth")],
                        capsys)
    assert code == 2 and "last.weight" in err and "(8, 8, 1, 1)" in err and "(8, 8, 3, 3)" in err
    # a teacher file given to the student test
    code, err = run_cli(test_CSAKD, [*targs, "--test_mode", "2", "--checkpoint", str(run / "teacher" / "best.pth")],
                        capsys)
    assert code == 2 and "teacher" in err
    # resume without a state
    code, err = run_cli(train_CSAKD, [*tiny(tmp_path, prefix="never"), "--resume"], capsys)
    assert code == 2 and "no such file" in err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == stamp


def test_band_count_mismatch(tmp_path: Path, capsys) -> None:
    """A dataset on disk whose band count differs from --bands: one message naming the file and both counts."""
    import numpy as np

    from data import write_entry

    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for i in range(2):
        write_entry(str(root), f"train/s{i}", rng.random((16, 16, 6)).astype(np.float32),
                    {2: rng.random((16, 16, 2)).astype(np.float32)}, {0: rng.random((4, 4, 6)).astype(np.float32)})
    (root / "list.txt").write_text("train/s0\ntrain/s1\n")
    args = [*tiny(tmp_path, prefix="bands"), "--dataset", "aviris", "--root", str(root),
            "--train_file", str(root / "list.txt"), "--val_file", str(root / "list.txt")]
    code, err = run_cli(train_CSAKD, args, capsys)
    assert code == 2 and "s0GT.npz.npy" in err and "8" in err and "6" in err
    assert "Traceback" not in err
    assert not (tmp_path / "ck" / "bands").exists()


@pytest.mark.parametrize("script", ["train_CSAKD.py", "test_CSAKD.py"])
def test_cli_error_exit_code_without_traceback(tmp_path: Path, script: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("batchsize: 4\n")
    run = subprocess.run([sys.executable, script, "--config", str(bad)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert run.returncode == 2
    assert "did you mean 'batch_size'" in run.stderr and "Traceback" not in run.stderr
