"""Tests of losses/: golden values, the official variants against independent restatements of the
official formulas (train_CSAKD.py / trainOps.py), and the properties docs/decisions.md #2-#3 rely on.

Golden values (tests/fixtures/golden_losses.json) were produced once by :func:`compute_golden_values`
on the seeded float64 inputs of :func:`golden_inputs`; regenerate them (only after an intended change of
a loss) with ``PYTHONPATH=. python tests/test_losses.py``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losses import (
    BEBALoss,
    FeatureAdapter,
    FeatureKDLoss,
    NormalisedFeatureKDLoss,
    ReconstructionLoss,
    ResponseKDLoss,
    SAMLoss,
    StudentLoss,
    TeacherLoss,
    standardise_channels,
    term_gradient_cosines,
    term_gradient_norms,
    warmup_factor,
)

GOLDEN_PATH = Path(__file__).parent / "fixtures" / "golden_losses.json"
GOLDEN_SEED = 20240628


def golden_inputs(seed: int = GOLDEN_SEED) -> dict[str, torch.Tensor]:
    """Small float64 inputs: target in (-1, 1), prediction/teacher = target + N(0, 0.6²) noise (so some
    |errors| exceed 1 and BEBA's linear branch is used), features ~ N(0, 2²). C = 6 ≠ W = 4, so the
    official SAM reshape mixes pixels and differs from the spectral SAM."""
    gen = torch.Generator().manual_seed(seed)
    shape, feat_shape = (2, 6, 5, 4), (2, 3, 5, 4)

    def normal(size: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(size, generator=gen, dtype=torch.float64)

    target = torch.tanh(normal(shape))
    return {
        "target": target,
        "student": target + 0.6 * normal(shape),
        "teacher": target + 0.3 * normal(shape),
        "student_feat": 2 * normal(feat_shape),
        "teacher_feat": 2 * normal(feat_shape),
    }


def compute_golden_values() -> dict[str, float]:
    """Every loss (both compat modes where they differ) on :func:`golden_inputs`."""
    x = golden_inputs()
    s, t, y, fs, ft = x["student"], x["teacher"], x["target"], x["student_feat"], x["teacher_feat"]
    values = {
        "rec": ReconstructionLoss()(s, y),
        "sam": SAMLoss()(s, y),
        "sam_official": SAMLoss("official")(s, y),
        "beba": BEBALoss()(s, y),
        "beba_official": BEBALoss("official")(s, y),
        "kd": ResponseKDLoss()(s, t),
        "feat": FeatureKDLoss()(fs, ft),
        "teacher_total": TeacherLoss()(t, y)[0],
        "teacher_total_official": TeacherLoss(compat="official")(t, y)[0],
        "student_total": StudentLoss()(s, fs, y, t, ft)[0],
        "student_total_official": StudentLoss(compat="official")(s, fs, y, t, ft)[0],
        "feat_std": NormalisedFeatureKDLoss("std")(fs, ft),
        "feat_cosine": NormalisedFeatureKDLoss("cosine")(fs, ft),
        "feat_std_adapted": NormalisedFeatureKDLoss("std")(golden_adapter()(fs), ft),
        "warmup_e3_of_8": warmup_factor(3, 8),
        **golden_gradient_values(x),
        **golden_variant_values(x),
    }
    return {name: float(torch.as_tensor(value).detach()) for name, value in values.items()}


def golden_adapter() -> FeatureAdapter:
    """A 3 → 3 adapter moved off its identity initialisation by a fixed, seed-free perturbation."""
    adapter = FeatureAdapter(3, 3).double()
    with torch.no_grad():
        adapter.proj.weight += 0.1 * torch.arange(9, dtype=torch.float64).view(3, 3, 1, 1) - 0.4
        adapter.proj.bias += torch.tensor([0.2, -0.1, 0.05], dtype=torch.float64)
    return adapter


def golden_gradient_values(x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-term gradient norms and cosines (vs the reconstruction term) on the student output and feature."""
    s = x["student"].clone().requires_grad_(True)
    fs = x["student_feat"].clone().requires_grad_(True)
    terms = {"rec": ReconstructionLoss()(s, x["target"]), "sam": 0.1 * SAMLoss()(s, x["target"]),
             "kd": 0.1 * ResponseKDLoss()(s, x["teacher"]), "feat": 0.1 * FeatureKDLoss()(fs, x["teacher_feat"])}
    norms = term_gradient_norms(terms, [s, fs])
    cosines = term_gradient_cosines(terms, [s, fs], reference="rec")
    return {**{f"grad_norm_{k}": v for k, v in norms.items()}, **{f"grad_cos_{k}": v for k, v in cosines.items()}}


def golden_variant_values(x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The csakd strategy's variant objectives (engine/strategies/csakd.py): normalised feature terms, the
    warm-up scale of the distillation weights, the feature adapter, and their per-term gradient norms."""
    from engine.strategies.csakd import CSAKDStrategy
    from models.outputs import FusionOutput

    s, t, y, fs, ft = x["student"], x["teacher"], x["target"], x["student_feat"], x["teacher_feat"]
    out = {
        "student_total_feat_std": StudentLoss(feat_loss=NormalisedFeatureKDLoss("std"))(s, fs, y, t, ft)[0],
        "student_total_feat_cosine_scaled": StudentLoss(feat_loss=NormalisedFeatureKDLoss("cosine"))(
            s, fs, y, t, ft, kd_scale=0.375)[0],
    }
    strategy = CSAKDStrategy(feat_adapter=(3, 3), feat_norm="std", kd_warmup=8).double()
    strategy.adapter.load_state_dict(golden_adapter().state_dict())
    strategy.set_epoch(3)  # warm-up factor 3/8
    leaves = [s.clone().requires_grad_(True), fs.clone().requires_grad_(True)]
    total, _ = strategy.student_objective(FusionOutput(leaves[0], leaves[1]), FusionOutput(t, ft), y)
    out["strategy_total_adapter_std_warm"] = total
    norms = strategy.student_gradient_norms(leaves)
    out.update({f"strategy_grad_norm_{k}": v for k, v in norms.items()})
    return out


def write_golden_values(path: Path = GOLDEN_PATH) -> None:
    payload = {
        "_how": "PYTHONPATH=. python tests/test_losses.py (compute_golden_values on golden_inputs, "
        f"seed {GOLDEN_SEED}, float64, torch {torch.__version__})",
        "values": compute_golden_values(),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------
# Independent NumPy restatements of the official formulas (trainOps.py), written as explicit loops.


def numpy_official_sam_loss(x: np.ndarray, y: np.ndarray, eps: float = 1e-8) -> float:
    """SAMLoss: rows of C consecutive elements of the C-ordered NCHW array; 1 − mean cos(row)."""
    channels = x.shape[1]
    xs, ys = x.ravel(order="C"), y.ravel(order="C")
    cosines = []
    for start in range(0, xs.size, channels):
        a, b = xs[start : start + channels], ys[start : start + channels]
        cosines.append(np.dot(a, b) / (np.sqrt(np.dot(a, a)) * np.sqrt(np.dot(b, b)) + eps))
    return 1.0 - float(np.mean(cosines))


def numpy_spectral_sam_loss(x: np.ndarray, y: np.ndarray) -> float:
    """sam_loss (the module function): per-pixel cos along C, zero-norm pixels dropped, clipped."""
    cosines = []
    batch, _, height, width = x.shape
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                a, c = x[b, :, i, j], y[b, :, i, j]
                den = math.sqrt(np.dot(a, a) * np.dot(c, c))
                if den != 0:
                    cosines.append(min(1.0, max(-1.0, np.dot(a, c) / den)))
    return 1.0 - float(np.mean(cosines))


def numpy_official_beba(x: np.ndarray, y: np.ndarray) -> float:
    """BandWiseMSE with sigma = 1: per (b, c), mean(½d² + relu(d − 1) − ½) / mean(y² + 0.1)."""
    batch, channels = x.shape[:2]
    per_band = np.empty((batch, channels))
    for b in range(batch):
        for c in range(channels):
            d = np.abs(x[b, c] - y[b, c])
            elementwise = 0.5 * d**2 + np.maximum(d - 1.0, 0.0) - 0.5
            per_band[b, c] = elementwise.mean() / np.mean(y[b, c] ** 2 + 0.1)
    return float(per_band.mean())


# ---------------------------------------------------------------------------------------------------


def test_golden_values():
    stored = json.loads(GOLDEN_PATH.read_text())["values"]
    current = compute_golden_values()
    assert set(current) == set(stored)
    for name, value in stored.items():
        assert current[name] == pytest.approx(value, rel=1e-12, abs=1e-14), name


def test_reconstruction_is_half_mse_for_small_errors():
    x = golden_inputs()
    y = x["target"]
    pred = y + 0.1 * torch.sin(torch.arange(y.numel(), dtype=y.dtype)).view_as(y)  # |d| ≤ 0.1
    assert ReconstructionLoss()(pred, y).item() == pytest.approx(0.5 * F.mse_loss(pred, y).item(), rel=1e-12)
    # Beyond |d| = 1 the loss becomes linear (|d| − ½), as torch's smooth-L1 with β = 1.
    big = y + 3.0
    assert ReconstructionLoss()(big, y).item() == pytest.approx(2.5, rel=1e-12)


def test_official_sam_loss_matches_numpy_restatement():
    x = golden_inputs()
    s, y = x["student"], x["target"]
    expected = numpy_official_sam_loss(s.numpy(), y.numpy())
    assert SAMLoss("official")(s, y).item() == pytest.approx(expected, rel=1e-12)
    # A non-contiguous input is reshaped in logical (row-major) order, like the official call.
    s_nc = s.transpose(2, 3).contiguous().transpose(2, 3)
    assert SAMLoss("official")(s_nc, y).item() == pytest.approx(expected, rel=1e-12)


def test_spectral_sam_loss_matches_numpy_and_masks_zero_pixels():
    x = golden_inputs()
    s, y = x["student"].clone(), x["target"].clone()
    y[0, :, 1, 2] = 0.0  # a zero GT spectrum: no angle
    s[1, :, 3, 0] = 0.0  # a zero predicted spectrum
    s.requires_grad_(True)
    loss = SAMLoss()(s, y)
    assert loss.item() == pytest.approx(numpy_spectral_sam_loss(s.detach().numpy(), y.numpy()), rel=1e-12)
    loss.backward()
    assert torch.isfinite(s.grad).all()
    assert torch.all(s.grad[0, :, 1, 2] == 0) and torch.all(s.grad[1, :, 3, 0] == 0)


def test_spectral_sam_loss_is_zero_when_no_pixel_has_an_angle():
    s = torch.zeros(1, 3, 2, 2, requires_grad=True)
    loss = SAMLoss()(s, torch.rand(1, 3, 2, 2))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(s.grad == 0)


def test_sam_loss_invariance_to_per_pixel_rescaling():
    x = golden_inputs()
    s, y = x["student"], x["target"]
    gen = torch.Generator().manual_seed(1)
    pixel_scale = 0.2 + 3 * torch.rand(s.shape[0], 1, *s.shape[2:], generator=gen, dtype=s.dtype)
    band_scale = 0.2 + 3 * torch.rand(1, s.shape[1], 1, 1, generator=gen, dtype=s.dtype)
    spectral, official = SAMLoss(), SAMLoss("official")
    # Rescaling each pixel spectrum keeps every spectral angle: the corrected loss does not move ...
    assert spectral(s * pixel_scale, y).item() == pytest.approx(spectral(s, y).item(), rel=1e-12)
    # ... while the official (reshape) loss does, because its "vectors" mix pixels.
    assert abs(official(s * pixel_scale, y).item() - official(s, y).item()) > 1e-3
    # Rescaling bands changes the spectral angles, which the corrected loss sees.
    assert abs(spectral(s * band_scale, y).item() - spectral(s, y).item()) > 1e-3


def test_official_beba_matches_numpy_restatement():
    x = golden_inputs()
    s, y = x["student"], x["target"]
    assert (s - y).abs().max() > 1  # the relu branch is exercised
    expected = numpy_official_beba(s.numpy(), y.numpy())
    assert BEBALoss("official")(s, y).item() == pytest.approx(expected, rel=1e-12)


def test_beba_default_is_official_without_constant_and_nonnegative():
    x = golden_inputs()
    s, y = x["student"], x["target"]
    energy = (y.pow(2) + 0.1).mean(dim=(2, 3))
    offset = 0.5 * (1.0 / energy).mean().item()
    assert BEBALoss()(s, y).item() == pytest.approx(BEBALoss("official")(s, y).item() + offset, rel=1e-12)
    # At pred = target: 0 by default, −½·mean(1/e_bc) (negative) in the official form.
    assert BEBALoss()(y, y).item() == 0.0
    assert BEBALoss("official")(y, y).item() == pytest.approx(-offset, rel=1e-12)
    gen = torch.Generator().manual_seed(2)
    for _ in range(5):
        pred = 2 * torch.rand(y.shape, generator=gen, dtype=y.dtype) - 1
        assert BEBALoss()(pred, y).item() >= 0


def test_beba_gradient_is_identical_and_matches_closed_form():
    x = golden_inputs()
    y = x["target"]
    grads = {}
    for compat in (None, "official"):
        s = x["student"].clone().requires_grad_(True)
        BEBALoss(compat)(s, y).backward()
        grads[compat] = s.grad
    assert torch.equal(grads[None], grads["official"])
    d = x["student"] - y
    energy = (y.pow(2) + 0.1).mean(dim=(2, 3), keepdim=True)
    closed_form = (d + torch.sign(d) * (d.abs() > 1)) / (energy * d.numel())
    torch.testing.assert_close(grads[None], closed_form, rtol=1e-12, atol=1e-15)


def test_feature_kd_minimum_and_gradient():
    x = golden_inputs()
    ft = x["teacher_feat"]
    q = torch.sigmoid(ft)
    entropy = -(q * torch.log(q) + (1 - q) * torch.log(1 - q)).mean()
    assert FeatureKDLoss()(ft.clone(), ft).item() == pytest.approx(entropy.item(), rel=1e-10)
    fs = x["student_feat"].clone().requires_grad_(True)
    FeatureKDLoss()(fs, ft).backward()
    torch.testing.assert_close(fs.grad, (torch.sigmoid(fs.detach()) - q) / fs.numel(), rtol=1e-10, atol=1e-15)


def test_teacher_loss_combination_and_joint_switch():
    x = golden_inputs()
    t, y = x["teacher"], x["target"]
    for compat in (None, "official"):
        total, parts = TeacherLoss(w_sam=0.3, w_beba=0.2, compat=compat)(t, y)
        expected = ReconstructionLoss()(t, y) + 0.3 * SAMLoss(compat)(t, y) + 0.2 * BEBALoss(compat)(t, y)
        assert total.item() == pytest.approx(expected.item(), rel=1e-12)
        assert set(parts) == {"rec", "sam", "beba"}
        assert not any(v.requires_grad for v in parts.values())
    leaf = t.clone().requires_grad_(True)
    total, parts = TeacherLoss(joint=False)(leaf, y)
    assert total.item() == parts["rec"].item()
    total.backward()
    torch.testing.assert_close(leaf.grad, (t - y).clamp(-1, 1) / t.numel(), rtol=1e-12, atol=1e-15)
    assert parts["sam"].item() == pytest.approx(SAMLoss()(t, y).item(), rel=1e-12)  # still logged


def test_student_loss_combination_and_joint_switch():
    x = golden_inputs()
    s, t, y, fs, ft = x["student"], x["teacher"], x["target"], x["student_feat"], x["teacher_feat"]
    weights = {"w_sam": 0.1, "w_beba": 0.2, "w_kd": 0.3, "w_feat": 0.4}
    total, parts = StudentLoss(**weights)(s, fs, y, t, ft)
    expected = (
        F.smooth_l1_loss(s, y)
        + 0.3 * F.smooth_l1_loss(s, t)
        + 0.4 * F.binary_cross_entropy_with_logits(fs, torch.sigmoid(ft))
        + 0.2 * BEBALoss()(s, y)
        + 0.1 * SAMLoss()(s, y)
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-12)
    assert set(parts) == {"rec", "sam", "beba", "kd", "feat"}
    assert not any(v.requires_grad for v in parts.values())
    total, parts = StudentLoss(joint=False)(s, fs, y, t, ft)
    assert total.item() == parts["rec"].item() == pytest.approx(F.smooth_l1_loss(s, y).item(), rel=1e-12)


def test_student_gradients_never_reach_the_teacher():
    torch.manual_seed(0)
    teacher = torch.nn.Conv2d(3, 6, 1, dtype=torch.float64)
    student = torch.nn.Conv2d(3, 6, 1, dtype=torch.float64)
    inputs = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    y = torch.tanh(torch.randn(2, 6, 5, 4, dtype=torch.float64))
    t_out = teacher(inputs)  # part of the teacher's graph, not detached by the caller
    s_out = student(inputs)
    t_leaf, ft_leaf = t_out.detach().requires_grad_(True), t_out[:, :3].detach().requires_grad_(True)
    total, _ = StudentLoss()(s_out, s_out[:, :3], y, t_out, t_out[:, :3])
    total.backward()
    assert teacher.weight.grad is None and teacher.bias.grad is None
    assert student.weight.grad is not None and torch.any(student.weight.grad != 0)
    # Leaf teacher tensors that require grad are left untouched as well.
    total, _ = StudentLoss()(s_out.detach().requires_grad_(True), s_out[:, :3].detach(), y, t_leaf, ft_leaf)
    total.backward()
    assert t_leaf.grad is None and ft_leaf.grad is None


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SAMLoss("Official"), "compat"),
        (lambda: TeacherLoss(compat="paper"), "compat"),
        (lambda: StudentLoss(w_kd=-0.1), "w_kd"),
        (lambda: TeacherLoss(w_sam=float("nan")), "w_sam"),
    ],
)
def test_bad_configuration_is_rejected(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_shape_mismatch_is_rejected():
    y = torch.zeros(1, 4, 8, 8)
    with pytest.raises(ValueError, match=r"BEBALoss: pred and target must have the same shape"):
        BEBALoss()(torch.zeros(1, 4, 8, 6), y)
    with pytest.raises(ValueError, match=r"SAMLoss: pred must be a \(B, C, H, W\) tensor"):
        SAMLoss()(torch.zeros(4, 8, 8), y)
    with pytest.raises(ValueError, match="student_feat and teacher_feat"):
        StudentLoss()(y, torch.zeros(1, 3, 8, 8), y, y, torch.zeros(1, 5, 8, 8))


# ---------------------------------------------------------------------------------------------------------------------
# CSAKD-variant pieces: feature adapter, normalised feature distillation, warm-up, per-term gradient diagnostics


def test_feature_adapter_initialisation_is_a_channel_copy_and_draws_no_random_numbers():
    state = torch.get_rng_state()
    same, wider = FeatureAdapter(3, 3).double(), FeatureAdapter(3, 5).double()
    assert torch.equal(torch.get_rng_state(), state)
    fs = golden_inputs()["student_feat"]
    assert torch.equal(same(fs), fs)
    torch.testing.assert_close(wider(fs), fs[:, [0, 1, 2, 0, 1]], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"FeatureAdapter: expected a \(B, 3, H, W\) student feature"):
        same(torch.zeros(1, 4, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="student_channels"):
        FeatureAdapter(0, 3)


def numpy_standardised_mse(a: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> float:
    def standardise(x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            for c in range(x.shape[1]):
                m = x[i, c]
                out[i, c] = (m - m.mean()) / math.sqrt(m.var() + eps)
        return out

    return float(np.mean((standardise(a) - standardise(b)) ** 2))


def test_standardised_feature_kd_matches_numpy_and_ignores_channel_offset_and_scale():
    x = golden_inputs()
    fs, ft = x["student_feat"], x["teacher_feat"]
    loss = NormalisedFeatureKDLoss("std")
    assert loss(fs, ft).item() == pytest.approx(numpy_standardised_mse(fs.numpy(), ft.numpy()), rel=1e-12)
    scale = torch.tensor([0.5, 3.0, 20.0], dtype=torch.float64).view(1, 3, 1, 1)
    offset = torch.tensor([-4.0, 1.0, 7.0], dtype=torch.float64).view(1, 3, 1, 1)
    assert loss(ft * scale + offset, ft).item() < 1e-6  # a positive affine copy per channel: (almost) 0
    assert loss(fs * scale + offset, ft).item() == pytest.approx(loss(fs, ft).item(), rel=1e-5)
    assert loss(-ft, ft).item() == pytest.approx(4.0, rel=1e-4)  # the maximum: anti-correlated maps
    z = standardise_channels(fs)
    torch.testing.assert_close(z.mean(dim=(2, 3)), torch.zeros(2, 3, dtype=torch.float64), rtol=0, atol=1e-12)


def test_cosine_feature_kd_is_per_pixel_scale_free_and_matches_restatement():
    x = golden_inputs()
    fs, ft = x["student_feat"], x["teacher_feat"]
    loss = NormalisedFeatureKDLoss("cosine")
    cos = (fs * ft).sum(1) / (fs.norm(dim=1) * ft.norm(dim=1))
    assert loss(fs, ft).item() == pytest.approx(1 - cos.mean().item(), rel=1e-12)
    pixel_scale = 0.1 + torch.rand(2, 1, 5, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert loss(fs * pixel_scale, ft).item() == pytest.approx(loss(fs, ft).item(), rel=1e-12)
    assert loss(ft, ft).item() == pytest.approx(0.0, abs=1e-12)
    assert loss(-ft, ft).item() == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("kind", ["std", "cosine"])
def test_normalised_feature_kd_sends_no_gradient_to_the_teacher(kind):
    x = golden_inputs()
    fs = x["student_feat"].clone().requires_grad_(True)
    ft = x["teacher_feat"].clone().requires_grad_(True)
    NormalisedFeatureKDLoss(kind)(fs, ft).backward()
    assert ft.grad is None and torch.isfinite(fs.grad).all() and fs.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="kind must be one of"):
        NormalisedFeatureKDLoss("l2")


def test_warmup_factor_is_a_linear_ramp():
    assert [warmup_factor(e, 4) for e in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0 and warmup_factor(1.5, 3) == 0.5
    with pytest.raises(ValueError, match="warmup_epochs must be >= 0"):
        warmup_factor(1, -1)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        warmup_factor(float("nan"), 2)


def test_term_gradient_norms_and_cosines_match_separate_backward_passes():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, 1, dtype=torch.float64)
    unused = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    inputs = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    y = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    out = net(inputs)
    terms = {"rec": ReconstructionLoss()(out, y), "sam": 0.5 * SAMLoss()(out, y), "neg": -ReconstructionLoss()(out, y),
             "const": torch.tensor(1.0, dtype=torch.float64)}
    params = [*net.parameters(), unused]
    norms = term_gradient_norms(terms, params)
    cosines = term_gradient_cosines(terms, params, reference="rec")
    sum(terms.values()).backward()  # the graph was kept: the total can still be back-propagated
    manual = {}
    for name in ("rec", "sam"):
        net.zero_grad()
        term = (ReconstructionLoss() if name == "rec" else (lambda a, b: 0.5 * SAMLoss()(a, b)))(net(inputs), y)
        term.backward()
        manual[name] = torch.cat([p.grad.flatten() for p in net.parameters()])
    for name in ("rec", "sam"):
        assert norms[name].item() == pytest.approx(manual[name].norm().item(), rel=1e-12)
    assert norms["neg"].item() == pytest.approx(norms["rec"].item(), rel=1e-12) and norms["const"].item() == 0.0
    expected = (manual["sam"] @ manual["rec"]) / (manual["sam"].norm() * manual["rec"].norm())
    assert cosines["sam"].item() == pytest.approx(expected.item(), rel=1e-10)
    assert cosines["rec"].item() == pytest.approx(1.0) and cosines["neg"].item() == pytest.approx(-1.0)
    assert cosines["const"].item() == 0.0
    with pytest.raises(ValueError, match="reference 'kd' is not one of the terms"):
        term_gradient_cosines(terms, params, reference="kd")


if __name__ == "__main__":
    write_golden_values()
    print(f"wrote {GOLDEN_PATH}", file=sys.stderr)
