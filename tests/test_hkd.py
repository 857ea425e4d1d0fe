"""HKDSR's terms (losses/hkd.py): hand-computed golden values, an independent NumPy restatement of the authors'
FSM (two similarity matrices, explicit loops), and the properties of other-seeds.md §3.2."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losses.hkd import (
    ACF_WEIGHT_FINAL,
    ACF_WEIGHT_INTER,
    FSM_WEIGHT_FINAL,
    FSM_WEIGHT_INTER,
    GlobalACF,
    PixelACF,
    build_acf,
    fsm_loss,
    haar_dwt,
    hkd_terms,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def images(seed: int, shape=(2, 3, 8, 6), count: int = 3) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(count)]


# --- Haar DWT ---------------------------------------------------------------------------------------


def test_haar_dwt_hand_computed() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    ll, lh, hl, hh = (float(t) for t in haar_dwt(x))
    assert (ll, lh, hl, hh) == (5.0, -2.0, -1.0, 0.0)  # (1+2+3+4)/2, (1+2−3−4)/2, (1−2+3−4)/2, (1−2−3+4)/2


def test_haar_dwt_is_the_depthwise_filter_bank_and_preserves_energy() -> None:
    (x,) = images(0, count=1)
    bands = haar_dwt(x)
    assert all(b.shape == (2, 3, 4, 3) for b in bands)
    filters = 0.5 * torch.tensor([[[1, 1], [1, 1]], [[1, 1], [-1, -1]], [[1, -1], [1, -1]], [[1, -1], [-1, 1]]],
                                 dtype=x.dtype)
    conv = F.conv2d(x, filters.unsqueeze(1).repeat(3, 1, 1, 1), stride=2, groups=3).unflatten(1, (3, 4))
    for k, band in enumerate(bands):
        torch.testing.assert_close(band, conv[:, :, k])
    torch.testing.assert_close(sum(b.pow(2).sum() for b in bands), x.pow(2).sum())


def test_haar_dwt_constant_has_no_detail_and_odd_sizes_are_rejected() -> None:
    ll, *details = haar_dwt(torch.full((1, 2, 4, 4), 0.3))
    assert all(torch.count_nonzero(d) == 0 for d in details)
    torch.testing.assert_close(ll, torch.full((1, 2, 2, 2), 0.6))
    with pytest.raises(ValueError, match="height and width must be even"):
        haar_dwt(torch.zeros(1, 2, 5, 4))


# --- FSM ----------------------------------------------------------------------------------------------


def numpy_fsm(s: np.ndarray, t: np.ndarray, y: np.ndarray) -> float:
    """The authors' SimLoss on the level-1 Haar detail bands: M_s = S_k Y_kᵀ and M_t = T_k Y_kᵀ formed
    separately, entry by entry, then Σ_k mean |M_s − M_t|."""
    def details(x: np.ndarray) -> list[np.ndarray]:  # (B, C, H, W) → 3 × (B, N, C)
        a, b, c, d = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
        return [((a + b - c - d) / 2).reshape(*x.shape[:2], -1).transpose(0, 2, 1),
                ((a - b + c - d) / 2).reshape(*x.shape[:2], -1).transpose(0, 2, 1),
                ((a - b - c + d) / 2).reshape(*x.shape[:2], -1).transpose(0, 2, 1)]

    total = 0.0
    for sk, tk, yk in zip(details(s), details(t), details(y), strict=True):
        batch, n, _ = sk.shape
        acc = 0.0
        for b in range(batch):
            for i in range(n):
                for j in range(n):
                    acc += abs(np.dot(sk[b, i], yk[b, j]) - np.dot(tk[b, i], yk[b, j]))
        total += acc / (batch * n * n)
    return total


def test_fsm_hand_computed() -> None:
    s = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # detail bands ½, ½, ½
    y = torch.tensor([[[[0.0, 0.0], [0.0, 2.0]]]])  # detail bands −1, −1, 1
    assert float(fsm_loss(s, torch.zeros_like(s), y)) == 1.5  # |−½| + |−½| + |½|, N = 1


def test_fsm_matches_numpy_restatement_and_chunking_is_exact() -> None:
    s, t, y = images(1)
    expected = numpy_fsm(s.numpy(), t.numpy(), y.numpy())
    assert float(fsm_loss(s, t, y)) == pytest.approx(expected, rel=1e-12)
    s_full, s_chunk = s.clone().requires_grad_(), s.clone().requires_grad_()
    full, chunked = fsm_loss(s_full, t, y), fsm_loss(s_chunk, t, y, row_chunk=5)
    (full + 0).backward()
    chunked.backward()
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(s_chunk.grad, s_full.grad)


def test_fsm_properties() -> None:
    s, t, y = images(2)
    assert float(fsm_loss(s, s, y)) == 0.0
    assert float(fsm_loss(s, t, y)) > 0.0
    torch.testing.assert_close(fsm_loss(s, t, y), fsm_loss(t, s, y))
    torch.testing.assert_close(fsm_loss(s + 0.7, t, y), fsm_loss(s, t, y))
    torch.testing.assert_close(fsm_loss(s, t - 0.3, y), fsm_loss(s, t, y))


def test_fsm_gradients_reach_the_student_only() -> None:
    s, t, y = (x.requires_grad_() for x in images(3))
    fsm_loss(s, t, y).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None and y.grad is None


def test_fsm_row_sampling_is_an_unbiased_estimate() -> None:
    s, t, y = images(4, shape=(1, 2, 8, 8))  # N = 16
    full = float(fsm_loss(s, t, y))
    assert float(fsm_loss(s, t, y, sample_rows=16)) == pytest.approx(full)
    gen = torch.Generator().manual_seed(0)
    draws = [float(fsm_loss(s, t, y, sample_rows=4, generator=gen)) for _ in range(400)]
    assert np.std(draws) > 0
    assert np.mean(draws) == pytest.approx(full, rel=0.05)


def test_fsm_rejects_bad_arguments() -> None:
    s, t, y = images(5)
    with pytest.raises(ValueError, match="same shape"):
        fsm_loss(s, t[..., :4], y)
    with pytest.raises(ValueError, match="even"):
        fsm_loss(s[..., :5, :], t[..., :5, :], y[..., :5, :])
    with pytest.raises(ValueError, match="sample_rows"):
        fsm_loss(s, t, y, sample_rows=0)


# --- ACF ----------------------------------------------------------------------------------------------


def zero_parameters(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()


@pytest.mark.parametrize("variant", ["global", "pixel"])
def test_acf_hand_computed_with_zero_weights(variant: str) -> None:
    acf = build_acf(variant, 2)
    zero_parameters(acf)  # logits 0 → sigmoid ½ each → softmax (½, ½): target (GT + T)/2
    s, y, t = torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2), torch.full((1, 2, 2, 2), 0.5)
    torch.testing.assert_close(acf.fuse(t, y), torch.full((1, 2, 2, 2), 0.75))
    assert acf(s, t, y).item() == pytest.approx(0.75)


def test_pixel_acf_weights_are_per_band() -> None:
    acf = PixelACF(2)
    zero_parameters(acf)
    with torch.no_grad():
        acf.net[2].bias[0] = math.log(3)  # band 0: sigmoid → (¾, ½); band 1 stays (½, ½)
    a, b = acf.weights(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3))
    expected_a0 = math.exp(0.75) / (math.exp(0.75) + math.exp(0.5))
    torch.testing.assert_close(a[0, 0], torch.full((3, 3), expected_a0))
    torch.testing.assert_close(a[0, 1], torch.full((3, 3), 0.5))
    torch.testing.assert_close(a + b, torch.ones_like(a))


@pytest.mark.parametrize("variant", ["global", "pixel"])
def test_acf_target_is_convex_and_gradients_reach_the_fusion_net(variant: str) -> None:
    torch.manual_seed(0)
    acf = build_acf(variant, 3).double()
    s, t, y = images(6)
    fused = acf.fuse(t, y)
    lo, hi = torch.minimum(t, y), torch.maximum(t, y)
    assert bool(((fused >= lo - 1e-12) & (fused <= hi + 1e-12)).all())
    torch.testing.assert_close(acf.fuse(y, y), y)
    assert acf(y, y, y).item() == 0.0
    s.requires_grad_()
    t.requires_grad_()
    acf(s, t, y).backward()
    assert t.grad is None and s.grad is not None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in acf.parameters())


def test_acf_rejects_wrong_band_count_and_unknown_variant() -> None:
    s, t, y = images(7)
    with pytest.raises(ValueError, match="expected 4 bands"):
        GlobalACF(4)(s, t, y)
    with pytest.raises(ValueError, match="ACF variant"):
        build_acf("channel", 3)


def test_hkd_terms_weight_the_outputs_as_the_authors() -> None:
    acf = GlobalACF(3).double()
    s1, s2, t1, t2, y = images(8, count=5)
    terms = hkd_terms([s1, s2], [t1, t2], y, acf)
    fsm = FSM_WEIGHT_INTER * fsm_loss(s1, t1, y) + FSM_WEIGHT_FINAL * fsm_loss(s2, t2, y)
    torch.testing.assert_close(terms["fsm"], fsm)
    torch.testing.assert_close(terms["acf"], ACF_WEIGHT_INTER * acf(s1, t1, y) + ACF_WEIGHT_FINAL * acf(s2, t2, y))
    assert set(hkd_terms([s1], [t1], y)) == {"fsm"}
    with pytest.raises(ValueError, match="as many teacher outputs"):
        hkd_terms([s1, s2], [t1], y)


def test_fsm_runs_in_full_precision_under_autocast() -> None:
    s, t, y = (x.float() for x in images(9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = fsm_loss(s, t, y)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, fsm_loss(s, t, y))
