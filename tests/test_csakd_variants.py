"""The csakd strategy's variants (engine/strategies/csakd.py): golden values of the new terms, the official
terms unchanged, no gradient from the student's objective into the teacher for every strategy, the adapter's
parameters saved / resumed exactly / kept out of the student's weights, the gradient-norm log, the global
residual option (models/dts.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_engine_step import TINY, tiny_batch
from test_losses import GOLDEN_PATH, golden_inputs
from test_train_run import tiny

import train_CSAKD
from engine.cotrainer import CoTrainer
from engine.flags import build_train_parser, resolve_config
from engine.state import load_training_state
from engine.strategies import STRATEGIES, build_strategy
from engine.strategies.csakd import CSAKDStrategy
from engine.train import train
from losses import StudentLoss
from models import Student, Teacher, build_model
from models.describe import checkpoint_model_config
from models.outputs import FusionOutput
from utils.checkpoint import read_checkpoint
from utils.config import ConfigError, parse_config

pytestmark = pytest.mark.usefixtures("one_thread")

GOLDEN = json.loads(GOLDEN_PATH.read_text())["values"]


def flags(*argv: str) -> dict:
    """The resolved training flags of ``argv`` on the tiny networks' widths."""
    cfg = resolve_config(parse_config(build_train_parser(), [*argv]))
    cfg.update(TINY, device="cpu", lr=1e-3, epochs=4, step_size=2, student_layers="1111")
    return cfg


def test_variant_golden_values_agree_with_their_parts():
    """The stored golden totals are the weighted sums of the stored golden terms (an independent restatement of
    the combination: warm-up factor 3/8 on w_kd and w_feat only; the adapter feeds only the feature term)."""
    g, w = GOLDEN, 0.1
    fidelity = g["rec"] + w * g["beba"] + w * g["sam"]
    assert g["student_total_feat_std"] == pytest.approx(fidelity + w * g["kd"] + w * g["feat_std"], rel=1e-12)
    assert g["student_total_feat_cosine_scaled"] == pytest.approx(
        fidelity + 0.375 * w * (g["kd"] + g["feat_cosine"]), rel=1e-12)
    assert g["strategy_total_adapter_std_warm"] == pytest.approx(
        fidelity + 0.375 * w * (g["kd"] + g["feat_std_adapted"]), rel=1e-12)
    # the warm-up scales the kd term's gradient; the fidelity terms' gradients are those of the plain losses
    assert g["strategy_grad_norm_kd"] == pytest.approx(0.375 * g["grad_norm_kd"], rel=1e-12)
    assert g["strategy_grad_norm_rec"] == pytest.approx(g["grad_norm_rec"], rel=1e-12)
    assert g["strategy_grad_norm_sam"] == pytest.approx(g["grad_norm_sam"], rel=1e-12)


@pytest.mark.parametrize("compat", [None, "official"])
def test_default_strategy_keeps_the_official_terms_exactly(compat):
    """With the variants at their defaults the strategy's objective is StudentLoss's, bit for bit, and under
    --compat official both the default weights and the value are the official ones (golden)."""
    cfg = flags(*(["--compat", "official"] if compat else []))
    strategy = build_strategy(cfg).double()
    assert strategy.adapter is None and strategy.kd_scale == 1.0
    x = golden_inputs()
    got, _ = strategy.student_objective(FusionOutput(x["student"], x["student_feat"]),
                                        FusionOutput(x["teacher"], x["teacher_feat"]), x["target"])
    ref, _ = StudentLoss(w_feat=cfg["w_feat"], compat=compat)(x["student"], x["student_feat"], x["target"],
                                                             x["teacher"], x["teacher_feat"])
    assert torch.equal(got, ref)
    if compat == "official":
        assert cfg["w_feat"] == 0.1
        assert float(got) == GOLDEN["student_total_official"]


def test_w_feat_default_depends_on_compat():
    assert flags()["w_feat"] == 0.0 and flags("--compat", "official")["w_feat"] == 0.1
    assert flags("--w_feat", "0.3")["w_feat"] == 0.3 and flags("--compat", "official", "--w_feat", "0")["w_feat"] == 0


def test_warmup_epoch_zero_is_the_fidelity_objective():
    x = golden_inputs()
    strategy = CSAKDStrategy(kd_warmup=4).double()
    strategy.set_epoch(0)
    with_teacher, _ = strategy.student_objective(FusionOutput(x["student"], x["student_feat"]),
                                                 FusionOutput(x["teacher"], x["teacher_feat"]), x["target"])
    alone, _ = strategy.student_objective(FusionOutput(x["student"], x["student_feat"]), None, x["target"])
    assert float(with_teacher) == pytest.approx(float(alone), rel=1e-15)
    strategy.set_epoch(6)
    assert strategy.kd_scale == 1.0


VARIANTS = [[], ["--feat_adapter"], ["--feat_norm", "std"], ["--feat_norm", "cosine", "--feat_adapter"],
            ["--kd_warmup", "2"]]
CASES = [(name, []) for name in sorted(STRATEGIES)] + [("csakd", v) for v in VARIANTS[1:]]


@pytest.mark.parametrize("kd_mode", ["online", "offline"])
@pytest.mark.parametrize(("name", "variant"), CASES)
def test_teacher_gets_no_gradient_from_the_students_objective(name, variant, kd_mode):
    """Every strategy: in a co-training step each teacher parameter receives at most its own objective's one
    gradient (online) or none (offline); the student and the strategy's own parameters do receive one."""
    cfg = {**flags("--kd_strategy", name, *variant), "kd_mode": kd_mode}  # the teacher is given here, not loaded
    torch.manual_seed(0)
    teacher, student = build_model(cfg, "teacher"), build_model(cfg, "student")  # --arch / --hkd_heads of cfg
    cot = CoTrainer(cfg, student, teacher)
    calls = {n: 0 for n, _ in teacher.named_parameters()}
    if kd_mode == "online":
        for n, p in teacher.named_parameters():
            p.register_hook(lambda grad, n=n: calls.__setitem__(n, calls[n] + 1))
    cot.step(tiny_batch(), noise=torch.Generator().manual_seed(1))
    if kd_mode == "online":
        assert max(calls.values()) == 1, "a teacher parameter got a gradient from the student's objective"
    else:
        assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(p.grad is not None for p in [*student.parameters(), *cot.strategy.parameters()] if p.requires_grad)


def test_gradient_log_is_the_weighted_terms_and_leaves_the_step_unchanged():
    """log_gradients adds grad/student/<term> (weighted terms; their norms bound the total gradient's norm by
    the triangle inequality) and does not change the step's result."""
    results = []
    for log in (False, True):
        torch.manual_seed(0)
        cot = CoTrainer(flags("--feat_norm", "std", "--w_feat", "0.1"), Student(student_layers="1111", **TINY),
                        Teacher(**TINY))
        stats = cot.step(tiny_batch(), noise=torch.Generator().manual_seed(3), log_gradients=log)
        total = torch.cat([p.grad.flatten() for p in cot.student.parameters() if p.grad is not None]).norm()
        results.append((stats, cot.student.state_dict(), float(total)))
    (plain, w0, _), (logged, w1, total) = results
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    grads = {k[len("grad/student/"):]: v for k, v in logged.items() if k.startswith("grad/student/")}
    assert set(grads) == {"rec", "kd", "feat", "beba", "sam"} and not any(k.startswith("grad/") for k in plain)
    assert all(v > 0 for v in grads.values()) and total <= sum(grads.values()) * (1 + 1e-6)


def test_adapter_parameters_are_saved_resumed_exactly_and_not_exported(tmp_path: Path):
    """--feat_adapter: the adapter trains (moves off its identity start), lives in state.pth, resumes exactly,
    and the student's best/last.pth hold only the student's own keys."""
    extra = ("--feat_adapter", "--feat_norm", "std", "--w_feat", "0.1", "--kd_warmup", "1", "--grad_log_every", "2")
    train(train_CSAKD.load_config(tiny(tmp_path, *extra, prefix="straight", epochs=2)))
    split = tiny(tmp_path, *extra, prefix="split", epochs=2)
    train(train_CSAKD.load_config(split), stop_after=0)
    train(train_CSAKD.load_config([*split, "--resume"]))
    runs = tmp_path / "ck"
    a, b = (load_training_state(runs / r / "state.pth")["strategy"] for r in ("straight", "split"))
    assert set(a) == {"adapter.proj.weight", "adapter.proj.bias"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["adapter.proj.weight"].flatten(1), torch.eye(8))  # trained
    own = set(Student(student_layers="1111", **{**TINY, "msi_bands": 2}).state_dict())
    for which in ("best", "last"):
        assert set(read_checkpoint(runs / "straight" / "student" / f"{which}.pth")["state_dict"]) == own

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "runs" / "straight"), size_guidance={"scalars": 0})
    acc.Reload()
    feat = acc.Scalars("grad/student/feat")
    assert [e.step for e in feat] == [0, 2]  # every 2nd of the 4 steps
    assert feat[0].value == 0.0 and feat[1].value > 0  # epoch 0 of a 1-epoch warm-up: no distillation yet


def test_residual_adds_the_upsampled_lrhsi_and_is_stored():
    torch.manual_seed(0)
    plain = Student(student_layers="1111", **TINY)
    res = Student(student_layers="1111", residual=True, **TINY)
    res.load_state_dict(plain.state_dict())  # no parameters of its own
    b = tiny_batch()
    up = F.interpolate(b["lrhsi"], size=b["hrmsi"].shape[-2:], mode="bilinear", align_corners=False)
    torch.testing.assert_close(res(b["lrhsi"], b["hrmsi"])[0], plain(b["lrhsi"], b["hrmsi"])[0] + up)
    assert res.model_config()["residual"] is True
    older = {k: v for k, v in plain.model_config().items() if k != "residual"}  # a file saved before the flag
    assert checkpoint_model_config({"model": older})["residual"] is False
    with pytest.raises(ConfigError, match="--residual"):
        resolve_config(parse_config(build_train_parser(), ["--compat", "official", "--residual", "true"]))


@pytest.mark.parametrize("strategy", [("--feat_adapter", "--w_feat", "0.1"), ("--kd_strategy", "hkd")])
def test_offline_run_reads_the_teacher_file_once(tmp_path: Path, monkeypatch, strategy: tuple[str, ...]):
    """The frozen teacher is built from ``--teacher_ckpt`` once; the strategy learns its widths from the built
    network (``model_config``), not from a second read: a wider teacher gives a wider adapter or heads."""
    from utils.checkpoint import save_weights

    wide = {**flags(), "num_base_chs": 2 * TINY["num_base_chs"]}
    torch.manual_seed(0)
    path = tmp_path / "teacher.pth"
    save_weights(path, build_model(wide, "teacher"), wide)
    reads, real_load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: reads.append(str(f)) or real_load(f, *a, **k))
    cot = CoTrainer.build(flags(*strategy, "--kd_mode", "offline", "--teacher_ckpt", str(path)), torch.device("cpu"))
    assert reads == [str(path)]
    width = cot.teacher.model_config()["num_base_chs"]
    assert width == wide["num_base_chs"] != cot.student.model_config()["num_base_chs"]
    if cot.strategy.name == "csakd":
        assert cot.strategy.adapter.proj.out_channels == width
    else:
        weights = [p for n, p in cot.strategy.teacher_heads.named_parameters() if n.endswith(".weight")]
        assert len(weights) == 2 and all(w.shape[1] == width for w in weights)  # (bands, nf_teacher, 3, 3)
