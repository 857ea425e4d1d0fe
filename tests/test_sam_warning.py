"""The end-of-training warning when a network's best validation SAM is not below the bicubic baseline's on the
same validation images (README "Your own cubes"): the rule on given numbers, and a tiny run that prints it."""

from __future__ import annotations

from pathlib import Path

import torch

import engine.evaluate
import train_CSAKD
from engine.train import sam_warnings, train
from tests.test_train_run import tiny

WARNING = "best validation SAM"


def test_warning_only_when_sam_is_not_below_bicubic() -> None:
    best = {"teacher": {"sam": 4.0, "epoch": 30}, "student": {"sam": 11.08, "epoch": 110}}
    lines = sam_warnings(best, bicubic_sam=10.25, advice="train with --residual true")
    assert len(lines) == 1
    assert "student's best validation SAM 11.08° (epoch 110)" in lines[0] and "10.25°" in lines[0]
    assert "--residual true" in lines[0]
    assert sam_warnings(best, bicubic_sam=11.5, advice="x") == []  # both below: nothing to say
    assert len(sam_warnings(best, bicubic_sam=3.0, advice="x")) == 2
    never_validated = {"student": {"sam": float("inf"), "epoch": None}}
    assert sam_warnings(never_validated, bicubic_sam=10.0, advice="x") == []


def _bicubic_one_hot(lrhsi: torch.Tensor, scale: int) -> torch.Tensor:
    """A 'baseline' whose spectra are all the first band alone: a SAM far above any trained network's."""
    b, c, h, w = lrhsi.shape
    out = -torch.ones(b, c, h * scale, w * scale)
    out[:, 0] = 1.0
    return out


def test_tiny_run_warns_when_above_bicubic_and_not_otherwise(tmp_path: Path, capsys, monkeypatch) -> None:
    # One epoch of a tiny student: its validation SAM is far above the bicubic baseline's.
    summary = train(train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "none", prefix="above", epochs=1)))
    out = capsys.readouterr().out
    best, base = summary["best"]["student"]["sam"], summary["bicubic_val"]["sam"]
    assert best > base
    assert f"warning: the student's {WARNING} {best:.2f}°" in out and f"{base:.2f}°" in out
    assert "--residual true" in out

    # The same run against a baseline that is far worse on spectral angle: no warning.
    monkeypatch.setattr(engine.evaluate, "bicubic", _bicubic_one_hot)
    summary = train(train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "none", prefix="below", epochs=1)))
    out = capsys.readouterr().out
    assert summary["best"]["student"]["sam"] < summary["bicubic_val"]["sam"]
    assert WARNING not in out
