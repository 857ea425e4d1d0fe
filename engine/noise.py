"""Additive white Gaussian noise on the LR-HSI, as the official training adds it (docs/decisions.md #9).

Official: the ``awgn`` inside the networks' forward of models/KQD.py. Here it is a separate step, so that
``forward`` stays deterministic and validation/test never see noise unless asked for.
"""

from __future__ import annotations

import torch


def awgn(x: torch.Tensor, snr_db: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x + σ·n`` with σ = sqrt(mean(x²) / 10^(snr_db/10)), the mean taken over the **whole batch** tensor.

    Args:
        x: (B, C, h, w) LR-HSI batch in the [-1, 1] domain (any device).
        snr_db: signal-to-noise ratio in dB; 0 returns ``x`` unchanged (official ``--snr 0``).
        generator: CPU generator of the noise (drawn on the CPU and moved to ``x``'s device, as official,
            so that a seed gives the same noise on every device).

    Returns:
        The noisy batch, same shape, dtype and device as ``x`` (values may leave [-1, 1] slightly).
    """
    if snr_db == 0:
        return x
    sigma = torch.sqrt(x.detach().float().pow(2).mean() / 10.0 ** (snr_db / 10.0))
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
    return x + (noise.to(x.device) * sigma).to(x.dtype)
