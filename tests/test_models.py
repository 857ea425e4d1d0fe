"""The networks: parity with the official code, the paper's sizes, corrected attention, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import CrossAttentionFusion, CSAFusion, Student, Teacher, build_fusion, build_model
from utils.checkpoint import load_weights
from utils.complexity import complexity

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "official"
PAPER_LR, PAPER_HR4, PAPER_HR6 = (172, 64, 64), (4, 256, 256), (6, 256, 256)


def reference_model(ref: dict) -> torch.nn.Module:
    """The network of an official reference file, in official compat mode."""
    c = ref["config"]
    kwargs = dict(bands=c["bands"], msi_bands=c["msi"], num_base_chs=c["nf"], num_agg_feat=c["gc"],
                  adaptive_fuse=c["adaptive_fuse"], scale=c["scale"], compat="official")
    if c["role"] == "teacher":
        return Teacher(**kwargs)
    return Student(student_layers=c["layers"], **kwargs)


@pytest.mark.parametrize("role", ["teacher", "student"])
@pytest.mark.parametrize("fuse", [0, 1, 2, 3, 4])
def test_official_parity(role: str, fuse: int) -> None:
    """Loaded with the official weights, our networks compute the official outputs."""
    path = REFERENCE / f"{role}_fuse{fuse}.pt"
    ref = torch.load(path, weights_only=True)
    model = reference_model(ref).eval()
    info = load_weights(model, path)
    assert info["source"] == "official"
    assert bool(info["dropped"]) == (role == "student")  # the official student's unused Z_hm stack
    with torch.no_grad():
        out, fused = model(ref["lrhsi"], ref["hrmsi"])
    torch.testing.assert_close(out, ref["output"], rtol=0, atol=1e-5)
    torch.testing.assert_close(fused, ref["fused_feature"], rtol=0, atol=1e-5)


def meta_model(role: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(kwargs, role)


# Paper: teacher 26.8M / 941.77 GMACs, student 7.44M / 144.77 GMACs (docs/csakd.md §2.5, §7.1).
@pytest.mark.parametrize("compat", [None, "official"])
def test_paper_complexity(compat: str | None) -> None:
    teacher = complexity(meta_model("teacher", adaptive_fuse=3, compat=compat), PAPER_LR, PAPER_HR4)
    student = complexity(meta_model("student", adaptive_fuse=3, compat=compat), PAPER_LR, PAPER_HR4)
    assert teacher["params"] == pytest.approx(26.81e6, rel=1e-3)
    assert teacher["macs"] == pytest.approx(941.8e9, rel=1e-3)
    assert student["params"] == pytest.approx(7.45e6, rel=1e-3)
    assert student["macs"] == pytest.approx(144.8e9, rel=1e-3)
    # Every conv multiply-add is also counted by torch's FlopCounterMode, at 2 FLOPs each.
    assert teacher["flops"] >= 2 * teacher["macs"]
    # A 6-band HR-MSI adds 0.2 GMACs (the wider first convs of Z_hm, Z_mh and Z_m).
    student6 = complexity(meta_model("student", msi_bands=6), PAPER_LR, PAPER_HR6)
    assert (student6["macs"] - student["macs"]) / 1e9 == pytest.approx(0.21, abs=0.01)


def test_official_complexity_is_exact() -> None:
    """Official mode counts exactly what the official code measured (docs/csakd.md §2.5)."""
    teacher = complexity(meta_model("teacher", adaptive_fuse=3, compat="official"), PAPER_LR, PAPER_HR4)
    student = complexity(meta_model("student", adaptive_fuse=3, compat="official"), PAPER_LR, PAPER_HR4)
    assert teacher["params"] == 26_807_686
    assert student["params"] == 7_449_946
    assert round(teacher["macs"] / 1e9, 2) == 941.76
    assert round(student["macs"] / 1e9, 2) == 144.77


# Student layouts of the official scripts and notebook: executed params (M), conv GMACs at 4 bands.
@pytest.mark.parametrize(("layers", "params_m", "gmacs"), [
    ("2332", 7.419, 224.39), ("2222", 6.089, 218.95), ("1221", 4.790, 133.89), ("2444", 11.346, 399.96),
])
def test_student_layouts(layers: str, params_m: float, gmacs: float) -> None:
    c = complexity(meta_model("student", student_layers=layers, adaptive_fuse=3), PAPER_LR, PAPER_HR4)
    assert c["params"] / 1e6 == pytest.approx(params_m, abs=1e-3)
    assert c["macs"] / 1e9 == pytest.approx(gmacs, abs=0.01)


def test_student_hm_blocks_have_no_effect() -> None:
    """``a`` of ``--student_layers abcd`` builds nothing: the official forward never runs that stack."""
    torch.manual_seed(0)
    a = Student(bands=8, msi_bands=3, num_base_chs=8, num_agg_feat=4, student_layers="1221")
    torch.manual_seed(0)
    b = Student(bands=8, msi_bands=3, num_base_chs=8, num_agg_feat=4, student_layers="3221")
    assert a.state_dict().keys() == b.state_dict().keys()
    assert not any(k.startswith("hmfeat.") for k in a.state_dict())


# ---- attention ------------------------------------------------------------------------------------------

def stream_features(nf: int, size: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, nf, size, size, generator=g) for _ in range(4)]


@pytest.mark.parametrize("fusion_cls", [CrossAttentionFusion, CSAFusion])
def test_corrected_attention_uses_query_and_key(fusion_cls) -> None:
    torch.manual_seed(0)
    fuser = fusion_cls(16)
    s = stream_features(16, 8)
    fuser(*s).square().sum().backward()
    assert fuser.query_conv.weight.grad.abs().max() > 1e-4
    assert fuser.key_conv.weight.grad.abs().max() > 1e-4
    with torch.no_grad():
        base = fuser.attend(*s)
        for i in (0, 1):  # the query (s1) and key (s2) inputs
            changed = list(s)
            changed[i] = s[i] + torch.randn_like(s[i])
            assert (fuser.attend(*changed) - base).abs().max() > 1e-3


@pytest.mark.parametrize("fusion_cls", [CrossAttentionFusion, CSAFusion])
def test_official_attention_ignores_query_and_key(fusion_cls) -> None:
    """The official attention is a no-op: each head returns the sum of its value channels."""
    torch.manual_seed(0)
    fuser = fusion_cls(16, compat="official").double()
    s = [x.double() for x in stream_features(16, 8)]
    with torch.no_grad():
        base = fuser.attend(*s)
        noisy = fuser.attend(10 * torch.randn_like(s[0]), 10 * torch.randn_like(s[1]), s[2], s[3])
        v = fuser.value_conv(s[2]).reshape(1, 4, 16, 64)
        closed_form = fuser.output_conv(v.sum(2, keepdim=True).expand_as(v).reshape(1, 64, 8, 8)) + s[3]
    torch.testing.assert_close(noisy, base, rtol=0, atol=1e-12)
    torch.testing.assert_close(base, closed_form, rtol=0, atol=1e-12)


def attention_entropy(fuser: CrossAttentionFusion, s: list[torch.Tensor]) -> float:
    """Mean entropy of the attention rows, as a fraction of the uniform distribution's log(d)."""
    with torch.no_grad():
        attn = fuser.attention_map(s[0], s[1])
    entropy = -(attn * attn.clamp_min(1e-30).log()).sum(-1)
    return (entropy.mean() / math.log(attn.shape[-1])).item()


def test_corrected_attention_not_saturated_at_256(record_property) -> None:
    """At 256×256 the corrected softmax keeps most of its entropy; the official one is near one-hot."""
    torch.manual_seed(0)
    s = stream_features(86, 256)
    corrected = attention_entropy(CSAFusion(86), s)
    torch.manual_seed(0)
    official = attention_entropy(CSAFusion(86, compat="official"), s)
    record_property("attention_entropy_corrected", corrected)
    record_property("attention_entropy_official", official)
    print(f"attention entropy at 256x256 (fraction of log 16): corrected {corrected:.3f}, official {official:.3f}")
    assert corrected > 0.9
    assert official < 0.1


@pytest.mark.parametrize("mode", [0, 1, 4])
def test_non_attention_fusers_identical_in_both_settings(mode: int) -> None:
    torch.manual_seed(0)
    corrected = build_fusion(mode, 8)
    official = build_fusion(mode, 8, compat="official")
    official.load_state_dict(corrected.state_dict(), strict=True)
    s = stream_features(8, 8)
    torch.testing.assert_close(corrected(*s), official(*s), rtol=0, atol=0)


def test_official_mode_draws_the_official_random_numbers() -> None:
    """Official mode builds (and drops) what the official constructor builds, so under one seed the unused
    Z_hm block count shifts the initial weights of later modules there, and nowhere else."""
    kwargs = dict(bands=8, msi_bands=3, num_base_chs=8, num_agg_feat=4, adaptive_fuse=1)

    def init(compat: str | None, layers: str) -> dict:
        torch.manual_seed(0)
        return Student(compat=compat, student_layers=layers, **kwargs).state_dict()

    assert torch.equal(init(None, "1221")["mhconv1.weight"], init(None, "3221")["mhconv1.weight"])
    assert not torch.equal(init("official", "1221")["mhconv1.weight"], init("official", "3221")["mhconv1.weight"])
    # Official mode draws all four fusers first: the sigmoid weights (first drawn) agree with a corrected
    # build, and the stream convs drawn after the other three fusers do not.
    assert torch.equal(init("official", "1221")["fuse_att.weights"], init(None, "1221")["fuse_att.weights"])
    assert not torch.equal(init("official", "1221")["hmconv1.weight"], init(None, "1221")["hmconv1.weight"])


# ---- shapes and bad input --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_teacher() -> Teacher:
    torch.manual_seed(0)
    return Teacher(bands=8, msi_bands=3, num_base_chs=8, num_agg_feat=4).eval()


@pytest.mark.parametrize("role", ["teacher", "student"])
@pytest.mark.parametrize("compat", [None, "official"])
def test_forward_shapes_and_gradients(role: str, compat: str | None) -> None:
    torch.manual_seed(0)
    model = build_model(dict(bands=8, msi_bands=3, num_base_chs=8, num_agg_feat=4, student_layers="1221",
                             compat=compat), role)
    out, fused = model(torch.randn(2, 8, 5, 6), torch.randn(2, 3, 20, 24))
    assert out.shape == (2, 8, 20, 24)
    assert fused.shape == (2, 8, 20, 24)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(("lrhsi", "hrmsi", "message"), [
    ((1, 7, 4, 4), (1, 3, 16, 16), r"lrhsi: expected 8 channels \(bands=8\), got 7"),
    ((1, 8, 4, 4), (1, 4, 16, 16), r"hrmsi: expected 3 channels \(msi_bands=3\), got 4"),
    ((1, 8, 4, 4), (1, 3, 16, 15), r"hrmsi: expected spatial size \(16, 16\) = scale \(4\) × the lrhsi size"),
    ((8, 4, 4), (1, 3, 16, 16), r"lrhsi: expected a 4-D tensor \(B, C, H, W\), got \(8, 4, 4\)"),
    ((1, 8, 4, 4), (3, 16, 16), r"hrmsi: expected a 4-D tensor"),
    ((2, 8, 4, 4), (1, 3, 16, 16), r"hrmsi: batch size 1 differs from the lrhsi batch size 2"),
])
def test_bad_inputs(tiny_teacher: Teacher, lrhsi, hrmsi, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_teacher(torch.zeros(lrhsi), torch.zeros(hrmsi))


@pytest.mark.parametrize(("role", "kwargs", "message"), [
    ("teacher", dict(groups=4), r"groups: the head conv \(num_base_chs=86 → bands=172\) needs groups dividing both"),
    ("student", dict(num_base_chs=86, num_agg_feat=40),
     r"Z_h stream CLRA groups: .*groups=43 needs num_base_chs and num_agg_feat divisible by 43, "
     r"but num_agg_feat=40 is not"),
    ("student", dict(student_layers="14x1"), r"student_layers: expected four block counts"),
    ("student", dict(student_layers="141"), r"student_layers: expected four non-negative block counts"),
    ("teacher", dict(adaptive_fuse=5), r"adaptive_fuse: expected one of \[0, 1, 2, 3, 4\], got 5"),
    ("teacher", dict(compat="fixed"), r"Teacher: compat must be None or 'official', got 'fixed'"),
    ("teacher", dict(bands=0), r"bands: expected a positive integer, got 0"),
])
def test_bad_construction(role: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message), torch.device("meta"):
        build_model(kwargs, role)


def test_complexity_command_writes_json(tmp_path: Path) -> None:
    """``test_CSAKD.py --test_mode 3`` needs no data or checkpoint, prints the table and writes JSON."""
    out = tmp_path / "complexity.json"
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "test_CSAKD.py", "--test_mode", "3", "--msi_bands", "6", "--json", str(out)],
                         cwd=root, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "teacher" in run.stdout and "941.97" in run.stdout and "144.98" in run.stdout
    report = json.loads(out.read_text())
    assert report["hrmsi_shape"] == [6, 256, 256] and report["lrhsi_shape"] == [172, 64, 64]
    assert round(report["student"]["macs"] / 1e9, 2) == 144.98
    assert set(report["teacher"]) == {"params", "params_all", "macs", "flops"}
