"""The distillation methods of issue 18, each with golden values and its teacher-free control:

- late decay (``--kd_decay``): the distillation weights fall linearly to 0 over the last part of training; an epoch
  at factor 0 is exactly the student alone.
"""

from __future__ import annotations

import pytest
import torch
from test_losses import golden_inputs
from test_train_run import tiny, weights

import train_CSAKD
from engine.strategies.csakd import CSAKDStrategy
from engine.train import train
from losses import StudentLoss, decay_factor
from models.outputs import FusionOutput
from utils.config import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------------------------------
# (d) late decay


def test_decay_factor_golden_values():
    # 10 epochs, the last 30 %: (10 − 1 − e) / 3 clipped to [0, 1]
    assert [decay_factor(e, 10, 0.3) for e in range(10)] == pytest.approx([1] * 7 + [2 / 3, 1 / 3, 0])
    assert [decay_factor(e, 4, 1.0) for e in range(4)] == pytest.approx([3 / 4, 2 / 4, 1 / 4, 0])
    assert {decay_factor(e, 5, 0) for e in range(5)} == {1.0}  # off
    for bad in ((0, 10, 1.5), (10, 10, 0.3), (-1, 10, 0.3)):
        with pytest.raises(ValueError):
            decay_factor(*bad)


def test_late_decay_scales_the_distillation_terms_and_ends_with_the_student_alone():
    x = golden_inputs()
    student, teacher = FusionOutput(x["student"], x["student_feat"]), FusionOutput(x["teacher"], x["teacher_feat"])
    strategy = CSAKDStrategy(w_feat=0.1, kd_decay=0.3, epochs=10).double()
    strategy.set_epoch(8)
    assert strategy.kd_scale == pytest.approx(1 / 3)
    got, parts = strategy.student_objective(student, teacher, x["target"])
    w = 0.1
    expected = parts["rec"] + w * parts["beba"] + w * parts["sam"] + w / 3 * (parts["kd"] + parts["feat"])
    assert float(got) == pytest.approx(float(expected), rel=1e-12)
    ref, _ = StudentLoss(w_feat=0.1)(x["student"], x["student_feat"], x["target"], x["teacher"], x["teacher_feat"],
                                     kd_scale=1 / 3)
    assert torch.equal(got, ref)
    strategy.set_epoch(9)  # the last epoch: no distillation, the student alone's objective bit for bit
    last, parts = strategy.student_objective(student, teacher, x["target"])
    alone, _ = strategy.student_objective(student, None, x["target"])
    assert torch.equal(last, alone) and float(parts["kd"]) > 0  # the term is still logged
    with pytest.raises(ValueError, match="--kd_decay"):
        CSAKDStrategy(kd_decay=1.5)


def test_a_run_decayed_to_zero_throughout_is_the_student_alone(tmp_path):
    """Teacher-free control: 1 epoch decayed over all of it (factor 0) trains exactly the student alone."""
    with pytest.raises(ConfigError, match="--kd_decay"):
        train_CSAKD.load_config(tiny(tmp_path, "--kd_decay", "2"))
    train(train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "none", prefix="alone", epochs=1)))
    train(train_CSAKD.load_config(tiny(tmp_path, "--kd_decay", "1", "--w_kd", "0.5", prefix="decayed", epochs=1)))
    a, b = (weights(tmp_path / "ck" / p / "student" / "last.pth") for p in ("alone", "decayed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------------------------------
# (b) teacher weight inheritance


def _teacher_file(tmp_path, seed: int = 11):
    from models import build_model
    from utils.checkpoint import save_weights

    cfg = train_CSAKD.load_config(tiny(tmp_path))
    torch.manual_seed(seed)
    teacher = build_model(cfg, "teacher")
    path = tmp_path / "teacher.pth"
    save_weights(path, teacher, cfg)
    return path, teacher.state_dict()


def test_inheritance_copies_exactly_the_modules_it_names(tmp_path, capsys):
    from engine.cotrainer import CoTrainer
    from engine.inherit import inheritable

    path, teacher = _teacher_file(tmp_path)
    cpu = torch.device("cpu")
    fresh = CoTrainer.build(train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "none")), cpu).student.state_dict()
    capsys.readouterr()
    cfg = train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "none", "--student_init", "teacher", "--teacher_ckpt",
                                       str(path)))
    got = CoTrainer.build(cfg, cpu).student.state_dict()
    copied = set(inheritable(got, teacher))
    # the tiny pair (teacher 6644, student 1111, nf 8): stems, Z_mh / Z_m first blocks, CSA, fuse conv and head
    assert {k.split(".")[0] for k in copied} == {"hmconv1", "mhconv1", "hconv1", "mconv1", "mhfeat", "mfeat",
                                                 "fuse_att", "fuse", "last"}
    assert not any(k.startswith("hfeat.") for k in copied)  # grouped convolutions: another shape, biases too
    for k in got:
        assert torch.equal(got[k], teacher[k] if k in copied else fresh[k]), k
    line = next(li for li in capsys.readouterr().out.splitlines() if li.startswith("--student_init teacher: copied"))
    assert f"copied {len(copied)} tensors from {path}" in line and "mhfeat.0" in line and "kept" in line
    assert line.rstrip().endswith("hfeat.0")
    with pytest.raises(ConfigError, match="--student_init teacher"):
        train_CSAKD.load_config(tiny(tmp_path, "--student_init", "teacher", "--teacher_ckpt", str(path)))  # online
    with pytest.raises(ConfigError, match="--student_init teacher"):
        train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "none", "--student_init", "teacher"))


def test_inheritance_arms_train_from_the_inherited_start(tmp_path):
    """Inheritance alone (no KD term) and inheritance + response KD (offline) start from the same weights; with
    w_kd 0 the offline arm is exactly inheritance alone (its teacher-free control)."""
    path, _ = _teacher_file(tmp_path)
    common = ("--student_init", "teacher", "--teacher_ckpt", str(path))
    train(train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "none", *common, prefix="alone", epochs=1)))
    train(train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "offline", "--w_kd", "0", *common, prefix="zero",
                                       epochs=1)))
    train(train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "offline", *common, prefix="kd", epochs=1)))
    a, z, k = (weights(tmp_path / "ck" / p / "student" / "last.pth") for p in ("alone", "zero", "kd"))
    assert all(torch.equal(a[n], z[n]) for n in a)
    assert not all(torch.equal(a[n], k[n]) for n in a)


# ---------------------------------------------------------------------------------------------------------------------
# (c) block mixing


def test_mixing_decisions_are_a_function_of_seed_and_step():
    from engine.strategies.mixing import mixes

    draws = [mixes(5, k, 0.3) for k in range(4000)]
    assert draws == [mixes(5, k, 0.3) for k in range(4000)] and draws != [mixes(6, k, 0.3) for k in range(4000)]
    assert abs(sum(draws) / 4000 - 0.3) < 0.03
    assert not any(mixes(5, k, 0.0) for k in range(100)) and all(mixes(5, k, 1.0) for k in range(100))


def _offline_pair(tmp_path, *extra: str):
    from engine.cotrainer import CoTrainer

    path, _ = _teacher_file(tmp_path)
    cfg = train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "offline", "--teacher_ckpt", str(path), *extra))
    return CoTrainer.build(cfg, torch.device("cpu"))


def test_the_composite_is_the_teachers_computation_after_the_students_blocks(tmp_path):
    from engine.strategies.mixing import block_mixed
    from models.dts import STREAM_STACKS

    cot = _offline_pair(tmp_path, "--block_mix", "1")
    teacher, student = cot.teacher, cot.student
    g = torch.Generator().manual_seed(0)
    lr, msi = torch.rand(2, 8, 4, 4, generator=g) * 2 - 1, torch.rand(2, 2, 16, 16, generator=g) * 2 - 1
    with torch.no_grad():
        assert torch.equal(block_mixed(teacher, teacher, lr, msi), teacher(lr, msi)[0])  # nothing left to continue
        stems, up = student.stems(lr, msi)
        z = {}
        for name, attr in STREAM_STACKS.items():
            x = getattr(student, attr)(stems[name])
            for block in list(getattr(teacher, attr))[len(getattr(student, attr)):]:  # e.g. 6 − 1 Z_mh blocks
                x = block(x)
            z[name] = x
        assert len(student.hmfeat) == 0 and len(teacher.hmfeat) == 6  # Z_hm: all six teacher blocks
        assert torch.equal(block_mixed(student, teacher, lr, msi), teacher.head(z, up)[0])


def test_block_mixing_loss_golden_value_and_no_gradient_to_the_teacher(tmp_path):
    import torch.nn.functional as F
    from test_engine_step import tiny_batch

    cot = _offline_pair(tmp_path, "--block_mix", "1", "--block_mix_weight", "0.5")
    before = {k: v.clone() for k, v in cot.teacher.state_dict().items()}
    strategy, batch = cot.strategy, tiny_batch()
    t_out = strategy.forward_teacher(cot.teacher, batch["lrhsi"], batch["hrmsi"], batch["gt"]).detach()
    s_out = strategy.forward_student(cot.student, batch["lrhsi"], batch["hrmsi"])
    composite = strategy._composite
    total, parts = strategy.student_objective(s_out, t_out, batch["gt"])
    mix = (F.smooth_l1_loss(composite, batch["gt"]) + F.smooth_l1_loss(composite, t_out.out)).detach()  # SmoothL1s
    assert float(parts["mix"]) == pytest.approx(float(mix), rel=1e-6) and float(parts["mixed"]) == 1.0
    plain, _ = StudentLoss(w_feat=0.0)(s_out.out, s_out.feat, batch["gt"], t_out.out, t_out.feat)
    assert float(total.detach()) == pytest.approx(float(plain.detach()) + 0.5 * float(mix), rel=1e-6)
    total.backward()
    assert all(p.grad is None for p in cot.teacher.parameters())  # frozen: no gradient reaches the teacher
    assert cot.student.mhconv1.weight.grad is not None
    stats = cot.step(batch)  # a whole step: the teacher's weights stay what they were
    assert stats["student/mixed"] == 1.0
    assert all(torch.equal(v, before[k]) for k, v in cot.teacher.state_dict().items())
    assert int(strategy.mix_step) == 2 and "mix_step" in strategy.state_dict()


def test_block_mixing_with_weight_zero_is_the_offline_run_without_it(tmp_path):
    """Teacher-free part of the control: a composite that does not enter the loss changes nothing."""
    from test_engine_step import tiny_batch

    a = _offline_pair(tmp_path, "--block_mix", "1", "--block_mix_weight", "0", "--w_kd", "0.1")
    b = _offline_pair(tmp_path, "--w_kd", "0.1")
    for seed in range(2):
        a.step(tiny_batch(seed=seed), torch.Generator().manual_seed(seed))
        b.step(tiny_batch(seed=seed), torch.Generator().manual_seed(seed))
    assert all(torch.equal(x, y) for x, y in zip(a.student.state_dict().values(), b.student.state_dict().values(),
                                                  strict=True))
    with pytest.raises(ConfigError, match="--block_mix"):
        train_CSAKD.load_config(tiny(tmp_path, "--block_mix", "0.5"))  # online


# ---------------------------------------------------------------------------------------------------------------------
# (a) teacher labels where no GT exists: unlabelled pairs and invertible-augmentation consistency


def test_the_augmentations_are_exactly_invertible_and_respect_the_scale():
    from engine.upcycle import TRANSFORMS, apply, draw_transform, undo

    g = torch.Generator().manual_seed(0)
    lr, hr = torch.randn(2, 3, 5, 5, generator=g), torch.randn(2, 2, 20, 20, generator=g)
    assert len(set(TRANSFORMS)) == 16 and TRANSFORMS[0] == (False, False, False, False)
    up = torch.nn.functional.interpolate  # nearest ×4: the LR pixel under each HR pixel
    for code in TRANSFORMS:
        for x in (lr, hr):
            assert torch.equal(undo(apply(x, code), code), x)
        assert torch.equal(apply(up(lr, scale_factor=4), code), up(apply(lr, code), scale_factor=4))
    assert torch.equal(apply(lr, (False, False, False, True)), -lr)
    assert torch.equal(apply(lr, (True, False, True, False)), lr.flip(-2).transpose(-2, -1))
    draws = [draw_transform(3, k) for k in range(600)]
    assert draws == [draw_transform(3, k) for k in range(600)] and TRANSFORMS[0] not in draws
    assert set(draws) == set(TRANSFORMS[1:])


class RaisingGT:
    """A GT that must never be read: any use of it raises."""

    def __getattr__(self, name):
        raise AssertionError(f"the GT was read ({name})")

    def __array__(self, *args, **kwargs):
        raise AssertionError("the GT was read (__array__)")


def _gt_never_read(monkeypatch):
    from data.datasets import SyntheticDataset

    real = SyntheticDataset.load

    def load(self, index, level):
        name, gt, msi, lr = real(self, index, level)
        return (name, RaisingGT(), msi, lr) if self.split == "unlabelled" else (name, gt, msi, lr)

    monkeypatch.setattr(SyntheticDataset, "load", load)


def test_the_unlabelled_path_never_reads_a_gt(tmp_path, monkeypatch):
    from data import build_dataset
    from engine.upcycle import UnlabelledInputs, unlabelled_stream

    _gt_never_read(monkeypatch)
    path, _ = _teacher_file(tmp_path)
    cfg = train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "offline", "--teacher_ckpt", str(path),
                                       "--unlabelled", "3"))
    ds = build_dataset(cfg, "unlabelled")
    with pytest.raises(AssertionError, match="the GT was read"):
        ds[0]  # the labelled path reads it: the trap works
    item = UnlabelledInputs(ds)[0]
    assert set(item) == {"lrhsi", "hrmsi"} and item["hrmsi"].shape[-1] == cfg["crop_size"]
    batch = unlabelled_stream(cfg).next()
    assert batch["lrhsi"].shape[0] == cfg["batch_size"] and "gt" not in batch
    # the unlabelled scenes are others than the training scenes (their own seed stream)
    train_inputs = [build_dataset(cfg, "train").load(i, 0)[2] for i in range(4)]
    assert not any(torch.equal(torch.as_tensor(ds.load(0, 0)[2]), torch.as_tensor(t)) for t in train_inputs)
    # a whole offline run with unlabelled pairs and augmentation consistency: no GT of them is read
    summary = train(train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "offline", "--teacher_ckpt", str(path),
                                                 "--unlabelled", "3", "--kd_augment", prefix="up", epochs=1)))
    assert summary["epoch"] == 0
    with pytest.raises(ConfigError, match="--unlabelled"):
        train_CSAKD.load_config(tiny(tmp_path, "--unlabelled", "3"))  # online


def test_upcycling_terms_golden_values(tmp_path):
    """parts["unlabelled"] = SmoothL1(S(x_u), T(x_u)); parts["augment"] = SmoothL1(g⁻¹(S(g(x))), T(x)) with the
    step's g; the total adds them with their weights."""
    import torch.nn.functional as F
    from test_engine_step import tiny_batch

    from engine.cotrainer import CoTrainer
    from engine.upcycle import apply, draw_transform, undo

    path, _ = _teacher_file(tmp_path)
    cfg = train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "offline", "--teacher_ckpt", str(path), "--snr", "0",
                                       "--unlabelled", "2", "--kd_augment", "--w_unlabelled", "0.3",
                                       "--w_augment", "0.7"))
    cot = CoTrainer.build(cfg, torch.device("cpu"))
    cot.start_epoch(0)
    batch, u = tiny_batch(seed=1), tiny_batch(seed=2)
    batch = {**batch, "unlabelled": {"lrhsi": u["lrhsi"], "hrmsi": u["hrmsi"]}, "step": 5}
    with torch.no_grad():
        s, t = cot.student, cot.teacher
        code = draw_transform(cfg["seed"], 5)
        want_u = F.smooth_l1_loss(s(u["lrhsi"], u["hrmsi"])[0], t(u["lrhsi"], u["hrmsi"])[0])
        aug = undo(s(apply(batch["lrhsi"], code), apply(batch["hrmsi"], code))[0], code)
        want_a = F.smooth_l1_loss(aug, t(batch["lrhsi"], batch["hrmsi"])[0])
        base, _ = cot.strategy.student_objective(cot.strategy.forward_student(s, batch["lrhsi"], batch["hrmsi"]),
                                                 cot.strategy.forward_teacher(t, batch["lrhsi"], batch["hrmsi"], None),
                                                 batch["gt"])
    stats = cot.step(batch)
    assert stats["student/unlabelled"] == pytest.approx(float(want_u), rel=1e-5)
    assert stats["student/augment"] == pytest.approx(float(want_a), rel=1e-5)
    assert stats["student/loss"] == pytest.approx(float(base) + 0.3 * float(want_u) + 0.7 * float(want_a), rel=1e-5)


def test_the_teacher_free_controls_use_the_gt_where_it_exists(tmp_path):
    from engine.upcycle import unlabelled_stream

    cfg = train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "none", "--unlabelled", "2", "--kd_augment"))
    assert "gt" in unlabelled_stream(cfg).next()  # the extra scenes with their GT: more labelled data
    summary = train(train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "none", "--unlabelled", "2", "--kd_augment",
                                                 prefix="control", epochs=1)))
    assert summary["epoch"] == 0


def test_a_run_with_unlabelled_pairs_resumes_exactly(tmp_path):
    path, _ = _teacher_file(tmp_path)
    extra = ("--kd_mode", "offline", "--teacher_ckpt", str(path), "--unlabelled", "3", "--kd_augment")
    train(train_CSAKD.load_config(tiny(tmp_path, *extra, prefix="straight", epochs=2)))
    split = tiny(tmp_path, *extra, prefix="split", epochs=2)
    train(train_CSAKD.load_config(split), stop_after=0)
    train(train_CSAKD.load_config([*split, "--resume"]))
    a, b = (weights(tmp_path / "ck" / p / "student" / "last.pth") for p in ("straight", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_upcycling_forwards_leave_the_block_mixing_state_alone(tmp_path):
    from test_engine_step import tiny_batch

    cot = _offline_pair(tmp_path, "--block_mix", "1", "--kd_augment")
    for seed in range(2):
        u = tiny_batch(seed=10 + seed)
        cot.step({**tiny_batch(seed=seed), "step": seed, "unlabelled": {"lrhsi": u["lrhsi"], "hrmsi": u["hrmsi"]}})
    assert int(cot.strategy.mix_step) == 2 and cot.strategy._composite is None  # one composite per step, consumed
    with pytest.raises(ConfigError, match="--kd_strategy csakd"):
        train_CSAKD.load_config(tiny(tmp_path, "--kd_mode", "none", "--kd_augment", "--kd_strategy", "hkd"))
