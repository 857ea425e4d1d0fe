"""The written network protocol (models/network.py) and the one answer to "which network does this file hold"
(models.describe.network_from_file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import PSDNet, Student, Teacher, build_model
from models.describe import build_from_checkpoint, network_from_file
from models.family import NetworkRegistry, network_class, rebuild
from models.network import FusionNetwork
from utils.checkpoint import save_weights

TINY = {"bands": 8, "msi_bands": 2, "num_base_chs": 8, "num_agg_feat": 4, "scale": 4}


@pytest.mark.parametrize("make", [
    lambda: Teacher(**TINY, adaptive_fuse=3, teacher_layers="1221", hkd_heads=2),
    lambda: Student(**TINY, adaptive_fuse=0, student_layers=1441, residual=True),
    lambda: PSDNet(8, 2, 8, 4, privileged=True, patches=(4, 2, 1), patch_overlap=8),
], ids=["teacher", "student", "psd-teacher"])
def test_captured_arguments_rebuild_the_network(make) -> None:
    """Every argument is captured (defaults included, normalised forms as the network reads them, tuples as
    lists) and rebuilds a network with the same description and the same parameter shapes."""
    model = make()
    desc = model.model_config()
    assert isinstance(model, FusionNetwork) and desc.get("arch", "dts") == model.arch and desc["role"] == model.role
    assert all(not isinstance(v, tuple) for v in desc.values())
    again = rebuild(desc)
    assert type(again) is type(model) and again.model_config() == desc
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_layers_are_saved_parsed() -> None:
    assert Student(**TINY, student_layers="1,3,2,2").model_config()["student_layers"] == [1, 3, 2, 2]


def test_unknown_family_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    save_weights(path, Student(**TINY))
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["arch"] = "unet"
    with pytest.raises(ValueError, match=r"x\.pth: holds an --arch 'unet' student network.*expected one of"):
        network_from_file(path, ckpt=ckpt)
    with pytest.raises(ValueError, match="expected one of"):
        network_class("unet", "student")


def test_role_and_flag_mismatches_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "psd.pth"
    save_weights(path, build_model({**TINY, "arch": "psd"}, "student"))
    held = network_from_file(path)
    assert (held.arch, held.role, held.kwargs["privileged"]) == ("psd", "student", False)
    with pytest.raises(ValueError, match=r"psd\.pth: holds a student network, but a teacher is needed"):
        network_from_file(path, role="teacher")
    with pytest.raises(ValueError, match=r"psd\.pth: contradicts --arch dts \(the file holds arch=psd\)"):
        build_from_checkpoint({**TINY, "arch": "dts"}, "student", path, given={"arch"})


def test_files_from_before_the_protocol_load(tmp_path: Path) -> None:
    """A file saved before families (no "residual", "hkd_heads" in its description; a DTS file has no "arch"
    either, then as now) is a DTS network without heads or skip, by today's rule; its weights load."""
    model = Student(**TINY)
    path = tmp_path / "old.pth"
    save_weights(path, model)
    ckpt = torch.load(path, weights_only=True)
    assert "arch" not in ckpt["model"]
    for key in ("residual", "hkd_heads"):
        del ckpt["model"][key]
    held = network_from_file(path, ckpt=ckpt)
    assert (held.arch, held.kwargs["residual"], held.kwargs["hkd_heads"]) == ("dts", False, 0)
    loaded, _ = build_from_checkpoint({}, "student", path, ckpt=ckpt)
    assert loaded.model_config() == model.model_config()


def test_taps_record_only_inside_recording_and_name_a_missing_submodule() -> None:
    """A recorder's hooks stay on the network but record only inside ``recording()``; the forward itself takes
    only the paper's two inputs."""
    import inspect

    from models.taps import Tap, TapRecorder

    torch.manual_seed(0)
    net = Student(**TINY, student_layers="1221")
    assert list(inspect.signature(net.forward).parameters) == ["lrhsi", "hrmsi"]
    lr, hr = torch.rand(1, 8, 4, 4), torch.rand(1, 2, 16, 16)
    recorder = TapRecorder(net, [Tap("mhfeat.1"), Tap("fuse", port="input")])
    out = net(lr, hr)[0]  # not recording: nothing kept
    assert recorder._active is None
    with recorder.recording() as rec:
        again, fused_again = net(lr, hr)
    assert torch.equal(out, again) and torch.equal(rec.values[1], fused_again)  # the head's input is the fused one
    assert rec.values[0].shape == (1, 8, 4, 4)  # a Z_mh block: LR features
    recorder.remove()
    with pytest.raises(ValueError, match=r"'hmfeat\.0': Student has no such submodule"):
        TapRecorder(net, [Tap("hmfeat.0")])  # the student builds no Z_hm blocks


def test_a_family_registers_its_classes_once() -> None:
    networks = NetworkRegistry("network family", "--arch")
    with pytest.raises(ValueError, match=r"--arch dts2: the classes \{'Student': 'dts'\} are registered with other"):
        networks.register("dts2", classes={"student": Student})
    with pytest.raises(ValueError, match="classes must map roles"):
        networks.register("none")
    assert network_class("dts", "student") is Student and network_class("psd", "teacher") is PSDNet
