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
