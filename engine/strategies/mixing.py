"""Block mixing (MiPKD-style; no official counterpart; issue 18, method c), an option of the csakd strategy:
``--block_mix P`` with ``--kd_mode offline``.

With probability P per training step the student's stream features continue through the frozen teacher's
remaining computation: each stream's stem and the student's own CLRA blocks, then the teacher's blocks after the
student's depth in that stream (all of Z_hm's, whose blocks the student does not run), the teacher's CSA fuser and
its head. The composite output C is trained towards the GT and the teacher's output:
L_mix = L_rec(C, Y) + SmoothL1(C, T̂) (the student's reconstruction and response terms), added to the student's
objective with weight ``--block_mix_weight`` (scaled by the distillation schedule, ``--kd_warmup`` /
``--kd_decay``). The teacher is frozen (none of its parameters needs a gradient), so the gradients of L_mix reach
the student's stems and blocks only: the student learns features the teacher's later blocks can use, instead of
regressing the teacher's features directly.

Which steps mix is a function of (seed, step) only (:func:`mixes`), so resumed runs and runs of other settings
draw the same steps, and no other random stream moves. Single process, without ``--compile``: the composite calls
the student's parts directly (:func:`models.dts.block_mixed`, which owns how two DTS networks compose).
"""

from __future__ import annotations

from engine.runtime import derive_seed
from models.dts import block_mixed

__all__ = ["MIX_STREAM", "block_mixed", "mixes"]

MIX_STREAM = 31  # key of the mixing decisions' stream (derive_seed(seed, MIX_STREAM, step))


def mixes(seed: int, step: int, p: float) -> bool:
    """Whether training step ``step`` (0-based, counted over the run) mixes: u(seed, step) < p, u uniform in [0, 1)."""
    return p > 0 and derive_seed(seed, MIX_STREAM, step) / 2.0 ** 63 < p
