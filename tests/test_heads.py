"""Intermediate image heads on the DTS networks (models/heads.py): where they tap, what they return, and that
training them alone leaves the backbone untouched (other-seeds.md §3.2, phase B)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import Student, Teacher
from models.heads import IntermediateHeads, collect_taps, default_depths, forward_with_heads, tap_depths, tap_stream

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(bands=6, msi_bands=3, num_base_chs=8, num_agg_feat=4)


def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return tuple(torch.rand(shape, generator=gen) * 2 - 1 for shape in ((2, 6, 4, 4), (2, 3, 16, 16), (2, 6, 16, 16)))


def test_documented_tap_depths() -> None:
    torch.manual_seed(0)
    teacher, student = Teacher(**SMALL), Student(**SMALL)
    assert (tap_stream(teacher), default_depths(teacher)) == ("hmfeat", (2, 4))  # 6 HR blocks
    assert (tap_stream(student), default_depths(student)) == ("mhfeat", (1, 3))  # 4 LR blocks
    assert tap_depths(10) == (3, 7)  # HKDSR: after residual groups 3 and 7 of 10
    assert tap_depths(1) == (1, 1)
    with pytest.raises(ValueError, match="no CLRA block"):
        tap_depths(0)


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_taps_are_the_block_outputs_and_the_forward_is_unchanged(role: str) -> None:
    torch.manual_seed(0)
    model = (Teacher if role == "teacher" else Student)(**SMALL).eval()
    lr, hr, _ = inputs()
    with torch.no_grad():
        plain = model(lr, hr)
        (out, fused), taps = collect_taps(model, lr, hr, (1, 3))
        stack = getattr(model, tap_stream(model))
        if role == "teacher":
            x = model.lrelu(model.hmconv1(torch.cat((F.interpolate(lr, size=(16, 16), mode="bilinear"), hr), 1)))
        else:
            x = model.lrelu(model.mhconv1(torch.cat((lr, F.interpolate(hr, size=(4, 4), mode="bicubic")), 1)))
        expected = [stack[:1](x), stack[:3](x)]
    assert torch.equal(out, plain[0]) and torch.equal(fused, plain[1])
    for tap, ref in zip(taps, expected, strict=True):
        torch.testing.assert_close(tap, ref)
    assert all(not m._forward_hooks for m in stack)  # hooks removed
    with pytest.raises(ValueError, match="outside the"):
        collect_taps(model, lr, hr, (len(stack) + 1,))


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_heads_return_images_of_the_output_shape_with_gradients(role: str) -> None:
    torch.manual_seed(0)
    model = (Teacher if role == "teacher" else Student)(**SMALL)
    heads = IntermediateHeads.for_network(model)
    lr, hr, gt = inputs()
    assert IntermediateHeads(**heads.config()).config() == heads.config()
    aux = forward_with_heads(model, heads, lr, hr)
    assert len(aux.inter_outs) == len(heads.depths) == 2
    assert all(y.shape == aux.out.shape == gt.shape for y in aux.inter_outs)
    sum(F.l1_loss(y, gt) for y in aux.inter_outs).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in heads.parameters())
    entry = model.hmconv1 if role == "teacher" else model.mhconv1
    assert entry.weight.grad is not None  # online: the head losses also train the trunk up to the tap
    assert model.fuse.weight.grad is None  # … and nothing after it


def test_head_only_training_leaves_the_frozen_backbone_unchanged() -> None:
    torch.manual_seed(0)
    teacher = Teacher(**SMALL)
    heads = IntermediateHeads.for_network(teacher)
    teacher.requires_grad_(False)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    heads_before = [p.detach().clone() for p in heads.parameters()]
    optimiser = torch.optim.Adam(heads.parameters(), lr=1e-2)
    lr, hr, gt = inputs()
    loss = sum(F.l1_loss(y, gt) for y in forward_with_heads(teacher, heads, lr, hr).inter_outs)
    loss.backward()
    optimiser.step()
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    assert all(not torch.equal(p, q) for p, q in zip(heads.parameters(), heads_before, strict=True))
