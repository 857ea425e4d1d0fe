"""Whole runs on tiny synthetic data: train → resume → test, exact resume, SIGKILL during a checkpoint write,
TensorBoard tags, recovery from non-finite losses."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

import test_CSAKD
import train_CSAKD
from engine.state import load_training_state
from engine.train import train
from utils.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# Shared settings of the tiny runs, in a YAML file as users do: both scripts read it (each ignores the
# other's keys); the command line adds the run names and overrides.
TINY_YAML = """
dataset: synthetic
bands: 8
msi_bands: 2
image_size: 16
crop_size: 8
synthetic_scenes: [4, 2, 2]
num_base_chs: 8
num_agg_feat: 4
student_layers: "1111"
batch_size: 2
eval_step: 1
workers: 0
device: cpu
no_progress: true
lr: 1.0e-3
tb_scenes: 1
deterministic: true
"""


def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    if not path.exists():
        path.write_text(TINY_YAML + f"log_dir: {tmp_path / 'runs'}\ncheckpoint_dir: {tmp_path / 'ck'}\n")
    return path


def tiny(tmp_path: Path, *extra: str, prefix: str = "tiny", epochs: int = 2) -> list[str]:
    """Arguments of a tiny training run."""
    return ["--config", str(tiny_config(tmp_path)), "--epochs", str(epochs), "--prefix", prefix, *extra]


def tiny_test(tmp_path: Path, *extra: str, prefix: str = "tiny") -> list[str]:
    """Arguments of ``test_CSAKD.py`` on a tiny run."""
    return ["--config", str(tiny_config(tmp_path)), "--prefix", prefix, *extra]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs between {a} and {b}"


def test_train_resume_test_end_to_end(tmp_path: Path, capsys) -> None:
    """Two epochs, resumed for a third, then both test modes write their results."""
    assert train_CSAKD.main(tiny(tmp_path, epochs=2)) == 0
    run = tmp_path / "ck" / "tiny"
    for rel in ("teacher/best.pth", "teacher/last.pth", "student/best.pth", "student/last.pth", "state.pth",
                "config.yaml"):
        assert (run / rel).is_file(), rel
    saved = read_checkpoint(run / "student" / "last.pth")
    assert saved["format"] == "csakd-weights" and saved["config"]["student_layers"] == "1111"
    state = load_training_state(run / "state.pth")
    assert state["epoch"] == 1 and state["iteration"] == 4 and set(state["networks"]) == {"teacher", "student"}
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda"}

    assert train_CSAKD.main(tiny(tmp_path, "--resume", epochs=3)) == 0
    assert load_training_state(run / "state.pth")["epoch"] == 2
    assert "resumed from" in capsys.readouterr().out

    for mode, role in ((1, "teacher"), (2, "student")):
        out = tmp_path / f"res{mode}"
        assert test_CSAKD.main([*tiny_test(tmp_path), "--test_mode", str(mode), "--results", str(out)]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["model"] == role and summary["images"] == 2
        assert set(summary["metrics"]) >= {"psnr", "sam", "ergas", "rmse", "ssim", "uiqi", "cc"}  # 16×16 images
        assert set(summary["baselines"]["bicubic"]) >= {"psnr", "sam", "ergas", "rmse", "ssim"}
        assert summary["time_ms"] > 0 and summary["peak_memory_mb"] > 0 and summary["config"]["bands"] == 8
        lines = (out / "per_image.csv").read_text().splitlines()
        assert len(lines) == 3 and lines[0].startswith("name,psnr")
        from scipy.io import loadmat
        pred = loadmat(out / "pred" / "test_0000.mat")["pred"]
        assert pred.shape == (16, 16, 8)
    table = capsys.readouterr().out
    assert "bicubic (mean)" in table and "synthetic/test_0001" in table


def test_resume_is_exact(tmp_path: Path) -> None:
    """Stopped after epoch 0 and resumed, a deterministic run ends with the uninterrupted run's weights."""
    straight = tiny(tmp_path, prefix="straight", epochs=2)
    train(train_CSAKD.load_config(straight))
    split = tiny(tmp_path, prefix="split", epochs=2)
    train(train_CSAKD.load_config(split), stop_after=0)
    assert load_training_state(tmp_path / "ck" / "split" / "state.pth")["epoch"] == 0
    train(train_CSAKD.load_config([*split, "--resume"]))
    for role in ("teacher", "student"):
        assert_same_weights(tmp_path / "ck" / "straight" / role / "last.pth",
                            tmp_path / "ck" / "split" / role / "last.pth")
    a = load_training_state(tmp_path / "ck" / "straight" / "state.pth")
    b = load_training_state(tmp_path / "ck" / "split" / "state.pth")
    assert a["best"] == b["best"] and a["iteration"] == b["iteration"]
    assert a["optimizers"]["student"]["param_groups"][0]["lr"] == b["optimizers"]["student"]["param_groups"][0]["lr"]


# A training subprocess whose torch.save sleeps after writing the second state.pth temporary file (the end of
# epoch 0), so that the test can SIGKILL it exactly while that checkpoint is being written (before the rename).
SLOW_SAVE = """
import sys, time, torch
_save, _count = torch.save, [0]
def slow_save(obj, f, *a, **k):
    _save(obj, f, *a, **k)
    if "state.pth.tmp" in str(getattr(f, "name", "")):
        _count[0] += 1
        if _count[0] == 2:
            f.flush(); time.sleep(60)
torch.save = slow_save
import train_CSAKD
sys.exit(train_CSAKD.main(sys.argv[1:]))
"""


def test_sigkill_during_checkpoint_write_resumes(tmp_path: Path) -> None:
    args = tiny(tmp_path, prefix="killed", epochs=2)
    run = tmp_path / "ck" / "killed"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (list(run.glob(".state.pth.tmp-*")) and (run / "state.pth").exists()):
            assert proc.poll() is None, "training ended before the second state write"
            assert time.monotonic() < deadline, "no second state write observed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert list(run.glob(".state.pth.tmp-*")), "the kill hit the write: its temporary file is left over"
    assert load_training_state(run / "state.pth")["epoch"] == -1  # the previous, complete state
    assert train_CSAKD.main([*args, "--resume"]) == 0
    assert load_training_state(run / "state.pth")["epoch"] == 1
    assert read_checkpoint(run / "student" / "last.pth")["format"] == "csakd-weights"


def test_tensorboard_tags(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert train_CSAKD.main(tiny(tmp_path, prefix="tb", epochs=1)) == 0
    acc = EventAccumulator(str(tmp_path / "runs" / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    expected = {"losses/teacher/total", "losses/teacher/rec", "losses/teacher/sam", "losses/teacher/beba",
                "losses/student/total", "losses/student/kd", "losses/student/feat", "lr/teacher", "lr/student"}
    expected |= {f"metrics/val/{r}/{m}" for r in ("teacher", "student") for m in ("psnr", "sam", "ergas", "rmse",
                                                                                  "ssim")}
    assert expected <= scalars, expected - scalars
    assert "images/val_0" in acc.Tags()["images"]


def test_nonfinite_losses_restore_and_halve_lr(tmp_path: Path, monkeypatch, capsys) -> None:
    """Non-finite losses are skipped and counted; after --nan_patience in a row the last good state is
    restored with halved learning rates and training goes on."""
    from engine.cotrainer import CoTrainer

    real = CoTrainer.step
    calls = {"n": 0}

    def flaky(self, batch, noise=None, **kwargs):
        calls["n"] += 1
        if calls["n"] in (2, 3):  # two bad batches in a row in epoch 0
            batch = {**batch, "gt": torch.full_like(batch["gt"], float("nan"))}
        return real(self, batch, noise, **kwargs)

    monkeypatch.setattr(CoTrainer, "step", flaky)
    summary = train(train_CSAKD.load_config(tiny(tmp_path, "--nan_patience", "2", prefix="nan", epochs=2)))
    out = capsys.readouterr().out
    assert "restored the last known-good state" in out
    assert summary["nonfinite_steps"] == {"teacher": 2, "student": 2} and summary["nan_restores"] == 1
    state = load_training_state(tmp_path / "ck" / "nan" / "state.pth")
    # lr 1e-3 halved once, then cosine (teacher) / StepLR (student) over the remaining epochs
    assert state["schedulers"]["student"]["base_lrs"] == [5e-4]
    for p in weights(tmp_path / "ck" / "nan" / "student" / "last.pth").values():
        assert torch.isfinite(p).all()


def test_eval_last_validates_the_final_epoch(tmp_path: Path) -> None:
    """--eval_step 2 over 2 epochs validates epoch 0 only (the official rule); --eval_last adds the last epoch."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for eval_last in (False, True):
        prefix = f"last{int(eval_last)}"
        extra = ("--eval_step", "2", "--kd_mode", "none", *(("--eval_last",) if eval_last else ()))
        summary = train(train_CSAKD.load_config(tiny(tmp_path, *extra, prefix=prefix, epochs=2)))
        acc = EventAccumulator(str(tmp_path / "runs" / prefix), size_guidance={"scalars": 0})
        acc.Reload()
        steps = [e.step for e in acc.Scalars("metrics/val/student/sam")]
        per_epoch = summary["iteration"] // 2
        assert steps == ([per_epoch, 2 * per_epoch] if eval_last else [per_epoch]), (eval_last, steps)
