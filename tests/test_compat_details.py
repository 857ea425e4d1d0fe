"""Compat details: fp16-safe official attention, validation subset (decisions #7), best checkpoint per network
(#8), the official warm-start layout, and ``--compile`` (#14) in both settings."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from test_train_run import tiny

import engine.train as engine_train
import train_CSAKD
from engine.evaluate import validate, validation_every
from engine.run_folder import warm_start_paths
from engine.train import train
from models import Student
from models.fusion import CSAFusion
from utils.checkpoint import read_checkpoint

COMPATS = [None, "official"]


def test_official_attention_is_fp16_safe_and_unchanged() -> None:
    """Raw q·kᵀ over all positions overflows fp16 here; the map is computed in float32 under autocast."""
    torch.manual_seed(0)
    fuser = CSAFusion(8, "official").eval()
    with torch.no_grad():
        fuser.query_conv.weight.mul_(30)
        fuser.key_conv.weight.copy_(fuser.query_conv.weight)  # q = k: diagonal products Σ q² over 1024 positions
        fuser.key_conv.bias.copy_(fuser.query_conv.bias)
    streams = [torch.randn(1, 8, 32, 32) for _ in range(3)]
    streams.insert(1, streams[0])
    with torch.no_grad():
        q = fuser.query_conv(streams[0]).reshape(1, 4, -1, 32 * 32)
        k = fuser.key_conv(streams[1]).reshape(1, 4, -1, 32 * 32)
        assert not torch.isfinite(q.half() @ k.half().transpose(-2, -1)).all()  # the overflow being guarded
        reference = fuser(*streams)
        with torch.autocast("cpu", dtype=torch.float16):
            half = fuser(*streams)
            attn = fuser.attention_map(streams[0], streams[1])
    assert attn.dtype == torch.float32 and torch.isfinite(attn).all()
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), reference, rtol=2e-2, atol=2e-2)  # fp16 rounding of the convs


@pytest.mark.parametrize("compat", COMPATS)
def test_validation_subset(compat) -> None:
    """Decision #7: every 5th validation batch under --compat official, the whole set otherwise."""
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, lrhsi, hrmsi):
            seen.append(len(lrhsi))
            return torch.nn.functional.interpolate(lrhsi, scale_factor=4), None

    batches = [{"lrhsi": torch.rand(1, 3, 2, 2), "hrmsi": torch.rand(1, 2, 8, 8), "gt": torch.rand(1, 3, 8, 8),
                "maxv": torch.ones(1), "minv": torch.zeros(1), "name": [f"v{i}"]} for i in range(11)]
    cfg = {"scale": 4, "compat": compat, "val_metrics": ["sam"]}
    every = validation_every(cfg)
    validate({"student": Probe()}, batches, cfg, torch.device("cpu"), every=every)
    assert len(seen) == (3 if compat == "official" else 11)  # batches 0, 5, 10 of 11


@pytest.mark.parametrize("compat", COMPATS)
def test_best_checkpoint_by_lowest_sam_per_network(compat, tmp_path: Path, monkeypatch) -> None:
    """Decision #8: each network's best.pth is its own lowest validation SAM; a NaN never wins."""
    script = {"teacher": [3.0, 1.0, 2.0], "student": [2.0, 3.0, math.nan]}
    epoch = {"n": -1}

    def scripted(nets, *args, **kwargs):
        epoch["n"] += 1
        return {r: {"sam": script[r][epoch["n"]], "psnr": 30.0} for r in nets}, []

    monkeypatch.setattr(engine_train, "validate", scripted)
    extra = ("--compat", "official") if compat else ()
    summary = train(train_CSAKD.load_config(tiny(tmp_path, *extra, epochs=3)))
    assert summary["best"] == {"teacher": {"sam": 1.0, "epoch": 1}, "student": {"sam": 2.0, "epoch": 0}}


@pytest.mark.parametrize("compat", COMPATS)
def test_warm_start_layouts(compat, tmp_path: Path) -> None:
    """--resume_ind: this project's run folder (last.pth of both); under --compat official an official tree
    (teacher_checkpoint/<prefix>/best.pth, student_checkpoint/<prefix>/last.pth) as the official script reads it."""
    cfg = {"compat": compat, "prefix": "P", "resume_ckpt": str(tmp_path), "checkpoint_dir": "ck"}
    ours = warm_start_paths(cfg, ["teacher", "student"])
    assert ours == {r: str(tmp_path / r / "last.pth") for r in ("teacher", "student")}
    (tmp_path / "teacher_checkpoint" / "P").mkdir(parents=True)
    paths = warm_start_paths(cfg, ["teacher", "student"])
    if compat == "official":
        assert paths == {"teacher": str(tmp_path / "teacher_checkpoint" / "P" / "best.pth"),
                         "student": str(tmp_path / "student_checkpoint" / "P" / "last.pth")}
    else:
        assert paths == ours


def test_official_warm_start_loads_official_files(tmp_path: Path, monkeypatch) -> None:
    """An official tree with official (prefixed) files warm-starts a --compat official run."""
    run = tmp_path / "first"
    train(train_CSAKD.load_config(tiny(tmp_path, "--compat", "official", prefix="P", epochs=1)))
    for role, which in (("teacher", "best"), ("student", "last")):
        state = read_checkpoint(tmp_path / "ck" / "P" / role / f"{which}.pth")["state_dict"]
        official = {f"_orig_mod.decoder.{k}": v for k, v in state.items()}
        (run / f"{role}_checkpoint" / "Q").mkdir(parents=True)
        torch.save(official, run / f"{role}_checkpoint" / "Q" / f"{which}.pth")
    shutil.rmtree(tmp_path / "ck")
    cfg = train_CSAKD.load_config(tiny(tmp_path, "--compat", "official", "--resume_ind", "1",
                                       "--resume_ckpt", str(run), prefix="Q", epochs=2))
    summary = train(cfg)
    assert summary["epoch"] == 1


@pytest.mark.parametrize("compat", COMPATS)
def test_compile_matches_eager_including_the_dense_block_function(compat) -> None:
    """Decision #14: torch.compile of a student (CLRA blocks through models.clra.DenseFeatureConvs, CSA
    fusion): same output and gradients as eager. The aot_eager backend traces forward and backward exactly
    as inductor receives them without generating C++ (inductor on this CPU takes minutes for the same)."""
    torch.manual_seed(0)
    model = Student(8, 2, 8, 4, 3, student_layers="1111", compat=compat)
    x, y = torch.rand(1, 8, 4, 4) * 2 - 1, torch.rand(1, 2, 16, 16) * 2 - 1
    out = torch.compile(model, backend="aot_eager")(x, y)[0]
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    ref = model(x, y)[0]
    ref.square().sum().backward()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-5)
