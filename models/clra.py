"""Cross-layer residual aggregation (CLRA), the feature extractor of every DTS stream.

A CLRA block is three densely connected residual blocks (the paper's multi-scale feature fusion
blocks, MFB) chained, with a residual connection around the chain; structurally it is ESRGAN's
RRDB. Both residual branches are scaled by 0.2, as in the official code.

Channel arithmetic (``nf`` = ``num_base_chs``, ``gc`` = ``num_agg_feat``): the five 3×3 convolutions
of an MFB map nf→gc, nf+gc→gc, nf+2gc→gc, nf+3gc→gc, nf+4gc→nf, so ``groups`` must divide ``nf`` and
``gc`` (it then divides every concatenated width).

Memory: an MFB written with concatenations (:meth:`DenseResidualBlock.reference_forward`, the official
form) holds five growing copies of its features (nf+gc … nf+4gc channels) and autograd saves each of them,
about 4nf+10gc channel planes per MFB. :class:`DenseFeatureConvs` computes the same function with every
feature written once into one (B, nf+4gc, H, W) buffer, which is also all that it saves for the backward
pass: about a quarter of the activation memory in training, and no concatenation copies in inference.
:meth:`CLRA.forward` optionally recomputes its activations in the backward pass (gradient checkpointing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

RESIDUAL_SCALE = 0.2  # both the MFB and the CLRA residual branches (official value)
MFB_INIT_SCALE = 0.1  # Kaiming-normal weights are shrunk by this at initialisation (official value)


def check_groups(nf: int, gc: int, groups: int, where: str) -> None:
    """Raise a ``ValueError`` unless ``groups`` can split every convolution of a CLRA block.

    Args:
        nf: ``num_base_chs``, the stream width.
        gc: ``num_agg_feat``, the growth width of the dense connections.
        groups: convolution groups of the block.
        where: what the groups belong to, for the message (e.g. ``"groups"`` or a stream name).
    """
    if groups < 1:
        raise ValueError(f"{where}: groups must be >= 1, got {groups}")
    bad = [f"{name}={value}" for name, value in (("num_base_chs", nf), ("num_agg_feat", gc)) if value % groups]
    if bad:
        raise ValueError(
            f"{where}: a CLRA block with groups={groups} needs num_base_chs and num_agg_feat divisible "
            f"by {groups}, but {' and '.join(bad)} {'is' if len(bad) == 1 else 'are'} not"
        )


def _like(x: torch.Tensor) -> torch.memory_format:
    """The memory format of a 4-D tensor (channels-last when it is laid out so, else contiguous)."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


class DenseFeatureConvs(torch.autograd.Function):
    """``conv5([x, a1, a2, a3, a4])`` of an MFB with all features in one preallocated buffer.

    Forward: ``buf = [x | a1 | a2 | a3 | a4]`` (B, nf+4gc, H, W), ``a_k = LeakyReLU_0.2(conv_k(buf[:, :nf+(k−1)gc]))``
    written into its slice; returns ``conv5(buf)`` (B, nf, H, W). Saves ``buf`` and the weights only.
    Backward walks the convolutions in reverse: the gradient of ``buf`` comes from conv5, and conv_k adds its
    input gradient into the first ``nf+(k−1)gc`` channels once the gradient of its own output slice (read
    from later convolutions only) is complete. The activation gradient uses ``a_k`` itself (its sign is that
    of the pre-activation), exactly as autograd does for an in-place LeakyReLU.

    Inputs: ``x`` (B, nf, H, W), the :class:`DenseResidualBlock` whose convolutions run (called as modules,
    so forward hooks such as :mod:`utils.complexity`'s see them), then its ``conv1.weight, conv1.bias, …,
    conv5.bias``, through which the gradients flow. First-order gradients only (no double backward).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, block: DenseResidualBlock, *params: torch.Tensor) -> torch.Tensor:
        nf, gc = x.shape[1], block.conv1.out_channels
        a1 = block.lrelu(block.conv1(x))  # its dtype is the computation's (bf16/fp16 under autocast)
        buf = torch.empty((x.shape[0], nf + 4 * gc, *x.shape[2:]), dtype=a1.dtype, device=x.device,
                          memory_format=_like(a1))
        buf[:, :nf], buf[:, nf:nf + gc] = x, a1
        for k, conv in enumerate((block.conv2, block.conv3, block.conv4), start=1):
            c = nf + k * gc
            buf[:, c:c + gc] = block.lrelu(conv(buf[:, :c]))
        ctx.groups = block.conv1.groups
        ctx.save_for_backward(buf, *params[0::2])
        return block.conv5(buf)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        buf, *weights = ctx.saved_tensors
        # Under autocast the forward ran in reduced precision (buf's dtype): so does the backward. The incoming
        # gradient and the fp32 master weights are cast independently (each may or may not match already).
        grad_out, weights = grad_out.to(buf.dtype), [w.to(buf.dtype) for w in weights]
        gc = weights[0].shape[0]
        nf = buf.shape[1] - 4 * gc

        def conv_backward(grad: torch.Tensor, inp: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
            w = weights[k]
            return torch.ops.aten.convolution_backward(grad, inp, w, [w.shape[0]], [1, 1], [1, 1], [1, 1], False,
                                                       [0, 0], ctx.groups, [True, True, True])

        grads: list[torch.Tensor | None] = [None] * 10
        grad_buf, grads[8], grads[9] = conv_backward(grad_out, buf, 4)
        for k in (3, 2, 1, 0):
            c = nf + k * gc
            grad_a = torch.ops.aten.leaky_relu_backward(grad_buf[:, c:c + gc], buf[:, c:c + gc], 0.2, True)
            grad_in, grads[2 * k], grads[2 * k + 1] = conv_backward(grad_a, buf[:, :c], k)
            grad_buf[:, :c] += grad_in
        return grad_buf[:, :nf], None, *grads


class DenseResidualBlock(nn.Module):
    """One MFB: five densely connected 3×3 convolutions with a scaled residual (official:
    MultiScaleFeatFusionBlock).

    ``forward(x)``: (B, nf, H, W) → (B, nf, H, W); ``x + 0.2·conv5([x, a1, a2, a3, a4])`` where
    ``a_k = LeakyReLU_0.2(conv_k([x, a1, …, a_{k−1}]))``.
    """

    def __init__(self, nf: int, gc: int, groups: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1, groups=groups)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1, groups=groups)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1, groups=groups)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1, groups=groups)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1, groups=groups)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            # Small initial residual branches keep a deep stack close to the identity at start.
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            conv.weight.data.mul_(MFB_INIT_SCALE)
            nn.init.zeros_(conv.bias)

    concatenate = False  # per instance: engine.inference.prepare sets it where concatenating is faster

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.concatenate:
            return self.reference_forward(x)
        convs = (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5)
        params = [t for conv in convs for t in (conv.weight, conv.bias)]
        return torch.add(x, DenseFeatureConvs.apply(x, self, *params), alpha=RESIDUAL_SCALE)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same function written with concatenations, as the official code (the tests hold
        :meth:`forward` to it); it saves about four times more activations for the backward pass."""
        a1 = self.lrelu(self.conv1(x))
        a2 = self.lrelu(self.conv2(torch.cat((x, a1), 1)))
        a3 = self.lrelu(self.conv3(torch.cat((x, a1, a2), 1)))
        a4 = self.lrelu(self.conv4(torch.cat((x, a1, a2, a3), 1)))
        a5 = self.conv5(torch.cat((x, a1, a2, a3, a4), 1))
        return x + RESIDUAL_SCALE * a5


class CLRA(nn.Module):
    """Cross-layer residual aggregation block (official: MultiScaleFeatAggregation).

    ``forward(x)``: (B, nf, H, W) → (B, nf, H, W); ``x + 0.2·MFB3(MFB2(MFB1(x)))``.
    The submodule names ``MFB1..3`` and ``conv1..5`` match the official state_dict keys.

    With ``grad_checkpoint`` set (``DTS.set_grad_checkpoint``), a forward pass that records gradients keeps
    only the block's input and recomputes the three MFBs during the backward pass: the same gradients for
    about a third more computation, and the activation memory of one CLRA block instead of all of them.
    """

    grad_checkpoint = False

    def __init__(self, nf: int, gc: int, groups: int = 1) -> None:
        super().__init__()
        check_groups(nf, gc, groups, "CLRA")
        self.MFB1 = DenseResidualBlock(nf, gc, groups)
        self.MFB2 = DenseResidualBlock(nf, gc, groups)
        self.MFB3 = DenseResidualBlock(nf, gc, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpoint and torch.is_grad_enabled():
            body = checkpoint(self.body, x, use_reentrant=False)
        else:
            body = self.body(x)
        return torch.add(x, body, alpha=RESIDUAL_SCALE)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch before scaling: ``MFB3(MFB2(MFB1(x)))``."""
        return self.MFB3(self.MFB2(self.MFB1(x)))


@contextlib.contextmanager
def concatenating_dense_blocks() -> Iterator[None]:
    """Within the block, every MFB runs :meth:`DenseResidualBlock.reference_forward` (the official
    concatenations, plain operators) instead of :class:`DenseFeatureConvs`: the form that graph exporters
    (ONNX) can trace, and the official code's operation order for reference measurements. Same outputs.
    Process-wide while active (it swaps the class's ``forward``)."""
    fast = DenseResidualBlock.forward
    DenseResidualBlock.forward = DenseResidualBlock.reference_forward
    try:
        yield
    finally:
        DenseResidualBlock.forward = fast


def concatenate_dense_blocks(model: nn.Module, on: bool) -> nn.Module:
    """Make every MFB of ``model`` compute with concatenations (``on``) or the one buffer (the default); per
    instance, unlike the process-wide :func:`concatenating_dense_blocks` (which exporters need while tracing)."""
    for module in model.modules():
        if isinstance(module, DenseResidualBlock):
            module.concatenate = on
    return model


def clra_stack(num_blocks: int, nf: int, gc: int, groups: int = 1) -> nn.Sequential:
    """``num_blocks`` CLRA blocks in sequence (official: ``make_layer``); zero blocks is the identity."""
    return nn.Sequential(*(CLRA(nf, gc, groups) for _ in range(num_blocks)))
