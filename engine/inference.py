"""The fast inference path of the DTS networks: same outputs as the plain path, less time.

``prepare(model)`` puts a network into eval mode, freezes its parameters and applies the fast path measured
for the CPU found (:data:`FAST_PATHS`, keyed by ``torch.backends.cpu.get_cpu_capability()``): weights
channels-last (NHWC), and the form the dense blocks (MFB) compute in. Run it under ``torch.inference_mode()``::

    model = prepare(build_model(cfg, "student"))
    with torch.inference_mode():
        hrhsi, _ = model(lrhsi, hrmsi)

Why channels-last: PyTorch's CPU convolutions (oneDNN) and cuDNN work natively in NHWC; on NCHW tensors
every convolution reorders its input and output. A convolution with channels-last weights returns a
channels-last output whatever the layout of its input, so the layout propagates through the whole network
from the weights alone: the inputs need no conversion, and the outputs come back channels-last (the
same values; ``.contiguous()`` gives the NCHW layout where a consumer needs it).

Why the dense-block form is chosen: the one-buffer form (:class:`models.clra.DenseFeatureConvs`) exists for
training memory; at inference it must copy each channel slice it convolves (a strided slice is made
contiguous first), which costs about what the concatenations cost. Measured on CPUs (paper-size networks,
batch 1, one thread, ``python -m benchmarks.run --what fastpath``), concatenating was as fast or a few per cent
faster on AVX-512 and on AVX2, so CPUs concatenate; on CUDA (not measured yet) the buffer stays.

The plain path (``model.eval()`` under ``torch.no_grad()``, NCHW, concatenations) computes the same function;
the two differ by float32 rounding only (convolution algorithms sum in a different order), below 1e-5 on the
[-1, 1] outputs (tests/test_fast_paths.py).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from models.clra import concatenate_dense_blocks


class FastPath(NamedTuple):
    """channels_last: NHWC weights; concatenate: dense blocks in the concatenating form (else one buffer)."""

    channels_last: bool
    concatenate: bool


#: The fast path per CPU capability, from ``python -m benchmarks.run --what fastpath`` (docs/performance.md):
#: CPU seconds of the paper-size student / teacher, batch 1, 64² → 256², one thread, channels-last +
#: concatenations vs channels-last + buffer vs NCHW (AMD EPYC with AVX-512 BF16, and the same host with
#: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 standing in for an AVX2-only CPU). A capability not listed
#: takes :data:`DEFAULT_FAST_PATH`.
FAST_PATHS: dict[str, FastPath] = {
    # student 2.18 / 2.20 / 2.71 s, teacher 14.5 / 15.1 / 20.3 s
    "AVX512": FastPath(channels_last=True, concatenate=True),
    # student 3.90 / 4.00 / 4.70 s (3 runs: concatenating 3–6 % ahead of the buffer); teacher 26.1 / 25.4 /
    # 28.3 s (one run: the buffer 3 % ahead): within the noise for the teacher, so the student's result decides
    "AVX2": FastPath(channels_last=True, concatenate=True),
}
DEFAULT_FAST_PATH = FastPath(channels_last=True, concatenate=True)
CUDA_FAST_PATH = FastPath(channels_last=True, concatenate=False)  # not measured: the earlier default


def fast_path(device: torch.device | str = "cpu", capability: str | None = None) -> FastPath:
    """The fast path for ``device``: on a CPU the entry of :data:`FAST_PATHS` for ``capability`` (default: the
    running CPU's ``torch.backends.cpu.get_cpu_capability()``)."""
    if torch.device(device).type != "cpu":
        return CUDA_FAST_PATH
    return FAST_PATHS.get(capability or torch.backends.cpu.get_cpu_capability(), DEFAULT_FAST_PATH)


def prepare(model: nn.Module, channels_last: bool | None = None, concatenate: bool | None = None) -> nn.Module:
    """Return ``model`` (modified in place) ready for fast inference.

    Args:
        model: a DTS network (teacher or student), on the device it will run on.
        channels_last: store the convolution weights channels-last; None = :func:`fast_path` of the model's
            device (``False`` keeps NCHW).
        concatenate: dense blocks in the concatenating form; None = :func:`fast_path` (``False``: one buffer).

    Returns:
        The same module in eval mode, with ``requires_grad`` off on every parameter (nothing records
        gradients even outside ``torch.inference_mode``). Train it again only after
        ``model.train().requires_grad_(True)`` (and ``models.clra.concatenate_dense_blocks(model, False)``
        for the memory-saving backward).
    """
    param = next(model.parameters(), None)
    chosen = fast_path(param.device if param is not None else "cpu")
    model.eval()
    model.requires_grad_(False)
    if chosen.channels_last if channels_last is None else channels_last:
        model.to(memory_format=torch.channels_last)
    concatenate_dense_blocks(model, chosen.concatenate if concatenate is None else concatenate)
    return model
