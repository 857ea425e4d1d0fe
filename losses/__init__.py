"""Losses of CSAKD (train_CSAKD.py): fidelity terms, distillation terms and the two joint objectives.

All inputs are in the network's [-1, 1] domain, (B, C, H, W). See docs/losses.md for the formulas.
"""

from losses.distillation import (
    FEATURE_NORMS,
    FeatureAdapter,
    FeatureKDLoss,
    NormalisedFeatureKDLoss,
    ResponseKDLoss,
    decay_factor,
    standardise_channels,
    term_gradient_cosines,
    term_gradient_norms,
    warmup_factor,
)
from losses.fidelity import (
    BAND_ENERGY_OFFSET,
    BEBALoss,
    ReconstructionLoss,
    SAMLoss,
    official_sam_loss,
    spectral_cosine_loss,
)
from losses.joint import FidelityLoss, StudentLoss, TeacherLoss

__all__ = [
    "BAND_ENERGY_OFFSET",
    "FEATURE_NORMS",
    "BEBALoss",
    "FeatureAdapter",
    "FeatureKDLoss",
    "FidelityLoss",
    "NormalisedFeatureKDLoss",
    "ReconstructionLoss",
    "ResponseKDLoss",
    "SAMLoss",
    "StudentLoss",
    "TeacherLoss",
    "decay_factor",
    "official_sam_loss",
    "spectral_cosine_loss",
    "standardise_channels",
    "term_gradient_cosines",
    "term_gradient_norms",
    "warmup_factor",
]
