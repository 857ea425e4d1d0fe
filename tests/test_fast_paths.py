"""The fast paths compute what the plain path computes: one-buffer dense blocks, channels-last inference,
inference mode, gradient checkpointing, autocast. Random inputs, small networks; float32 tolerance 1e-5."""

from __future__ import annotations

import copy

import pytest
import torch

from benchmarks.measure import official_dense_blocks
from engine.inference import CUDA_FAST_PATH, DEFAULT_FAST_PATH, FAST_PATHS, fast_path, prepare
from models import build_model
from models.clra import CLRA, DenseResidualBlock

TINY = dict(bands=8, msi_bands=3, num_base_chs=8, num_agg_feat=4, student_layers="1221")
ATOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")


def inputs(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 8, 6, 5, generator=g) * 2 - 1, torch.rand(batch, 3, 24, 20, generator=g) * 2 - 1


def tiny_model(role: str, fuse: int, compat: str | None) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model({**TINY, "adaptive_fuse": fuse, "compat": compat}, role)


@pytest.mark.parametrize("compat", [None, "official"])
@pytest.mark.parametrize("fuse", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("role", ["teacher", "student"])
def test_fast_inference_equals_plain(role: str, fuse: int, compat: str | None) -> None:
    """prepare() + inference_mode + one-buffer blocks == eval + no_grad + concatenating blocks (NCHW)."""
    model = tiny_model(role, fuse, compat).eval()
    lrhsi, hrmsi = inputs()
    with torch.no_grad(), official_dense_blocks():
        plain_out, plain_fused = model(lrhsi, hrmsi)
    fast = prepare(copy.deepcopy(model))
    with torch.inference_mode():
        out, fused = fast(lrhsi, hrmsi)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, plain_out, rtol=0, atol=ATOL)
    torch.testing.assert_close(fused, plain_fused, rtol=0, atol=ATOL)


@pytest.mark.parametrize("capability", [*FAST_PATHS, "DEFAULT", "NO_SUCH_CPU"])
@pytest.mark.parametrize("role", ["teacher", "student"])
def test_the_fast_path_of_every_cpu_kind_equals_plain(role: str, capability: str, monkeypatch) -> None:
    """Whatever the CPU found, prepare() applies its table entry (an unknown capability takes the default), and
    both dense-block forms in both layouts compute the plain path's outputs within 1e-5."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    chosen = FAST_PATHS.get(capability, DEFAULT_FAST_PATH)
    assert fast_path("cpu") == chosen and fast_path("cuda") == CUDA_FAST_PATH
    model = tiny_model(role, 3, None).eval()
    lrhsi, hrmsi = inputs()
    with torch.no_grad(), official_dense_blocks():
        plain_out, _ = model(lrhsi, hrmsi)
    fast = prepare(copy.deepcopy(model))
    blocks = [m for m in fast.modules() if isinstance(m, DenseResidualBlock)]
    assert blocks and all(b.concatenate == chosen.concatenate for b in blocks)
    assert fast.mconv1.weight.is_contiguous(memory_format=torch.channels_last) == chosen.channels_last
    for channels_last in (True, False):
        for concatenate in (True, False):
            net = prepare(copy.deepcopy(model), channels_last=channels_last, concatenate=concatenate)
            with torch.inference_mode():
                out, _ = net(lrhsi, hrmsi)
            torch.testing.assert_close(out, plain_out, rtol=0, atol=ATOL)


def test_prepare_returns_the_model_ready_for_inference() -> None:
    model = tiny_model("student", 3, None).train()
    keys = list(model.state_dict())
    fast = prepare(model)
    assert fast is model and not fast.training
    assert not any(p.requires_grad for p in fast.parameters())
    assert fast.mconv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert list(fast.state_dict()) == keys  # same parameter names: checkpoints load either way
    assert prepare(tiny_model("student", 3, None), channels_last=False).mconv1.weight.is_contiguous()


def grads(module: torch.nn.Module, x: torch.Tensor, forward, seed: int = 1) -> tuple[torch.Tensor, list]:
    x = x.detach().clone().requires_grad_(True)
    y = forward(x)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))
    g = torch.autograd.grad((y * weight).sum(), [x, *module.parameters()])
    return y, list(g)


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("channels_last", [False, True])
def test_dense_block_equals_concatenating_form(groups: int, channels_last: bool) -> None:
    """Output and every gradient (input, weights, biases) of the one-buffer MFB match the official form."""
    torch.manual_seed(0)
    block = DenseResidualBlock(8, 4, groups)
    x = torch.randn(3, 8, 7, 9)
    if channels_last:
        block = block.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y_fast, g_fast = grads(block, x, block)
    y_ref, g_ref = grads(block, x, block.reference_forward)
    torch.testing.assert_close(y_fast, y_ref, rtol=0, atol=ATOL)
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=ATOL)


def test_dense_block_saves_one_buffer() -> None:
    """What the backward pass keeps is the (B, nf+4gc, H, W) feature buffer and the weights, nothing more."""
    torch.manual_seed(0)
    block = DenseResidualBlock(8, 4)
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        block(x)
    activations = [t for t in saved if t.dim() == 4 and t.shape[0] == 2]
    assert [tuple(t.shape) for t in activations] == [(2, 8 + 4 * 4, 5, 5)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_dense_block_under_autocast(dtype: torch.dtype) -> None:
    """bf16/fp16 autocast: the buffer takes the computation's dtype; gradients come back float32 and close to
    the concatenating form's under the same autocast."""
    torch.manual_seed(0)
    block = DenseResidualBlock(8, 4)
    x = torch.randn(2, 8, 6, 6)
    with torch.autocast("cpu", dtype=dtype):
        y_fast, g_fast = grads(block, x, block)
        y_ref, g_ref = grads(block, x, block.reference_forward)
    torch.testing.assert_close(y_fast.float(), y_ref.float(), rtol=0, atol=1e-2)
    for a, b in zip(g_fast, g_ref, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2 * b.abs().max().item())


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_grad_checkpoint_gives_the_same_gradients(role: str) -> None:
    model = tiny_model(role, 3, None).train()
    lrhsi, hrmsi = inputs()

    def step() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        out, fused = model(lrhsi, hrmsi)
        loss = out.square().mean() + fused.abs().mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss_plain, grads_plain = step()
    assert model.set_grad_checkpoint(True) is model
    assert all(m.grad_checkpoint for m in model.modules() if isinstance(m, CLRA))
    loss_ckpt, grads_ckpt = step()
    torch.testing.assert_close(loss_ckpt, loss_plain, rtol=0, atol=0)
    for a, b in zip(grads_ckpt, grads_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=ATOL)
    model.set_grad_checkpoint(False)
    assert not any(m.grad_checkpoint for m in model.modules() if isinstance(m, CLRA))


def test_grad_checkpoint_keeps_only_block_inputs() -> None:
    """A checkpointed CLRA saves nothing of its interior for the backward pass (recomputed instead)."""
    torch.manual_seed(0)
    block = CLRA(8, 4)
    x = torch.randn(2, 8, 5, 5, requires_grad=True)

    def count() -> int:
        saved: list[torch.Tensor] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            block(x).sum().backward()
        return sum(t.numel() for t in saved if t.dim() == 4)

    full = count()
    block.grad_checkpoint = True
    assert count() < full / 2
