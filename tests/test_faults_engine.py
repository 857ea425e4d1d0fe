"""Fault injection inside the training loop (issue 12): kills at random moments, SIGINT and SIGTERM (one or two),
concurrent runs on one folder, ``--overwrite``, ``--resume`` with no epochs left, bad data in the first batches,
divergence, TensorBoard write errors. Each case asserts the message, the exit code and the files left behind;
every resumed run is compared with an uninterrupted one (``--deterministic``: equal weights, bit for bit).

Signals are real: sent by the test to a training subprocess at seeded random moments, or sent by the training
process to itself from inside a chosen step (``os.kill``), which places them exactly. A full disk under
TensorBoard is simulated by an event-record write that fails with ENOSPC.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import data.prepare
import engine.train
import test_CSAKD
import train_CSAKD
from data.sample import FusionDataset
from engine.cotrainer import CoTrainer
from engine.state import load_training_state
from tests.test_faults import dead_pid, one_line_error, tree
from tests.test_train_run import ROOT, assert_same_weights, tiny, tiny_test
from utils.fileio import temp_name_prefix

STEPS = 4  # steps per epoch: 8 training scenes, batch 2
EPOCHS = 2
ROLES = ("teacher", "student")


def args(base: Path, *extra: str, prefix: str = "run", epochs: int = EPOCHS) -> list[str]:
    return tiny(base, "--synthetic_scenes", "8", "2", "2", "--tb_scenes", "0", *extra, prefix=prefix, epochs=epochs)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, one_thread) -> Path:
    """An uninterrupted run (``<base>/ck/run``): the reference every interrupted run must end equal to."""
    base = tmp_path_factory.mktemp("straight")
    assert train_CSAKD.main(args(base)) == 0
    return base


def assert_equal_to_straight(straight: Path, base: Path, prefix: str = "run") -> None:
    for role in ROLES:
        assert_same_weights(straight / "ck" / "run" / role / "last.pth", base / "ck" / prefix / role / "last.pth")
    a, b = (load_training_state(p / "ck" / name / "state.pth") for p, name in ((straight, "run"), (base, prefix)))
    assert a["best"] == b["best"] and a["iteration"] == b["iteration"] and a["val"] == b["val"]


def leftovers(run: Path) -> list[str]:
    """Lock and temporary files in a run folder (none may remain after a run ends, however it ends)."""
    return [str(p) for p in run.rglob("*") if p.name == "run.lock" or ".tmp-" in p.name]


def signal_at_step(monkeypatch, signum: int, steps: tuple[int, ...]) -> None:
    """The training process sends itself ``signum`` while it is in each of the given (1-based) steps."""
    real, calls = CoTrainer.step, {"n": 0}

    def step(self, batch, noise=None, **kwargs):
        calls["n"] += 1
        if calls["n"] in steps:
            os.kill(os.getpid(), signum)
        return real(self, batch, noise, **kwargs)

    monkeypatch.setattr(CoTrainer, "step", step)


# --------------------------------------------------------------------------------------------------------------------
# Interrupts


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_epoch_saves_a_state_that_resumes_exactly(straight: Path, tmp_path: Path, monkeypatch, capsys,
                                                             signum: int) -> None:
    name = signal.Signals(signum).name
    signal_at_step(monkeypatch, signum, (STEPS + 2,))  # in the second step of epoch 1
    assert train_CSAKD.main(args(tmp_path)) == 128 + signum
    run = tmp_path / "ck" / "run"
    err = capsys.readouterr().err.strip()
    assert err == (f"interrupted by {name} at step 2 of {STEPS} of epoch 1: resumable state saved in "
                   f"{run / 'state.pth'}; continue with --resume")
    state = load_training_state(run / "state.pth")
    assert (state["epoch"], state["position"], state["iteration"]) == (0, 2, STEPS + 2)
    assert not leftovers(run)
    monkeypatch.undo()
    assert train_CSAKD.main([*args(tmp_path), "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert_equal_to_straight(straight, tmp_path)


def test_second_signal_during_the_save_keeps_the_previous_state(tmp_path: Path, monkeypatch, capsys) -> None:
    signal_at_step(monkeypatch, signal.SIGINT, (STEPS + 1,))
    run = tmp_path / "ck" / "run"
    real_save = torch.save

    def save(obj, f, *a, **k):  # the second Ctrl-C arrives while the stop state is being written
        real_save(obj, f, *a, **k)
        if isinstance(obj, dict) and obj.get("position"):
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(torch, "save", save)
    assert train_CSAKD.main(args(tmp_path)) == 130
    err = one_line_error_any(capsys)
    assert err == ("interrupted by a second SIGINT before the state was saved; the last saved state is intact: "
                   "continue with --resume")
    state = load_training_state(run / "state.pth")  # the end of epoch 0, complete
    assert state["epoch"] == 0 and "position" not in state
    assert not leftovers(run)


def test_signals_stop_the_one_shot_scripts_with_nothing_written(straight: Path, tmp_path: Path, monkeypatch,
                                                                capsys) -> None:
    from engine import testing

    real_evaluate, real_scene = testing.evaluate, data.prepare.make_scene

    def evaluate(*a, **k):  # SIGTERM while testing
        os.kill(os.getpid(), signal.SIGTERM)
        return real_evaluate(*a, **k)

    def make_scene(*a, **k):  # Ctrl-C while preparing
        os.kill(os.getpid(), signal.SIGINT)
        return real_scene(*a, **k)

    monkeypatch.setattr(testing, "evaluate", evaluate)  # test_CSAKD.py's evaluation, in engine.testing
    monkeypatch.setattr(data.prepare, "make_scene", make_scene)
    assert test_CSAKD.main([*tiny_test(straight, prefix="run"), "--results", str(tmp_path / "res")]) == 143
    assert one_line_error_any(capsys) == ("interrupted by SIGTERM: no results were written (a --results folder "
                                          "appears whole or not at all)")
    out = tmp_path / "ds"
    assert data.prepare.main(["--out", str(out), "--synthetic", "2", "--synthetic_size", "32", "--bands", "8"]) == 130
    err = capsys.readouterr().err  # after the progress bar: the one line
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"data.prepare: interrupted by SIGINT: no dataset was written ({out} "
                                            f"appears whole or not at all)")
    assert os.listdir(tmp_path) == []


# Run as `python -c`: sends `signame` to itself when the script starts importing torch (a meta-path finder sees the
# import before any of torch is loaded), then runs the script as `python SCRIPT --help` would.
SIGNAL_AT_TORCH_IMPORT = """
import os, runpy, signal, sys

class SignalAtTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), SIGNUM)
        return None

SIGNUM = getattr(signal, sys.argv[2])
sys.meta_path.insert(0, SignalAtTorch())
script = sys.argv[1]
sys.argv = [script, "--help"]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize(("script", "signame"), [("train_CSAKD.py", "SIGINT"), ("test_CSAKD.py", "SIGTERM"),
                                                  ("export_CSAKD.py", "SIGINT")])
def test_signal_while_importing_is_one_line(script: str, signame: str) -> None:
    proc = subprocess.run([sys.executable, "-c", SIGNAL_AT_TORCH_IMPORT, script, signame], cwd=ROOT, text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 128 + getattr(signal, signame), proc.stderr
    assert proc.stderr.strip() == f"{script}: interrupted by {signame} while starting: nothing was written"
    assert proc.stdout == ""  # stopped before --help was printed


def one_line_error_any(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def start(base: Path, *extra: str) -> subprocess.Popen:
    """A training subprocess (the real script), once its loop is about to start (its "batch:" line)."""
    proc = subprocess.Popen([sys.executable, "train_CSAKD.py", *args(base, *extra)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    for line in proc.stdout:
        if line.startswith("batch:"):
            return proc
    raise AssertionError(f"training ended before its loop: {proc.wait()} {proc.stderr.read()}")


def test_kills_and_terms_at_random_moments_then_resume_equals_uninterrupted(straight: Path, tmp_path: Path,
                                                                           capsys) -> None:
    """SIGTERM, then SIGKILL, each after a seeded random delay in the loop; a second run meanwhile is refused;
    the resumed run ends with the uninterrupted run's weights."""
    delays = random.Random(12).uniform
    run = tmp_path / "ck" / "run"
    for signum, extra, most in ((signal.SIGTERM, (), 1.0), (signal.SIGKILL, ("--resume",), 0.8)):
        proc = start(tmp_path, *extra)
        try:
            # another run in the same folder meanwhile: refused, naming the holder
            assert train_CSAKD.main(args(tmp_path, "--overwrite")) == 2
            err = one_line_error(capsys)
            assert f"run folder {run} is in use by another run (pid {proc.pid} on " in err and "train_CSAKD.py" in err
            time.sleep(delays(0.1, most))  # 2 epochs take longer: the signal lands in the loop
            proc.send_signal(signum)
            _, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if signum == signal.SIGTERM:
            assert proc.returncode == 143, stderr
            assert stderr.strip().startswith("interrupted by SIGTERM at ") and "\n" not in stderr.strip(), stderr
            assert not leftovers(run)
        else:
            assert proc.returncode == -signal.SIGKILL
            # killed while training, nobody released the lock: the next run takes it over (killed after the
            # release, as the process was ending, there is none)
            stale = (run / "run.lock").exists()
    state = load_training_state(run / "state.pth")
    if state["epoch"] + 1 < EPOCHS:  # else the kill came after the last state (the resumed run had little left)
        assert train_CSAKD.main([*args(tmp_path), "--resume"]) == 0
        assert ("took over the lock of a run that ended without releasing it" in capsys.readouterr().out) == stale
    assert not leftovers(run)
    assert_equal_to_straight(straight, tmp_path)


def test_live_lock_is_named_and_a_dead_ones_is_taken_over(straight: Path, tmp_path: Path, capsys) -> None:
    shutil.copytree(straight / "ck", tmp_path / "ck")
    run = tmp_path / "ck" / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / "run.lock").write_text(f'{{"pid": {holder.pid}, "host": "{socket.gethostname()}", '
                                      f'"started": "today", "command": "train_CSAKD.py --prefix run"}}\n')
        before = tree(tmp_path / "ck")
        assert train_CSAKD.main([*args(tmp_path), "--resume", "--epochs", "3"]) == 2
        err = one_line_error(capsys)
        assert err == (f"error: run folder {run} is in use by another run (pid {holder.pid} on "
                       f"{socket.gethostname()}, started today: train_CSAKD.py --prefix run); wait for it, stop it, "
                       f"or choose another --prefix (if no such run exists, delete {run / 'run.lock'})")
        assert tree(tmp_path / "ck") == before
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale, taken over with a note, and released at the end
    assert train_CSAKD.main([*args(tmp_path), "--resume", "--epochs", "3"]) == 0
    assert (f"note: took over the lock of a run that ended without releasing it (pid {holder.pid} on "
            f"{socket.gethostname()}, started today: train_CSAKD.py --prefix run)") in capsys.readouterr().out
    assert not leftovers(run)


# --------------------------------------------------------------------------------------------------------------------
# The run folder


def test_overwrite_leaves_nothing_old(straight: Path, tmp_path: Path) -> None:
    shutil.copytree(straight / "ck", tmp_path / "ck")
    shutil.copytree(straight / "runs", tmp_path / "runs")
    run, events = tmp_path / "ck" / "run", tmp_path / "runs" / "run"
    old_events = set(os.listdir(events))
    (run / "student" / f"{temp_name_prefix('last.pth', dead_pid())}killed").write_bytes(b"half")  # a killed write
    assert train_CSAKD.main([*args(tmp_path, "--overwrite", "--kd_mode", "none", epochs=1)]) == 0
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == [
        "config.yaml", "state.pth", "state_good.pth", "student", "student/best.pth", "student/last.pth"]
    assert not set(os.listdir(events)) & old_events  # the old TensorBoard events are gone
    state = load_training_state(run / "state.pth")
    assert state["epoch"] == 0 and state["config"]["kd_mode"] == "none"


def test_resume_with_no_epochs_left_changes_nothing(straight: Path, tmp_path: Path, capsys) -> None:
    shutil.copytree(straight / "ck", tmp_path / "ck")
    before = tree(tmp_path / "ck")
    assert train_CSAKD.main([*args(tmp_path), "--resume"]) == 2  # the saved --epochs: already complete
    err = one_line_error(capsys)
    assert err == (f"error: --resume {tmp_path / 'ck' / 'run' / 'state.pth'}: the run has completed 2 epoch(s); "
                   f"--epochs 2 leaves nothing to train (give --epochs greater than 2); nothing was written")
    assert train_CSAKD.main([*args(tmp_path, epochs=1), "--resume"]) == 2
    assert "--epochs 1 leaves nothing to train" in one_line_error(capsys)
    assert tree(tmp_path / "ck") == before


@pytest.mark.parametrize("change", [("--kd_mode", "none"), ("--kd_strategy", "hkd", "--hkd_heads", "2")])
def test_resume_cannot_change_what_the_state_holds(straight: Path, tmp_path: Path, capsys, change) -> None:
    shutil.copytree(straight / "ck", tmp_path / "ck")
    before = tree(tmp_path / "ck")
    assert train_CSAKD.main([*args(tmp_path, epochs=3), "--resume", *change]) == 2
    saved = "online" if change[0] == "--kd_mode" else "csakd"
    assert one_line_error(capsys) == (
        f"error: --resume {tmp_path / 'ck' / 'run' / 'state.pth'}: "
        f"{change[0]} {saved} (saved) vs {change[1]} (asked): "
        f"a state cannot change these; start a new run (another --prefix) and take the weights with --teacher_ckpt "
        f"or --resume_ind; nothing was written")
    assert tree(tmp_path / "ck") == before


def test_bad_data_in_the_first_batch_does_not_block_the_corrected_rerun(tmp_path: Path, monkeypatch,
                                                                        capsys) -> None:
    real = FusionDataset.__getitem__

    def broken(self, index: int) -> dict:
        if self.train and index == 3:  # sample 0 is checked before training; this one is met in the loop
            raise ValueError("synthetic/train_0003: simulated unreadable file")
        return real(self, index)

    monkeypatch.setattr(FusionDataset, "__getitem__", broken)
    run = tmp_path / "ck" / "run"
    assert train_CSAKD.main(args(tmp_path)) == 2
    assert one_line_error(capsys) == "error: synthetic/train_0003: simulated unreadable file"
    assert load_training_state(run / "state.pth")["iteration"] == 0 and not leftovers(run)
    monkeypatch.undo()
    assert train_CSAKD.main(args(tmp_path, epochs=1)) == 0  # the corrected re-run, without --overwrite
    assert "holds a run that failed before its first step; replacing it" in capsys.readouterr().out
    assert load_training_state(run / "state.pth")["epoch"] == 0


# --------------------------------------------------------------------------------------------------------------------
# Divergence and TensorBoard


def test_divergence_restores_the_known_good_state_and_ends_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """Epoch 0 is clean (known-good); epoch 1 has one non-finite step (its state is not known-good); from epoch 2
    on every loss is NaN: each restore reads the epoch-0 state, and after the last one the run ends."""
    real, calls, restored = CoTrainer.step, {"n": 0}, []

    def step(self, batch, noise=None, **kwargs):
        calls["n"] += 1
        if calls["n"] == STEPS + 1 or calls["n"] > 2 * STEPS:
            batch = {**batch, "gt": torch.full_like(batch["gt"], float("nan"))}
        return real(self, batch, noise, **kwargs)

    real_load = CoTrainer.load_state_dict

    def load(self, state):
        restored.append(state["epoch"])
        return real_load(self, state)

    monkeypatch.setattr(CoTrainer, "step", step)
    monkeypatch.setattr(CoTrainer, "load_state_dict", load)
    monkeypatch.setattr(engine.train, "MAX_NAN_RESTORES", 2)
    run = tmp_path / "ck" / "run"
    assert train_CSAKD.main(args(tmp_path, "--nan_patience", "2", epochs=4)) == 3
    captured = capsys.readouterr()
    err, out = captured.err.strip(), captured.out
    assert err == (f"error: training diverged: the losses stayed non-finite through 2 restores of the last "
                   f"known-good state with halved learning rates (see the lines above); {run / 'state_good.pth'} "
                   f"keeps that state (after epoch 0)")
    assert restored == [0, 0]  # never the state saved after epoch 1's non-finite step
    assert f"restored the last known-good state ({run / 'state_good.pth'}, after epoch 0) and halved the " in out
    assert "halved the learning rates 2 time(s) since it (teacher " in out and "student 0.00025)" in out  # 1e-3 / 4
    assert load_training_state(run / "state_good.pth")["epoch"] == 0
    assert load_training_state(run / "state.pth")["epoch"] == 2
    assert not leftovers(run)


def test_tensorboard_write_errors_are_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert train_CSAKD.main([*args(tmp_path, epochs=1), "--log_dir", str(blocker / "runs")]) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"error: cannot write {blocker / 'runs' / 'run'}: ") and "[ENOTDIR]" in err

    from tensorboard.summary.writer.record_writer import RecordWriter

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RecordWriter, "write", full)
    assert train_CSAKD.main(args(tmp_path, "--overwrite", prefix="tb", epochs=1)) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.err.strip() == (f"error: cannot write {tmp_path / 'runs' / 'tb'}: No space left on device "
                                    f"[ENOSPC]")
    assert not leftovers(tmp_path / "ck" / "tb")
