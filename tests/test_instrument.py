"""The paired bench's instrument (issue 18): common random numbers between the arms of one seed, and a data
seed separate from the initialisation seed.

- the student's initial weights do not depend on ``--kd_mode`` / ``--kd_strategy`` (the teacher draws from its
  own stream); ``--compat official`` keeps the official order (teacher first, from the global RNG);
- with every distillation weight at 0, an online run's student computes exactly what the student alone computes
  (same batches, crops and input noise, same weights after training: exact, one process, one thread);
- ``--data_seed`` changes the generated scenes and nothing else; ``--seed`` with a fixed ``--data_seed`` changes
  everything but the scenes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train_run import tiny, weights

import train_CSAKD
from data import build_dataset
from engine.cotrainer import CoTrainer
from engine.strategies.csakd import CSAKDStrategy
from engine.train import train
from models import build_model
from utils.checkpoint import save_weights

pytestmark = pytest.mark.usefixtures("one_thread")


def cfg_of(tmp_path: Path, *extra: str) -> dict:
    return train_CSAKD.load_config(tiny(tmp_path, *extra))


def student_weights(cfg: dict) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in CoTrainer.build(cfg, torch.device("cpu")).student.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different[:5]}"


def differ(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a)


def test_the_student_starts_from_the_same_weights_whatever_the_teacher(tmp_path):
    path = tmp_path / "teacher.pth"
    base = cfg_of(tmp_path)
    torch.manual_seed(123)
    save_weights(path, build_model(base, "teacher"), base)
    alone = student_weights(cfg_of(tmp_path, "--kd_mode", "none"))
    for extra in (("--kd_mode", "online"), ("--kd_mode", "online", "--teacher_layers", "2222", "--feat_adapter"),
                  ("--kd_mode", "offline", "--teacher_ckpt", str(path)), ("--kd_mode", "online", "--w_kd", "0.5")):
        assert_same(student_weights(cfg_of(tmp_path, *extra)), alone)
    assert differ(student_weights(cfg_of(tmp_path, "--kd_mode", "none", "--seed", "2")), alone)


def test_compat_official_keeps_the_official_construction_order(tmp_path):
    """Official: teacher then student from the global RNG as the seed left it."""
    cfg = cfg_of(tmp_path, "--compat", "official", "--kd_mode", "online")
    torch.manual_seed(cfg["seed"])
    build_model(cfg, "teacher")
    official = build_model(cfg, "student").state_dict()
    torch.manual_seed(cfg["seed"])
    assert_same(student_weights(cfg), official)
    corrected = student_weights(cfg_of(tmp_path, "--kd_mode", "online"))
    assert differ(corrected, official)  # the teacher moved it


def _record_student_inputs(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = CSAKDStrategy.forward_student

    def forward_student(self, student, lrhsi, hrmsi):
        seen.append((lrhsi.detach().clone(), hrmsi.detach().clone()))
        return real(self, student, lrhsi, hrmsi)

    monkeypatch.setattr(CSAKDStrategy, "forward_student", forward_student)
    return seen


def test_zero_distillation_weights_give_exactly_the_student_alone(tmp_path, monkeypatch):
    """Same batches, crops and noisy inputs in the same order; the same weights after 2 epochs, bit for bit."""
    seen = _record_student_inputs(monkeypatch)
    train(cfg_of(tmp_path, "--kd_mode", "none", "--prefix", "alone"))
    alone_inputs, seen[:] = list(seen), []
    train(cfg_of(tmp_path, "--kd_mode", "online", "--w_kd", "0", "--w_feat", "0", "--prefix", "zero"))
    assert len(seen) == len(alone_inputs) > 0
    for (a_lr, a_msi), (b_lr, b_msi) in zip(alone_inputs, seen, strict=True):
        assert torch.equal(a_lr, b_lr) and torch.equal(a_msi, b_msi)
    ck = tmp_path / "ck"
    for name in ("last", "best"):
        assert_same(weights(ck / "zero" / "student" / f"{name}.pth"), weights(ck / "alone" / "student" / f"{name}.pth"))
    # a non-zero weight does change the student (the comparison above is not vacuous)
    train(cfg_of(tmp_path, "--kd_mode", "online", "--w_kd", "0.5", "--prefix", "kd"))
    assert differ(weights(ck / "kd" / "student" / "last.pth"), weights(ck / "alone" / "student" / "last.pth"))


def scenes(cfg: dict, split: str = "train") -> list[torch.Tensor]:
    ds = build_dataset(cfg, split)
    return [torch.as_tensor(ds.load(i, 0)[1]) for i in range(len(ds))]


def test_data_seed_changes_the_data_and_nothing_else(tmp_path):
    base = cfg_of(tmp_path, "--kd_mode", "online")
    assert base["data_seed"] is None  # default: the seed draws the data, as before the flag existed
    same_data = cfg_of(tmp_path, "--kd_mode", "online", "--data_seed", str(base["seed"]))
    other_data = cfg_of(tmp_path, "--kd_mode", "online", "--data_seed", "77")
    other_init = cfg_of(tmp_path, "--kd_mode", "online", "--data_seed", str(base["seed"]), "--seed", "5")
    for split in ("train", "val", "test"):
        ref = scenes(base, split)
        assert all(torch.equal(a, b) for a, b in zip(ref, scenes(same_data, split), strict=True))
        assert all(torch.equal(a, b) for a, b in zip(ref, scenes(other_init, split), strict=True))
        assert not any(torch.equal(a, b) for a, b in zip(ref, scenes(other_data, split), strict=True))
    assert_same(student_weights(other_data), student_weights(base))  # initialisation: the seed's
    assert differ(student_weights(other_init), student_weights(base))


@pytest.mark.parametrize(("bench", "base"), [("bench_quickstart", "quickstart"),
                                             ("bench_realistic31", "realistic31_rgb")])
def test_bench_configs_are_their_base_with_a_larger_held_out_set_and_the_last_epoch_validated(bench, base):
    from utils.config import load_config_file

    root = Path(__file__).resolve().parents[1] / "configs"
    b, a = load_config_file(root / f"{bench}.yaml"), load_config_file(root / f"{base}.yaml")
    train_n, val_n, test_n = b["synthetic_scenes"]
    assert train_n == a["synthetic_scenes"][0] and val_n >= 16 and test_n >= 48 and b["eval_last"] is True
    # The quick-start bench keeps the schedule it was measured with (80 epochs, teacher 6644, no residual);
    # scenes, student and optimiser are the quick start's.
    schedule = {"epochs", "teacher_layers", "residual"} if bench == "bench_quickstart" else set()
    same = {k for k in a if k not in {"prefix", "synthetic_scenes", "tb_scenes", "eval_last", *schedule}}
    assert {k: b[k] for k in same} == {k: a[k] for k in same}
    assert set(b) - set(a) <= {"eval_last", *schedule}
    train_CSAKD.load_config(["--config", str(root / f"{bench}.yaml")])  # a valid training config


def test_data_seed_leaves_the_batch_order_crops_and_noise_draws_alone(tmp_path, monkeypatch):
    """Two data draws, one --seed: the same sample indices in the same order, the same crop/augmentation draws
    and the same noise generator states at every step."""
    from data.sample import FusionDataset
    from engine import cotrainer

    seen: list[tuple] = []
    real_item, real_awgn = FusionDataset.__getitem__, cotrainer.awgn

    def item(self, index):
        if self.split == "train":
            seen.append(("item", index, hash(self.rng.getstate())))
        return real_item(self, index)

    def awgn(x, snr, generator=None):
        seen.append(("noise", None if generator is None else generator.get_state().sum().item()))
        return real_awgn(x, snr, generator)

    monkeypatch.setattr(FusionDataset, "__getitem__", item)
    monkeypatch.setattr(cotrainer, "awgn", awgn)
    runs = []
    for data_seed in ("5", "6"):
        seen.clear()
        train(cfg_of(tmp_path, "--kd_mode", "online", "--data_seed", data_seed, "--prefix", f"d{data_seed}"))
        runs.append(list(seen))
    assert runs[0] == runs[1] and len(runs[0]) > 8
    seen.clear()
    train(cfg_of(tmp_path, "--kd_mode", "online", "--data_seed", "5", "--seed", "2", "--prefix", "s2"))
    assert seen != runs[0]  # the draws do follow --seed
