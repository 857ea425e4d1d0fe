"""The second hostile test (issue 21): no file this project reads runs code, and nothing it removes is anyone
else's. Every case asserts the one-line message, the exit code and what is left behind.

The planted pickle (:class:`Evil`) writes a marker file when it is unpickled; :func:`test_the_planted_pickle_is_live`
shows that a full ``torch.load`` does run it, so a missing marker elsewhere means the code never ran.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import export_CSAKD
import test_CSAKD
import train_CSAKD
from tests.test_train_run import tiny, tiny_config, tiny_test
from utils.checkpoint import DIGEST_KEY, TRAIN_STATE_FORMAT, tensor_digest


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
    from utils.config import build_train_parser, parse_config

    ok = tmp_path / "ok.yaml"
    ok.write_text("val_metrics: &m [psnr, sam]\nsynthetic_scenes: &n [4, 2, 2]\n")
    cfg = parse_config(build_train_parser(), ["--config", str(ok)])
    assert cfg["synthetic_scenes"] == [4, 2, 2] and cfg["val_metrics"] == ["psnr", "sam"]
    long = tmp_path / "long.yaml"
    long.write_text("synthetic_scenes: [" + ", ".join(["1"] * 100000) + "]\n")
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
