"""Loading and saving weights: official files, this project's files, and every way they can mismatch."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from models import Student, Teacher
from utils.checkpoint import FORMAT_VERSION, load_weights, read_checkpoint, save_weights
from utils.fileio import atomic_write_text

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "official"
SMALL = dict(bands=31, msi_bands=3, num_base_chs=8, num_agg_feat=4, scale=4)


def official_state(role: str, fuse: int) -> dict:
    return torch.load(REFERENCE / f"{role}_fuse{fuse}.pt", weights_only=True)["state_dict"]


def test_official_student_drops_unused_stack_with_note(caplog) -> None:
    model = Student(student_layers="1221", adaptive_fuse=3, compat="official", **SMALL)
    with caplog.at_level(logging.INFO, logger="utils.checkpoint"):
        info = load_weights(model, official_state("student", 3))
    assert info["dropped"] and all(k.startswith("hmfeat.") for k in info["dropped"])
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "hmfeat" in notes[0] and "never runs" in notes[0]


@pytest.mark.parametrize("fuse", [2, 3])
def test_official_attention_needs_official_compat(fuse: int) -> None:
    model = Teacher(adaptive_fuse=fuse, **SMALL)  # corrected attention
    with pytest.raises(ValueError, match=r"official attention .* --compat official"):
        load_weights(model, official_state("teacher", fuse))


def test_corrected_attention_into_official_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corrected.pth"
    save_weights(path, Teacher(adaptive_fuse=3, **SMALL))
    with pytest.raises(ValueError, match=r"corrected attention .* without --compat official"):
        load_weights(Teacher(adaptive_fuse=3, compat="official", **SMALL), path)


@pytest.mark.parametrize("fuse", [0, 1, 4])
def test_non_attention_official_weights_load_in_both_settings(fuse: int) -> None:
    for compat in (None, "official"):
        assert load_weights(Teacher(adaptive_fuse=fuse, compat=compat, **SMALL),
                            official_state("teacher", fuse))["source"] == "official"


def test_mismatch_lists_keys_with_both_shapes() -> None:
    model = Teacher(**{**SMALL, "bands": 30}, adaptive_fuse=3, compat="official")
    with pytest.raises(ValueError) as exc:
        load_weights(model, official_state("teacher", 3))
    text = str(exc.value)
    assert "does not match the model" in text
    assert "shape mismatch: fuse.weight: checkpoint (31, 8, 3, 3), model (30, 8, 3, 3)" in text
    assert "shape mismatch: last.weight: checkpoint (31, 31, 3, 3), model (30, 30, 3, 3)" in text


def test_missing_and_unexpected_keys_are_listed() -> None:
    state = dict(official_state("teacher", 4))
    state["_orig_mod.decoder.extra.weight"] = torch.zeros(2)
    del state["_orig_mod.decoder.last.weight"]
    with pytest.raises(ValueError) as exc:
        load_weights(Teacher(adaptive_fuse=4, **SMALL), state)
    assert "missing in checkpoint: last.weight (model (31, 31, 3, 3))" in str(exc.value)
    assert "unexpected in checkpoint: extra.weight (2,)" in str(exc.value)


def test_round_trip_keeps_weights_and_config(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Student(student_layers="1221", **SMALL)
    path = tmp_path / "student" / "best.pth"
    save_weights(path, model, {"lr": 1e-4, "prefix": "demo"})
    saved = read_checkpoint(path)
    assert saved["format_version"] == FORMAT_VERSION and saved["role"] == "student"
    assert saved["model"]["student_layers"] == [1, 2, 2, 1]
    assert not any(k.startswith(("decoder.", "_orig_mod.")) for k in saved["state_dict"])
    torch.manual_seed(1)
    other = Student(**{k: v for k, v in saved["model"].items() if k != "role"})
    info = load_weights(other, path)
    assert info == {"source": "csakd", "dropped": [], "config": {"lr": 1e-4, "prefix": "demo"}}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True))
    assert [p.name for p in path.parent.iterdir()] == ["best.pth"]  # no temporary file left behind


def test_unreadable_files(tmp_path: Path) -> None:
    model = Teacher(adaptive_fuse=0, **SMALL)
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*nowhere\.pth: no such file"):
        load_weights(model, tmp_path / "nowhere.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"checkpoint .*corrupt\.pth: cannot be read as a PyTorch file"):
        load_weights(model, corrupt)
    truncated = tmp_path / "truncated.pth"
    save_weights(truncated, model)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"truncated\.pth: cannot be read"):
        load_weights(model, truncated)


def test_atomic_writes_get_ordinary_permissions(tmp_path: Path) -> None:
    """Outputs are written through a private temporary file but end up as readable as a plain open() makes
    them (checkpoints on a shared server must stay readable by the group)."""
    atomic_write_text(tmp_path / "a.txt", "x")
    (tmp_path / "b.txt").write_text("x")
    assert os.stat(tmp_path / "a.txt").st_mode & 0o777 == os.stat(tmp_path / "b.txt").st_mode & 0o777
