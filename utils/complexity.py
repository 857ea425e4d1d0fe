"""Parameter and operation counts, in the paper's convention and in full.

The paper's "FLOPs" (teacher 941.77G, student 144.77G) are thop multiply-accumulates of the
convolutions only, and its parameter counts cover only the modules that run in ``forward`` (thop
counts through forward hooks, so the official student's unused Z_hm stack is excluded).
:func:`complexity` reports both conventions side by side.

The network is run on a copy on PyTorch's ``meta`` device: shapes propagate, nothing is computed,
so even the teacher at paper size is counted instantly and without memory.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def _batched(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        return (1, *shape)
    if len(shape) != 4:
        raise ValueError(f"complexity: expected an input shape (C, H, W) or (B, C, H, W), got {shape}")
    return shape


def complexity(model: nn.Module, lrhsi_shape: Sequence[int], hrmsi_shape: Sequence[int],
               gt_shape: Sequence[int] | None = None) -> dict[str, int]:
    """Count parameters and operations of one forward pass of ``model(lrhsi, hrmsi)``.

    Args:
        model: a DTS network (any module with that call signature).
        lrhsi_shape: (C, h, w) or (B, C, h, w); batch 1 when omitted.
        hrmsi_shape: (M, H, W) or (B, M, H, W).
        gt_shape: (C, H, W) or (B, C, H, W) for a network that also takes the GT (the privileged PSD
            teacher, ``model(lrhsi, hrmsi, gt)``); None otherwise.

    Returns:
        ``params``: parameters of the modules that run (the paper's convention);
        ``params_all``: every parameter of the model;
        ``macs``: multiply-accumulates of the convolutions (the paper's "FLOPs");
        ``flops``: floating-point operations of all counted operators (convolutions and matrix
        products, 2 per multiply-accumulate) from ``torch.utils.flop_counter.FlopCounterMode``.
    """
    model = getattr(model, "_orig_mod", model)
    meta = copy.deepcopy(model).to("meta")
    executed: list[nn.Module] = []
    macs = 0

    def hook(module: nn.Module, _inputs, output) -> None:
        nonlocal macs
        executed.append(module)
        if isinstance(module, nn.Conv2d):
            k_h, k_w = module.kernel_size
            macs += output.numel() * (module.in_channels // module.groups) * k_h * k_w

    handles = [m.register_forward_hook(hook) for m in meta.modules()]
    try:
        lrhsi = torch.empty(_batched(lrhsi_shape), device="meta")
        hrmsi = torch.empty(_batched(hrmsi_shape), device="meta")
        extra = () if gt_shape is None else (torch.empty(_batched(gt_shape), device="meta"),)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            meta(lrhsi, hrmsi, *extra)
    finally:
        for h in handles:
            h.remove()

    seen: dict[int, int] = {}
    for module in executed:
        for p in module.parameters(recurse=False):
            seen[id(p)] = p.numel()
    return {
        "params": sum(seen.values()),
        "params_all": sum(p.numel() for p in model.parameters()),
        "macs": macs,
        "flops": counter.get_total_flops(),
    }
