"""The training step (gradient isolation, kd modes, non-finite skipping), the AWGN, tiling and configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from engine.cotrainer import CoTrainer, build_optimizers
from engine.flags import build_test_parser, build_train_parser, resolve_config
from engine.noise import awgn
from engine.strategies.csakd import CSAKDStrategy
from losses import FidelityLoss, StudentLoss, TeacherLoss
from models import Student, Teacher
from utils.config import ConfigError, config_to_yaml, parse_config
from utils.tiling import tile_starts, tiled_forward

TINY = dict(bands=8, msi_bands=2, num_base_chs=8, num_agg_feat=4, adaptive_fuse=3)


def tiny_batch(b: int = 2, h: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"lrhsi": torch.rand(b, 8, h, h, generator=g) * 2 - 1,
            "hrmsi": torch.rand(b, 2, 4 * h, 4 * h, generator=g) * 2 - 1,
            "gt": torch.rand(b, 8, 4 * h, 4 * h, generator=g) * 2 - 1}


def tiny_cfg(kd_mode: str = "online", snr: float = 35.0, amp: str = "off") -> dict:
    return {"kd_mode": kd_mode, "kd_strategy": "csakd", "snr": snr, "amp": amp, "joint_loss": 1, "compat": None,
            "w_sam": 0.1, "w_beba": 0.1, "w_kd": 0.1, "w_feat": 0.1, "lr": 1e-3, "weight_decay": 0.0, "epochs": 4,
            "lr_scheduler": "cosine", "step_size": 2}


def tiny_setup(kd_mode: str = "online", snr: float = 35.0, amp: str = "off",
               strategy: CSAKDStrategy | None = None) -> CoTrainer:
    torch.manual_seed(0)
    teacher = Teacher(**TINY) if kd_mode != "none" else None
    student = Student(student_layers="1111", **TINY)
    return CoTrainer(tiny_cfg(kd_mode, snr, amp), student, teacher, strategy=strategy)


def test_student_gradients_never_reach_the_teacher() -> None:
    """In the step, every teacher parameter receives exactly one gradient (its own loss's backward); the
    student's objective sees only detached teacher tensors, and the student receives gradients."""
    seen = {}

    class Spy(CSAKDStrategy):
        def student_objective(self, student, teacher, gt):
            seen.update(t_out=teacher.out.requires_grad, t_feat=teacher.feat.requires_grad,
                        s_out=student.out.requires_grad)
            return super().student_objective(student, teacher, gt)

    cot = tiny_setup(strategy=Spy())
    teacher, student = cot.teacher, cot.student
    calls = {name: 0 for name, _ in teacher.named_parameters()}
    for name, p in teacher.named_parameters():
        p.register_hook(lambda g, name=name: calls.__setitem__(name, calls[name] + 1))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    stats = cot.step(tiny_batch(), noise=torch.Generator().manual_seed(1))
    assert seen == {"t_out": False, "t_feat": False, "s_out": True}
    used = {n for n, c in calls.items() if c}
    assert used and all(calls[n] == 1 for n in used), "a teacher parameter got a gradient from the student loss"
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert stats["teacher/skipped"] == 0.0 and stats["student/skipped"] == 0.0
    assert set(stats) >= {"teacher/loss", "teacher/rec", "student/loss", "student/kd", "student/feat"}


def test_online_step_matches_manual_order() -> None:
    """Teacher step then student step, with the teacher output computed before the teacher's update and
    two independent noise draws in that order (docs/csakd.md §5.2); the csakd strategy's objectives are
    exactly FidelityLoss and StudentLoss."""
    cot = tiny_setup()
    teacher, student, cfg = cot.teacher, cot.student, cot.cfg
    t_ref, s_ref = Teacher(**TINY), Student(student_layers="1111", **TINY)
    t_ref.load_state_dict(teacher.state_dict())
    s_ref.load_state_dict(student.state_dict())
    batch = tiny_batch()
    cot.step(batch, noise=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    o_t, o_s = build_optimizers(cfg, t_ref, s_ref)[0].values()
    t_loss, s_loss = FidelityLoss(), StudentLoss()
    t_out, t_feat = t_ref(awgn(batch["lrhsi"], 35.0, g), batch["hrmsi"])
    t_loss(t_out, batch["gt"])[0].backward()
    o_t.step()
    s_out, s_feat = s_ref(awgn(batch["lrhsi"], 35.0, g), batch["hrmsi"])
    s_loss(s_out, s_feat, batch["gt"], t_out.detach(), t_feat.detach())[0].backward()
    o_s.step()
    for a, b in ((teacher, t_ref), (student, s_ref)):
        for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)


def test_forward_aux_shares_the_plain_forward() -> None:
    """``forward_aux`` is the plain forward's computation as a FusionOutput (only the requested fields)."""
    torch.manual_seed(0)
    net = Student(student_layers="1111", **TINY)
    batch = tiny_batch()
    out, feat = net(batch["lrhsi"], batch["hrmsi"])
    aux = net.forward_aux(batch["lrhsi"], batch["hrmsi"], frozenset({"feat"}))
    assert torch.equal(aux.out, out) and torch.equal(aux.feat, feat)
    assert net.forward_aux(batch["lrhsi"], batch["hrmsi"]).feat is None
    with pytest.raises(ValueError, match="stage_feats"):
        net.forward_aux(batch["lrhsi"], batch["hrmsi"], frozenset({"stage_feats"}))
    assert TeacherLoss is FidelityLoss


def test_strategy_parameters_train_with_the_student_and_live_in_the_state() -> None:
    """A strategy's own parameters (here a scale on the student's fused feature) join the student's optimiser,
    are updated by the student's step, and are saved and restored with the co-trainer's state."""

    class Scaled(CSAKDStrategy):
        def __init__(self) -> None:
            super().__init__()
            self.gain = torch.nn.Parameter(torch.ones(()))

        def student_objective(self, student, teacher, gt):
            return super().student_objective(student.map(lambda t: t * self.gain), teacher, gt)

    cot = tiny_setup(strategy=Scaled())
    group = cot.opts["student"].param_groups[0]["params"]
    assert group[-1] is cot.strategy.gain and len(group) == len(list(cot.student.parameters())) + 1
    saved = {k: v.clone() for k, v in cot.state_dict()["strategy"].items()}
    cot.step(tiny_batch(), noise=torch.Generator().manual_seed(5))
    assert set(saved) == {"gain"} and not torch.equal(cot.strategy.gain.detach(), saved["gain"])
    cot.load_state_dict({**cot.state_dict(), "strategy": saved})
    assert torch.equal(cot.strategy.gain.detach(), saved["gain"])


def test_grad_checkpoint_step_gives_the_same_weights() -> None:
    """``--grad_checkpoint`` recomputes activations in the backward pass; the step's result is unchanged."""
    results = []
    for enabled in (False, True):
        cot = tiny_setup()
        cot.teacher.set_grad_checkpoint(enabled)
        cot.student.set_grad_checkpoint(enabled)
        cot.step(tiny_batch(), noise=torch.Generator().manual_seed(5))
        results.append([v.clone() for net in (cot.teacher, cot.student) for v in net.state_dict().values()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_step_trains_both_networks(amp: str) -> None:
    """``--amp``: the step runs in reduced precision (fp16 with gradient scaling), keeps fp32 weights and
    updates both networks with finite values."""
    cot = tiny_setup(amp=amp)
    assert set(cot.scalers) == ({"teacher", "student"} if amp == "fp16" else set())
    before = [v.clone() for net in (cot.teacher, cot.student) for v in net.parameters()]
    stats = cot.step(tiny_batch(), noise=torch.Generator().manual_seed(5))
    assert math.isfinite(stats["teacher/loss"]) and math.isfinite(stats["student/loss"])
    after = [v for net in (cot.teacher, cot.student) for v in net.parameters()]
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in after)
    changed = sum(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert changed > len(after) // 2


@pytest.mark.parametrize("kd_mode", ["offline", "none"])
def test_other_kd_modes_train_only_the_student(kd_mode: str) -> None:
    cot = tiny_setup(kd_mode)
    teacher = cot.teacher
    assert "teacher" not in cot.opts and set(cot.trained) == {"student"}
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()} if teacher is not None else {}
    stats = cot.step(tiny_batch())
    assert not any(k.startswith("teacher/") for k in stats)
    assert ("student/kd" in stats) == (kd_mode == "offline")
    if teacher is not None:
        assert not teacher.training
        assert all(torch.equal(t_before[k], v) for k, v in teacher.state_dict().items())
        assert all(p.grad is None for p in teacher.parameters())


def test_nonfinite_loss_skips_the_step() -> None:
    cot = tiny_setup()
    teacher, student = cot.teacher, cot.student
    batch = tiny_batch()
    batch["gt"][0, 0, 0, 0] = float("nan")
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    s_before = {k: v.clone() for k, v in student.state_dict().items()}
    stats = cot.step(batch)
    assert stats["teacher/skipped"] == 1.0 and stats["student/skipped"] == 1.0
    assert math.isnan(stats["teacher/loss"])
    assert all(torch.equal(t_before[k], v) for k, v in teacher.state_dict().items())
    assert all(torch.equal(s_before[k], v) for k, v in student.state_dict().items())


def test_awgn_power_from_the_whole_batch_and_snr_zero() -> None:
    x = torch.rand(4, 8, 16, 16) * 2 - 1
    x[0] *= 0.01  # a dark image: its noise is still set by the batch's power (official behaviour)
    noisy = awgn(x, 20.0, torch.Generator().manual_seed(0))
    measured = 10 * math.log10(x.pow(2).mean() / (noisy - x).pow(2).mean())
    assert measured == pytest.approx(20.0, abs=0.2)
    sigma0 = (noisy[0] - x[0]).std()
    sigma1 = (noisy[1] - x[1]).std()
    assert float(sigma0 / sigma1) == pytest.approx(1.0, abs=0.1)
    assert awgn(x, 0.0) is x
    g = torch.Generator().manual_seed(3)
    assert not torch.equal(awgn(x, 35.0, g), awgn(x, 35.0, g))  # consecutive draws are independent


def test_tiled_inference_matches_whole_image(record_property) -> None:
    """Blended tiles reproduce the whole-image output closely; the max difference is reported."""
    torch.manual_seed(0)
    student = Student(student_layers="1111", **TINY).eval()
    lr, msi = torch.rand(1, 8, 24, 20) * 2 - 1, torch.rand(1, 2, 96, 80) * 2 - 1
    with torch.no_grad():
        whole = student(lr, msi)[0]
    tiled = tiled_forward(student, lr, msi, tile=12, overlap=4)
    assert tiled.shape == whole.shape
    diff = (tiled - whole).abs()
    record_property("tiled_vs_whole_max_abs_diff", float(diff.max()))
    record_property("tiled_vs_whole_mean_abs_diff", float(diff.mean()))
    print(f"tiled vs whole: max |diff| {float(diff.max()):.2e}, mean {float(diff.mean()):.2e}")
    assert float(diff.mean()) < 0.02 * float(whole.abs().mean()) + 1e-3
    # one tile covering everything is the whole-image forward itself
    torch.testing.assert_close(tiled_forward(student, lr, msi, tile=64, overlap=4), whole, rtol=0, atol=1e-6)
    assert tile_starts(24, 12, 4) == [0, 8, 12] and tile_starts(10, 12, 4) == [0]
    with pytest.raises(ValueError, match="tile"):
        tiled_forward(student, lr, msi, tile=8, overlap=4)


# ---------------------------------------------------------------------------------------------------------------------
# Config resolution


def parse(argv: list[str]) -> dict:
    return resolve_config(parse_config(build_train_parser(), argv, other=build_test_parser()))


def test_defaults_follow_the_decisions() -> None:
    cfg = parse([])
    assert cfg["adaptive_fuse"] == 3 and cfg["student_layers"] == "1441" and cfg["seed"] == 1029
    assert (cfg["batch_size"], cfg["epochs"], cfg["lr"], cfg["snr"], cfg["step_size"], cfg["eval_step"]) == (
        4, 600, 1e-4, 35.0, 100, 2)
    assert parse(["--compat", "official"])["adaptive_fuse"] == 0
    assert parse(["--SEED", "7", "--student_layers", "2332"])["seed"] == 7
    # official flags without a use any more still parse
    parse(["--resume_ind", "0", "--finetuning_step", "10", "--DEBUG", "True", "--gpus", "1", "--network_mode", "1"])


def test_yaml_then_command_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("batch_size: 8\nepochs: 800\ncompat: official\nstudent_layers: 1441\nSEED: 3\n"
                    "synthetic_scenes: [2, 1, 1]\nresults: out\n")  # results: a test-script key, ignored here
    cfg = parse(["--config", str(path), "--epochs", "5"])
    assert (cfg["batch_size"], cfg["epochs"], cfg["compat"], cfg["seed"]) == (8, 5, "official", 3)
    assert cfg["student_layers"] == "1441" and cfg["synthetic_scenes"] == [2, 1, 1] and "results" not in cfg
    # the saved YAML is itself a valid config giving the same dict
    again = tmp_path / "again.yaml"
    again.write_text(config_to_yaml(cfg))
    assert {k: v for k, v in parse(["--config", str(again)]).items() if k != "config"} == {
        k: v for k, v in cfg.items() if k != "config"}


@pytest.mark.parametrize(("text", "message"), [
    ("epoch: 3\n", r"unknown key\(s\) 'epoch' \(did you mean 'epochs'\?\)"),
    ("batchsize: 3\nlearning_rate: 1\n", r"'batchsize' \(did you mean 'batch_size'\?\)"),
    ("kd_mode: teacher\n", r"kd_mode.*expected one of"),
    ("batch_size: [1, 2]\n", "takes one value"),
    ("- 1\n", "expected a mapping"),
])
def test_bad_yaml(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        parse(["--config", str(path)])


def test_bad_values() -> None:
    with pytest.raises(ConfigError, match="teacher_ckpt"):
        parse(["--kd_mode", "offline"])
    with pytest.raises(ConfigError, match="student_layers"):
        parse(["--student_layers", "14x1"])
    with pytest.raises(ConfigError, match="--epochs"):
        parse(["--epochs", "0"])


def test_one_yaml_for_both_scripts(tmp_path: Path) -> None:
    """Training keys in a shared YAML do not leak into the test script's flags of the same name."""
    path = tmp_path / "c.yaml"
    path.write_text("snr: 35\nbatch_size: 8\nepochs: 3\nprefix: run\nbands: 31\n")
    cfg = resolve_config(parse_config(build_test_parser(), ["--config", str(path)], other=build_train_parser()))
    assert (cfg["snr"], cfg["batch_size"], cfg["prefix"], cfg["bands"]) == (0.0, 1, "run", 31)
    assert "epochs" not in cfg
    cfg = resolve_config(parse_config(build_test_parser(), ["--config", str(path), "--snr", "30"],
                                      other=build_train_parser()))
    assert cfg["snr"] == 30.0


@pytest.mark.parametrize("kind", ["step", "cosine"])
def test_student_schedule(kind: str) -> None:
    """--student_lr_scheduler: step = the official StepLR(step_size, 0.9); cosine = the teacher's cosine to 1e-10."""
    cfg = {"lr": 1e-3, "weight_decay": 0.0, "lr_scheduler": "cosine", "student_lr_scheduler": kind,
           "epochs": 8, "step_size": 2}
    opts, scheds = build_optimizers(cfg, Teacher(**TINY), Student(student_layers="1111", **TINY))
    lrs = []
    for _ in range(cfg["epochs"]):
        opts["student"].step()
        scheds["student"].step()
        lrs.append(opts["student"].param_groups[0]["lr"])
    if kind == "step":
        assert lrs[1] == pytest.approx(0.9e-3) and lrs[-1] == pytest.approx(1e-3 * 0.9**4)
    else:
        assert lrs[3] == pytest.approx(0.5e-3, rel=1e-6) and lrs[-1] == pytest.approx(1e-10)
