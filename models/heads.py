"""Intermediate image heads on a DTS network, for HKDSR-style intermediate-layer distillation.

HKDSR (docs: docs/other-seeds.md §1.2) adds K image heads inside the teacher and the student so
that both emit intermediate SR images besides the final one (authors' code: ``RCAN_ft``, branches after
residual groups 3 and 7 of 10, i.e. at 30 % and 70 % of the trunk). For the DTS networks the taps are:

- where: the outputs of CLRA blocks ``round(f·n)`` (clamped to 1 … n) of one stream's stack of n blocks,
  f ∈ :data:`HEAD_DEPTH_FRACTIONS` = (0.3, 0.7) (:func:`tap_depths`);
- which stream (:func:`tap_stream`): the teacher's Z_hm stack ``hmfeat`` (6 blocks → taps after blocks 2
  and 4; HR features (B, nf, s·h, s·w)): the deepest HR trunk. The student never runs ``hmfeat`` (only its
  input conv; docs/decisions.md #4), so its taps sit in its Z_mh stack ``mhfeat`` (``1441`` → 4 blocks →
  after blocks 1 and 3; LR features (B, nf, h, w)), the stack the official student keeps deepest;
- head: conv3x3 nf → bands on the tapped feature, bilinearly up-sampled to HR when the tap is LR (the
  bands-channel head output is up-sampled, not the nf-channel feature: cheaper), added to the bilinear
  up-sampled LR-HSI (the base image), so every head predicts a residual like the heads of §3.2.

With ``--hkd_heads K`` the heads are a submodule of the DTS network (``DTS.inter_heads``, saved with it) that its
``forward`` never runs: forward hooks on the tapped blocks record their outputs, and a hook at the end of the
network's forward runs the heads on them (:func:`head_taps`, used through ``DTS.aux_taps``). K = 2 uses the
authors' fractions; other K spread the taps evenly (:func:`head_fractions`). :func:`collect_taps` records the
taps alone, for a network built without heads. The authors' teacher-side blend (each intermediate output replaced
by 0.6·inter + 0.4·final) is not reproduced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .family import rebuild
from .outputs import FusionOutput
from .taps import Finish, Tap


class TappedNetwork(Protocol):
    """What the heads read of a DTS network (:class:`models.dts.DTS`, which builds its heads from this module
    and so cannot be imported here): its widths, its two CLRA stacks and its official forward."""

    bands: int
    num_base_chs: int
    run_hm_stack: bool
    hmfeat: nn.Sequential
    mhfeat: nn.Sequential

    def __call__(self, lrhsi: torch.Tensor, hrmsi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


#: Relative depths of the intermediate heads in the tapped stack (HKDSR: after groups 3 and 7 of 10).
HEAD_DEPTH_FRACTIONS = (0.3, 0.7)


def head_fractions(count: int) -> tuple[float, ...]:
    """Relative tap depths of ``count`` heads: the authors' (0.3, 0.7) for 2, else i / (count + 1), i = 1 … count."""
    if count == len(HEAD_DEPTH_FRACTIONS):
        return HEAD_DEPTH_FRACTIONS
    return tuple(i / (count + 1) for i in range(1, count + 1))


def tap_stream(dts: TappedNetwork) -> str:
    """The stack the heads tap: ``"hmfeat"`` (HR) when the network runs its Z_hm blocks, else ``"mhfeat"`` (LR)."""
    return "hmfeat" if dts.run_hm_stack and len(dts.hmfeat) > 0 else "mhfeat"


def tap_depths(num_blocks: int, fractions: Sequence[float] = HEAD_DEPTH_FRACTIONS) -> tuple[int, ...]:
    """1-based block indices ``round(f·num_blocks)`` clamped to 1 … num_blocks, one per fraction."""
    if num_blocks < 1:
        raise ValueError(f"intermediate heads: the tapped stack has no CLRA block (num_blocks={num_blocks}); "
                         f"give the stream at least one block")
    return tuple(min(num_blocks, max(1, round(f * num_blocks))) for f in fractions)


def default_depths(dts: TappedNetwork, count: int = len(HEAD_DEPTH_FRACTIONS)) -> tuple[int, ...]:
    """The documented tap depths of ``count`` heads on ``dts``: :func:`tap_depths` of the stack
    :func:`tap_stream` names at :func:`head_fractions`."""
    return tap_depths(len(getattr(dts, tap_stream(dts))), head_fractions(count))


def collect_taps(dts: TappedNetwork, lrhsi: torch.Tensor, hrmsi: torch.Tensor,
                 depths: Sequence[int]) -> tuple[tuple[torch.Tensor, torch.Tensor], list[torch.Tensor]]:
    """Run ``dts(lrhsi, hrmsi)`` once and capture the outputs of blocks ``depths`` (1-based) of the
    :func:`tap_stream` stack with forward hooks (removed afterwards, also on error).

    Returns ((HR-HSI (B, bands, H, W), fused (B, nf, H, W)), [tap (B, nf, H, W) or (B, nf, h, w)] in the
    order of ``depths``). The taps keep their autograd history.
    """
    stack = getattr(dts, tap_stream(dts))
    for d in depths:
        if not 1 <= d <= len(stack):
            raise ValueError(f"intermediate heads: tap depth {d} is outside the {tap_stream(dts)} stack "
                             f"(1 … {len(stack)})")
    captured: dict[int, torch.Tensor] = {}

    def hook_for(depth: int):
        def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
            captured[depth] = output
        return hook

    handles = [stack[d - 1].register_forward_hook(hook_for(d)) for d in sorted(set(depths))]
    try:
        result = dts(lrhsi, hrmsi)
    finally:
        for h in handles:
            h.remove()
    return result, [captured[d] for d in depths]


def head_taps(dts: TappedNetwork, heads: IntermediateHeads) -> tuple[tuple[Tap, ...], Finish]:
    """The forward hooks that give ``heads``' images on ``dts``: taps on the outputs of blocks ``heads.depths``
    (1-based) of the :func:`tap_stream` stack, and the finish that runs the heads on them at the end of the
    forward pass, ``{"inter_outs": [K images (B, bands, s·h, s·w)]}``."""
    stream = tap_stream(dts)
    taps = tuple(Tap(f"{stream}.{d - 1}") for d in heads.depths)

    def finish(inputs: tuple[torch.Tensor, ...], tapped: list[torch.Tensor], _output: object) -> dict:
        lrhsi, hrmsi = inputs[:2]
        return {"inter_outs": heads(tapped, lrhsi, tuple(hrmsi.shape[-2:]))}

    return taps, finish


def heads_for_frozen(description: Mapping[str, Any], count: int) -> IntermediateHeads | None:
    """``count`` new heads for a frozen network described by ``description`` (``FusionNetwork.model_config``, e.g. an
    offline teacher's file) at their documented depths (:func:`default_depths`); None when it is no DTS network or
    has heads of its own. Draws only the heads' initial weights from the global RNG."""
    if description.get("arch", "dts") != "dts" or description.get("hkd_heads"):
        return None
    with torch.device("meta"):  # the depths need the block counts only: no weights allocated, no RNG drawn
        net = rebuild(description, "the frozen teacher")
    return IntermediateHeads(description["num_base_chs"], description["bands"], default_depths(net, count))


class IntermediateHeads(nn.Module):
    """K image heads: head_i(t_i) = base + up(conv3x3_i(t_i)), t_i (B, nf, h_i, w_i) → (B, bands, H, W).

    ``base`` = bilinear↑(LR-HSI) to (H, W); ``up`` = bilinear resize to (H, W) (identity for HR taps).
    ``depths`` (1-based CLRA block indices) are stored with the heads, so saved heads say where they belong.
    Parameters: K·(9·nf·bands + bands).
    """

    def __init__(self, num_base_chs: int, bands: int, depths: Sequence[int]) -> None:
        super().__init__()
        if not depths:
            raise ValueError("intermediate heads: expected at least one tap depth, got none")
        self.depths = tuple(int(d) for d in depths)
        self.heads = nn.ModuleList(nn.Conv2d(num_base_chs, bands, 3, 1, 1) for _ in self.depths)

    def config(self) -> dict:
        """The constructor arguments that rebuild these heads (plain types, for a checkpoint)."""
        conv = self.heads[0]
        return {"num_base_chs": conv.in_channels, "bands": conv.out_channels, "depths": list(self.depths)}

    @classmethod
    def for_network(cls, dts: TappedNetwork, depths: Sequence[int] | None = None,
                    count: int = len(HEAD_DEPTH_FRACTIONS)) -> IntermediateHeads:
        """Heads sized for ``dts`` at ``depths`` (default: :func:`default_depths` of ``count`` heads)."""
        return cls(dts.num_base_chs, dts.bands, default_depths(dts, count) if depths is None else depths)

    def forward(self, taps: Sequence[torch.Tensor], lrhsi: torch.Tensor, size: tuple[int, int]) -> list[torch.Tensor]:
        """K tapped features, LR-HSI (B, bands, h, w), HR size (H, W) → K images (B, bands, H, W)."""
        if len(taps) != len(self.heads):
            raise ValueError(f"intermediate heads: expected {len(self.heads)} tapped features, got {len(taps)}")
        size = tuple(size)
        base = F.interpolate(lrhsi, size=size, mode="bilinear", align_corners=False)
        outs = []
        for head, tap in zip(self.heads, taps, strict=True):
            residual = head(tap)
            if tuple(residual.shape[-2:]) != size:
                residual = F.interpolate(residual, size=size, mode="bilinear", align_corners=False)
            outs.append(base + residual)
        return outs


def forward_with_heads(dts: TappedNetwork, heads: IntermediateHeads, lrhsi: torch.Tensor,
                       hrmsi: torch.Tensor) -> FusionOutput:
    """One DTS forward with the heads: ``FusionOutput(out, feat=fused, inter_outs=[K head images])``."""
    (out, fused), taps = collect_taps(dts, lrhsi, hrmsi, heads.depths)
    return FusionOutput(out=out, feat=fused, inter_outs=heads(taps, lrhsi, tuple(out.shape[-2:])))
