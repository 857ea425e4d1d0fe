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
