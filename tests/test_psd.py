"""The PSDNet-style progressive network (models/psd.py) and its losses (losses/progressive.py): the properties of
other-seeds.md §3.3 on tiny shapes (LR 4×4, HR 16×16, nf 8)."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F

from engine.evaluate import predict
from losses.progressive import PSD_FEATURE_WEIGHT, stage_feature_mse, stage_l1
from models.psd import (
    CAB,
    SAB,
    PSDNet,
    auto_overlap,
    build_psd,
    crossfade_weights,
    overlap_flag,
    split_patches,
    stitch_patches,
)
from utils.checkpoint import load_weights, read_checkpoint, save_weights
from utils.complexity import complexity

pytestmark = pytest.mark.usefixtures("one_thread")

BANDS, MSI, NF = 5, 3, 8


def net(privileged: bool = False, seed: int = 0, **kwargs) -> PSDNet:
    torch.manual_seed(seed)
    return PSDNet(**{"bands": BANDS, "msi_bands": MSI, "num_base_chs": NF, "scale": 4, "privileged": privileged,
                     **kwargs})


def inputs(seed: int = 1, batch: int = 2, msi: int = MSI) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(shape, generator=gen) * 2 - 1
                 for shape in ((batch, BANDS, 4, 4), (batch, msi, 16, 16), (batch, BANDS, 16, 16)))


# --- stitching ----------------------------------------------------------------------------------------


def test_crossfade_weights_start_at_one_and_fall() -> None:
    w = crossfade_weights(8, torch.float64)
    assert w[0] == 1.0 and bool((w[1:] < w[:-1]).all()) and 0 < w[-1] < 0.05


@pytest.mark.parametrize("count", [2, 4])
@pytest.mark.parametrize("size", [(16, 16), (13, 10)])
def test_split_then_stitch_returns_the_input_exactly(count: int, size: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    pieces = split_patches(x, count, overlap=4)
    assert len(pieces) == count
    assert torch.equal(stitch_patches(pieces, size, overlap=4), x)
    const = torch.full((1, 2, *size), 0.37)
    assert torch.equal(stitch_patches(split_patches(const, count, 4), size, 4), const)


def test_stitch_cross_fades_the_overlap() -> None:
    top, bottom = torch.ones(1, 1, 10, 2), torch.zeros(1, 1, 10, 2)  # size 16, overlap 4: rows 6–9 shared
    out = stitch_patches([top, bottom], (16, 2), overlap=4)[0, 0, :, 0]
    torch.testing.assert_close(out[6:10], crossfade_weights(4))
    assert bool((out[:6] == 1).all()) and bool((out[10:] == 0).all())


def test_auto_overlap_is_the_authors_share_of_the_tile() -> None:
    """The authors share 32 HR rows on 264-px tiles (≈ 12 %); "auto" keeps that share: 8 on a 64-px tile."""
    assert [auto_overlap(s) for s in (264, 256, 64, 32, 16, 1)] == [32, 30, 8, 4, 2, 2]
    assert all(auto_overlap(s) % 2 == 0 for s in range(1, 600))


@pytest.mark.parametrize("count", [2, 4])
@pytest.mark.parametrize("size", [(64, 64), (64, 48)])
def test_auto_overlap_round_trip_at_a_64_px_tile(count: int, size: tuple[int, int]) -> None:
    """Split and stitch with the default "auto" overlap: 8 rows shared on 64 (halves of 36 rows), 6 columns on 48
    (halves of 27); stitching gives the tile back exactly."""
    x = torch.randn(1, 2, *size, generator=torch.Generator().manual_seed(0))
    pieces = split_patches(x, count)
    rows = size[0] // 2 + auto_overlap(size[0]) // 2
    cols = size[1] // 2 + auto_overlap(size[1]) // 2 if count == 4 else size[1]
    assert [p.shape[-2:] for p in pieces] == [(rows, cols)] * count
    assert torch.equal(stitch_patches(pieces, size), x)
    assert torch.equal(stitch_patches(pieces, size, "auto"), x)


def test_multipatch_by_default_scales_its_overlap_and_the_flag_takes_auto_or_pixels() -> None:
    lr, hr = (torch.rand(1, BANDS, 16, 16) * 2 - 1), (torch.rand(1, 1, 64, 64) * 2 - 1)
    model = net(msi_bands=1, patches=(4, 2, 1))
    assert model.patch_overlap == "auto" and model.model_config()["patch_overlap"] == "auto"
    assert model(lr, hr)[0].shape == (1, BANDS, 64, 64)  # a PAN of one band, 36-px pieces
    flags = {"bands": BANDS, "msi_bands": 1, "num_base_chs": NF, "psd_patches": [4, 2, 1]}
    assert build_psd(flags, "student").patch_overlap == "auto"
    assert build_psd({**flags, "psd_patch_overlap": 8}, "student").patch_overlap == 8
    assert (overlap_flag("auto"), overlap_flag("8")) == ("auto", 8)
    for bad in ("3", "0", "eight"):
        with pytest.raises(argparse.ArgumentTypeError, match="even number of HR pixels"):
            overlap_flag(bad)
    with pytest.raises(ValueError, match="patch_overlap"):
        net(patches=(4, 2, 1), patch_overlap="half")


def test_bad_patch_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="patches"):
        net(patches=(3, 2, 1))
    with pytest.raises(ValueError, match="patch_overlap"):
        net(patches=(4, 2, 1), patch_overlap=3)
    with pytest.raises(ValueError, match="patch_overlap"):
        net(patches=(4, 2, 1), patch_overlap=32)(*inputs()[:2])  # more than the 16 HR rows


# --- blocks -------------------------------------------------------------------------------------------


def zeroed(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.zero_()
                m.bias.zero_()
    return module


def test_cab_with_zero_convs_is_the_identity_and_sab_gives_one_and_a_half() -> None:
    x = torch.randn(2, NF, 6, 5)
    assert torch.equal(zeroed(CAB(NF))(x), x)
    torch.testing.assert_close(zeroed(SAB(NF))(x), 1.5 * x)
    assert CAB(NF)(x).shape == SAB(NF)(x).shape == x.shape


# --- the network --------------------------------------------------------------------------------------


@pytest.mark.parametrize("msi", [MSI, 1])
def test_shapes_and_outputs(msi: int) -> None:
    model = net(msi_bands=msi)
    lr, hr, _ = inputs(msi=msi)
    out, feat = model(lr, hr)
    assert out.shape == (2, BANDS, 16, 16) and feat.shape == (2, NF, 16, 16)
    aux = model.forward_aux(lr, hr, {"feat", "inter_outs", "stage_feats"})
    images, feats = model.stages(lr, hr)
    assert torch.equal(aux.out, out) and torch.equal(aux.feat, feat)
    assert [t.shape for t in aux.inter_outs] == [(2, BANDS, 16, 16)] * 2
    assert all(torch.equal(a, b) for a, b in zip(aux.inter_outs + aux.stage_feats, images[:2] + feats[1:], strict=True))
    bare = model.forward_aux(lr, hr, set())
    assert bare.feat is None and bare.inter_outs == [] and bare.stage_feats == []
    assert torch.equal(predict(model, lr, hr), out)  # the evaluation path of test_CSAKD.py


def test_multipatch_network_runs_and_whole_pieces_change_nothing() -> None:
    lr, hr, _ = inputs()
    assert net(patches=(4, 2, 1), patch_overlap=4)(lr, hr)[0].shape == (2, BANDS, 16, 16)
    torch.testing.assert_close(net(patches=(1, 1, 1))(lr, hr)[0], net()(lr, hr)[0])


def test_privileged_teacher_needs_the_gt_and_the_student_refuses_it() -> None:
    lr, hr, gt = inputs()
    with pytest.raises(ValueError, match="takes the ground truth"):
        net(privileged=True)(lr, hr)
    with pytest.raises(ValueError, match="never sees the ground truth"):
        net()(lr, hr, gt)
    with pytest.raises(ValueError, match="gt: expected shape"):
        net(privileged=True)(lr, hr, gt[:, :2])
    with pytest.raises(ValueError, match="hrmsi: expected spatial size"):
        net()(lr, hr[..., :12])


def test_evaluation_without_a_gt_runs_the_student_and_refuses_the_privileged_teacher() -> None:
    """Full-resolution images have no GT: the student is scored there, the GT-fed teacher cannot be."""
    lr, hr, _ = inputs(msi=1)
    student = net(msi_bands=1)
    assert predict(student, lr, hr, gt=None).shape == (2, BANDS, 16, 16)
    with pytest.raises(ValueError, match=r"full-resolution split.*test the student"):
        predict(net(privileged=True, msi_bands=1), lr, hr, gt=None)


def test_the_gt_reaches_stages_two_and_three_only() -> None:
    teacher = net(privileged=True)
    lr, hr, gt = inputs()
    (y1, y2, y3), _ = teacher.stages(lr, hr, gt)
    (z1, z2, z3), _ = teacher.stages(lr, hr, -gt)
    assert torch.equal(y1, z1)
    assert not torch.allclose(y2, z2) and not torch.allclose(y3, z3)
    student = net(privileged=False)
    student.load_state_dict(teacher.state_dict())  # same weights: the student's stage 2 reads its own Y1
    (s1, s2, _), _ = student.stages(lr, hr)
    assert torch.equal(s1, y1) and not torch.allclose(s2, y2)


def test_complexity_checkpoint_and_rebuild() -> None:
    student, teacher = net(), net(privileged=True)
    c_s = complexity(student, (BANDS, 4, 4), (MSI, 16, 16))
    c_t = complexity(teacher, (BANDS, 4, 4), (MSI, 16, 16), gt_shape=(BANDS, 16, 16))
    assert c_s["params"] == c_s["params_all"] == sum(p.numel() for p in student.parameters())
    assert c_s["macs"] == c_t["macs"] > 0


def test_weights_file_rebuilds_the_network(tmp_path) -> None:
    teacher = net(privileged=True, patches=(4, 2, 1), patch_overlap=4)
    save_weights(tmp_path / "t.pth", teacher)
    saved = read_checkpoint(tmp_path / "t.pth")
    assert saved["role"] == "teacher" and saved["model"]["arch"] == "psd"
    rebuilt = PSDNet(**{k: v for k, v in saved["model"].items() if k not in ("role", "arch")})
    load_weights(rebuilt, tmp_path / "t.pth")
    lr, hr, gt = inputs()
    assert torch.equal(rebuilt(lr, hr, gt)[0], teacher(lr, hr, gt)[0])


# --- losses -------------------------------------------------------------------------------------------


def test_stage_losses_and_their_gradients() -> None:
    teacher, student = net(privileged=True), net(seed=3)
    lr, hr, gt = inputs()
    t = teacher.forward_aux(lr, hr, {"inter_outs", "stage_feats"}, gt=gt)
    s = student.forward_aux(lr, hr, {"inter_outs", "stage_feats"})
    images = [*s.inter_outs, s.out]
    deep = stage_l1(images, gt)
    torch.testing.assert_close(deep, sum(F.l1_loss(y, gt) for y in images))
    kd = stage_feature_mse(s.stage_feats, t.stage_feats)
    torch.testing.assert_close(kd, sum(F.mse_loss(a, b) for a, b in zip(s.stage_feats, t.stage_feats, strict=True)))
    (deep + PSD_FEATURE_WEIGHT * kd).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    with pytest.raises(ValueError, match="as many teacher"):
        stage_feature_mse(s.stage_feats, t.stage_feats[:1])
