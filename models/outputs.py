"""The one record through which a fusion network's forward pass reaches a distillation strategy.

A network's ``forward(lrhsi, hrmsi)`` returns the official tuple ``(out, feature)`` (as the official
``FNN_Teacher``/``FNN_Student`` do; :mod:`models.network`). A strategy receives a :class:`FusionOutput`: ``out``,
and only the fields named in its ``needs``, the tensors beyond the tuple taken by forward hooks
(:mod:`models.taps`), so a strategy that asks for nothing extra costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

#: The auxiliary fields a strategy may ask for (``DistillationStrategy.needs``).
AUX_FIELDS = frozenset({"feat", "inter_outs", "stage_feats"})


@dataclass
class FusionOutput:
    """What one forward pass of a fusion network produced, in the network's [-1, 1] domain.

    Attributes:
        out: the HR-HSI prediction, (B, bands, H, W).
        feat: the fused HR feature that feeds the output convolutions, (B, nf, H, W) (CSAKD's feature
            distillation), or None when not requested or not defined for the network.
        inter_outs: intermediate HR-HSI predictions, each (B, bands, H, W), shallow to deep (HKDSR's
            intermediate heads; a progressive network's earlier stage images). Empty when not requested.
        stage_feats: per-stage HR features, each (B, nf, H, W), shallow to deep (PSDNet's stage-feature
            distillation). Empty when not requested.
    """

    out: torch.Tensor
    feat: torch.Tensor | None = None
    inter_outs: list[torch.Tensor] = field(default_factory=list)
    stage_feats: list[torch.Tensor] = field(default_factory=list)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> FusionOutput:
        """A copy with ``fn`` applied to every tensor (e.g. ``torch.Tensor.detach``, ``torch.Tensor.float``)."""
        return FusionOutput(out=fn(self.out), feat=None if self.feat is None else fn(self.feat),
                            inter_outs=[fn(t) for t in self.inter_outs], stage_feats=[fn(t) for t in self.stage_feats])

    def detach(self) -> FusionOutput:
        """A detached copy: what a student's objective may see of a teacher."""
        return self.map(torch.Tensor.detach)


def check_needs(needs: frozenset[str] | set[str], where: str) -> frozenset[str]:
    """``needs`` as a frozenset, or a ValueError naming ``where`` and the unknown field."""
    unknown = set(needs) - AUX_FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown auxiliary output(s) {sorted(unknown)}; "
                         f"expected some of {sorted(AUX_FIELDS)}")
    return frozenset(needs)
