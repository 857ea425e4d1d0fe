"""CSAKD networks: the DTS teacher and student, their CLRA blocks and the fusion modules; the PSDNet-style
progressive network (``--arch psd``)."""

from torch import nn

from .clra import CLRA, DenseResidualBlock
from .describe import HeldNetwork, network_from_file
from .dts import DTS, PAPER_STUDENT_LAYERS, TEACHER_LARGE_LAYERS, TEACHER_LAYERS, Student, Teacher, parse_student_layers
from .family import NETWORKS
from .fusion import FUSION_MODES, CrossAttentionFusion, CSAFusion, build_fusion
from .psd import PSDNet

__all__ = [
    "CLRA",
    "DTS",
    "FUSION_MODES",
    "NETWORKS",
    "PAPER_STUDENT_LAYERS",
    "TEACHER_LARGE_LAYERS",
    "TEACHER_LAYERS",
    "CSAFusion",
    "CrossAttentionFusion",
    "DenseResidualBlock",
    "HeldNetwork",
    "PSDNet",
    "Student",
    "Teacher",
    "build_fusion",
    "build_model",
    "network_from_file",
    "parse_student_layers",
]


def build_model(cfg: dict, role: str) -> nn.Module:
    """The ``role`` (``"teacher"`` or ``"student"``) network from a config dict keyed by the flag names.

    ``cfg["arch"]`` (default ``"dts"``) picks the family from :data:`NETWORKS`: ``dts`` = :class:`Teacher` /
    :class:`Student` (with ``hkd_heads`` intermediate heads); ``psd`` = :class:`PSDNet`. Missing keys take the
    constructor defaults; ``compat`` is read from ``cfg["compat"]``.
    """
    if role not in ("teacher", "student"):
        raise ValueError(f"role: expected 'teacher' or 'student', got {role!r}")
    return NETWORKS.lookup(cfg.get("arch") or "dts").build(cfg, role)
