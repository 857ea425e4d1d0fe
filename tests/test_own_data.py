"""The own-data recipe (docs/own-data.md): its configs train with residual learning and read what
data.prepare writes; the end-of-training warning when a network's best validation SAM is not below the bicubic
baseline's on the same validation images (the rule on given numbers, and a tiny run that prints it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import engine.evaluate
import train_CSAKD
from data import build_dataset
from data.prepare import main as prepare_main
from engine.train import sam_warnings, train
from tests.test_train_run import tiny

WARNING = "best validation SAM"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["own31_rgb.yaml", "cube31_rgb.yaml"])
def test_own_data_configs_learn_a_residual(name: str) -> None:
    cfg = train_CSAKD.load_config(["--config", str(CONFIGS / name)])
    assert cfg["residual"] is True and cfg["compat"] is None and cfg["bands"] == 31 and cfg["msi_bands"] == 3


def test_own_data_config_reads_a_prepared_dataset(tmp_path: Path) -> None:
    out = tmp_path / "own31"
    assert prepare_main(["--synthetic", "3", "--synthetic_size", "32", "--bands", "31", "--wavelengths", "visible31",
                         "--srf", "rgb", "--tile", "16", "--split_fractions", "1", "1", "1", "--out", str(out)]) == 0
    cfg = train_CSAKD.load_config(["--config", str(CONFIGS / "own31_rgb.yaml"), "--root", str(out),
                                   "--image_size", "16", "--crop_size", "8"])
    sample = build_dataset(cfg, "val")[0]
    assert sample["lrhsi"].shape == (31, 4, 4) and sample["hrmsi"].shape == (3, 16, 16)


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
