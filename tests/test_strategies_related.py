"""The related methods as strategies (engine/strategies/hkd.py, psd.py): each trains 2 epochs on a tiny version of
configs/quickstart.yaml (built-in synthetic scenes; 8 bands, 16×16 scenes, 8×8 crops, width 8, 4 training scenes),
resumes exactly, and its checkpoints test end to end; the teacher gets no gradient from the student objective; a
strategy's own parameters (ACF, heads on a frozen teacher) are trained, saved, resumed and kept out of the
student's weights; the flag rules of --arch / --hkd_heads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train_run import assert_same_weights, tiny, tiny_test, weights

import test_CSAKD
import train_CSAKD
from engine.state import load_training_state
from engine.strategies import build_strategy
from engine.train import train
from models import PSDNet, build_model
from utils.config import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def straight_and_resumed(tmp_path: Path, *flags: str) -> tuple[Path, Path]:
    """A 2-epoch run, and the same run stopped after epoch 0 and resumed: their run folders."""
    train(train_CSAKD.load_config(tiny(tmp_path, *flags, prefix="straight")))
    split = tiny(tmp_path, *flags, prefix="split")
    train(train_CSAKD.load_config(split), stop_after=0)
    train(train_CSAKD.load_config([*split, "--resume"]))
    return tmp_path / "ck" / "straight", tmp_path / "ck" / "split"


def assert_same_states(a: Path, b: Path, roles: tuple[str, ...]) -> dict:
    for role in roles:
        assert_same_weights(a / role / "last.pth", b / role / "last.pth")
    sa, sb = load_training_state(a / "state.pth"), load_training_state(b / "state.pth")
    assert sa["strategy"].keys() == sb["strategy"].keys()
    assert all(torch.equal(sa["strategy"][k], sb["strategy"][k]) for k in sa["strategy"])
    assert sa["best"] == sb["best"] and sa["iteration"] == sb["iteration"] == 4
    return sa


def check_tests_end_to_end(tmp_path: Path, roles: dict[int, str], *flags: str) -> None:
    for mode, role in roles.items():
        out = tmp_path / f"res_{role}"
        argv = [*tiny_test(tmp_path, prefix="straight"), "--test_mode", str(mode), "--results", str(out), *flags]
        assert test_CSAKD.main(argv) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["model"] == role and summary["images"] == 2 and summary["metrics"]["psnr"] > 0


def test_hkd_online_resumes_exactly_and_tests(tmp_path: Path) -> None:
    a, b = straight_and_resumed(tmp_path, "--kd_strategy", "hkd", "--hkd_acf", "pixel")
    state = assert_same_states(a, b, ("teacher", "student"))
    # The ACF is the strategy's: in the state, trained, never in the student's weights; the heads are the networks'.
    assert {k.split(".")[0] for k in state["strategy"]} == {"acf"}
    student = weights(a / "student" / "best.pth")
    assert not any(k.startswith("acf") for k in student) and any(k.startswith("inter_heads.") for k in student)
    assert state["config"]["hkd_heads"] == 2 and state["config"]["arch"] == "dts"
    fresh = build_strategy(state["config"]).state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in state["strategy"].items())
    check_tests_end_to_end(tmp_path, {1: "teacher", 2: "student"})


def test_hkd_offline_trains_heads_on_the_frozen_teacher(tmp_path: Path) -> None:
    """Teacher first (a CSAKD teacher without heads), then frozen: its heads train in the strategy, resumed exactly."""
    train(train_CSAKD.load_config(tiny(tmp_path, prefix="teacher", epochs=1)))
    ckpt = tmp_path / "ck" / "teacher" / "teacher" / "best.pth"
    a, b = straight_and_resumed(tmp_path, "--kd_strategy", "hkd", "--kd_mode", "offline", "--teacher_ckpt", str(ckpt))
    state = assert_same_states(a, b, ("student",))
    assert set(state["networks"]) == {"student"}
    assert {k.split(".")[0] for k in state["strategy"]} == {"acf", "teacher_heads"}
    assert not (a / "teacher").exists() or not any((a / "teacher").iterdir())
    assert not any(k.startswith(("acf", "teacher_heads")) for k in weights(a / "student" / "best.pth"))
    check_tests_end_to_end(tmp_path, {2: "student"})


def test_psd_resumes_exactly_and_both_networks_test(tmp_path: Path) -> None:
    a, b = straight_and_resumed(tmp_path, "--kd_strategy", "psd")
    state = assert_same_states(a, b, ("teacher", "student"))
    assert state["config"]["arch"] == "psd" and state["strategy"] == {}
    # the privileged teacher is tested with the GT at its stage-2 input; the student without it
    check_tests_end_to_end(tmp_path, {1: "teacher", 2: "student"})


def test_psd_with_a_single_band_hr_msi_trains_and_tests(tmp_path: Path) -> None:
    """Pansharpening-style input: a one-band HR-MSI."""
    summary = train(train_CSAKD.load_config(tiny(tmp_path, "--kd_strategy", "psd", "--msi_bands", "1",
                                                  prefix="straight", epochs=1)))
    assert summary["epoch"] == 0
    assert weights(tmp_path / "ck" / "straight" / "student" / "best.pth")["msi_feat.0.weight"].shape[1] == 1
    check_tests_end_to_end(tmp_path, {2: "student"}, "--msi_bands", "1")


def tiny_batch(bands: int = 8, msi: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(2, bands, 4, 4, generator=g) * 2 - 1, torch.rand(2, msi, 16, 16, generator=g) * 2 - 1,
            torch.rand(2, bands, 16, 16, generator=g) * 2 - 1)


def tiny_cfg(tmp_path: Path, *flags: str) -> dict:
    return train_CSAKD.load_config(tiny(tmp_path, *flags))


@pytest.mark.parametrize("flags", [("--kd_strategy", "hkd"), ("--kd_strategy", "psd")])
def test_teacher_gets_no_gradient_from_the_student_objective(tmp_path: Path, flags: tuple[str, ...]) -> None:
    cfg = tiny_cfg(tmp_path, *flags)
    torch.manual_seed(0)
    teacher, student = build_model(cfg, "teacher"), build_model(cfg, "student")
    strategy = build_strategy(cfg)
    lr, hr, gt = tiny_batch()
    t_out = strategy.forward_teacher(teacher, lr, hr, gt)
    s_out = strategy.forward_student(student, lr, hr)
    assert len(s_out.inter_outs) == len(t_out.inter_outs) == 2
    total, parts = strategy.student_objective(s_out, t_out, gt)  # not detached here: the terms detach themselves
    total.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in strategy.parameters())
    assert torch.isfinite(total) and all(torch.isfinite(v) for v in parts.values())


def test_heads_on_a_frozen_teacher_get_the_only_gradient(tmp_path: Path) -> None:
    teacher_cfg = tiny_cfg(tmp_path)
    torch.manual_seed(0)
    teacher = build_model(teacher_cfg, "teacher")
    path = tmp_path / "teacher.pth"
    from utils.checkpoint import save_weights
    save_weights(path, teacher, teacher_cfg)
    cfg = tiny_cfg(tmp_path, "--kd_strategy", "hkd", "--kd_mode", "offline", "--teacher_ckpt", str(path))
    strategy = build_strategy(cfg)
    assert strategy.teacher_heads is not None and strategy.teacher_heads.depths == (2, 4)  # Z_hm: 6 blocks
    teacher.requires_grad_(False).eval()
    lr, hr, gt = tiny_batch()
    with torch.no_grad():  # as the co-trainer runs a frozen teacher
        t_out = strategy.forward_teacher(teacher, lr, hr, gt)
    s_out = strategy.forward_student(build_model(cfg, "student"), lr, hr)
    total, parts = strategy.student_objective(s_out, t_out.detach(), gt)
    total.backward()
    assert "teacher_heads" in parts
    assert all(p.grad is not None for p in strategy.teacher_heads.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_plain_forward_is_unchanged_by_the_heads(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path)
    lr, hr, _ = tiny_batch()
    for role in ("teacher", "student"):
        torch.manual_seed(0)
        plain = build_model(cfg, role)
        torch.manual_seed(0)
        headed = build_model({**cfg, "hkd_heads": 2}, role)
        missing = headed.load_state_dict(plain.state_dict(), strict=False).missing_keys
        assert missing and all(k.startswith("inter_heads.") for k in missing)
        assert torch.equal(plain(lr, hr)[0], headed(lr, hr)[0])
        aux = headed.forward_aux(lr, hr, frozenset({"inter_outs"}))
        assert torch.equal(aux.out, plain(lr, hr)[0]) and len(aux.inter_outs) == 2


def test_flag_rules(tmp_path: Path) -> None:
    assert tiny_cfg(tmp_path, "--kd_strategy", "psd")["arch"] == "psd"
    assert tiny_cfg(tmp_path, "--kd_strategy", "hkd")["hkd_heads"] == 2
    assert tiny_cfg(tmp_path)["hkd_heads"] == 0 and tiny_cfg(tmp_path)["arch"] == "dts"
    assert isinstance(build_model(tiny_cfg(tmp_path, "--arch", "psd"), "teacher"), PSDNet)
    for flags, message in ((("--kd_strategy", "psd", "--arch", "dts"), "needs --arch psd"),
                           (("--kd_strategy", "hkd", "--hkd_heads", "0"), "needs --hkd_heads K > 0"),
                           (("--arch", "psd", "--hkd_heads", "2"), "0 with --arch psd")):
        with pytest.raises(ConfigError, match=message):
            tiny_cfg(tmp_path, *flags)


def test_bench_specs_select_the_related_strategies(tmp_path: Path) -> None:
    import benchmarks.kd as kd

    for name, arch in (("hkd", "dts"), ("psd", "psd")):
        values = kd.parse_spec(name).train_values()
        assert values == {"kd_strategy": name}
        assert tiny_cfg(tmp_path, "--kd_strategy", values["kd_strategy"])["arch"] == arch
