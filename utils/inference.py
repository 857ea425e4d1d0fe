"""The fast inference path of the DTS networks: same outputs as the plain path, less time.

``prepare(model)`` puts a network into eval mode, freezes its parameters and stores its weights
channels-last (NHWC). Run it under ``torch.inference_mode()``::

    model = prepare(build_model(cfg, "student"))
    with torch.inference_mode():
        hrhsi, _ = model(lrhsi, hrmsi)

Why channels-last: PyTorch's CPU convolutions (oneDNN) and cuDNN work natively in NHWC; on NCHW tensors
every convolution reorders its input and output. A convolution with channels-last weights returns a
channels-last output whatever the layout of its input, so the layout propagates through the whole network
from the weights alone: the inputs need no conversion, and the outputs come back channels-last (the
same values; ``.contiguous()`` gives the NCHW layout where a consumer needs it).

The plain path (``model.eval()`` under ``torch.no_grad()``, NCHW) computes the same function; the two
differ by float32 rounding only (convolution algorithms sum in a different order), below 1e-5 on the
[-1, 1] outputs (tests/test_fast_paths.py). Measured effect: ``python -m benchmarks.run``.
"""

from __future__ import annotations

import torch
from torch import nn


def prepare(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """Return ``model`` (modified in place) ready for fast inference.

    Args:
        model: a DTS network (teacher or student), on the device it will run on.
        channels_last: store the convolution weights channels-last (the default; ``False`` keeps NCHW).

    Returns:
        The same module in eval mode, with ``requires_grad`` off on every parameter (nothing records
        gradients even outside ``torch.inference_mode``). Train it again only after
        ``model.train().requires_grad_(True)``.
    """
    model.eval()
    model.requires_grad_(False)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model
