"""CSAKD networks: the DTS teacher and student, their CLRA blocks and the fusion modules."""

from .clra import CLRA, DenseResidualBlock
from .dts import DTS, PAPER_STUDENT_LAYERS, TEACHER_LARGE_LAYERS, TEACHER_LAYERS, Student, Teacher, parse_student_layers
from .fusion import FUSION_MODES, CrossAttentionFusion, CSAFusion, build_fusion

__all__ = [
    "CLRA",
    "DTS",
    "FUSION_MODES",
    "PAPER_STUDENT_LAYERS",
    "TEACHER_LARGE_LAYERS",
    "TEACHER_LAYERS",
    "CSAFusion",
    "CrossAttentionFusion",
    "DenseResidualBlock",
    "Student",
    "Teacher",
    "build_fusion",
    "build_model",
    "parse_student_layers",
]


def build_model(cfg: dict, role: str) -> DTS:
    """The ``role`` (``"teacher"`` or ``"student"``) network from a config dict keyed by the flag names.

    Missing keys take the constructor defaults; ``compat`` is read from ``cfg["compat"]``.
    """
    keys = ("bands", "msi_bands", "num_base_chs", "num_agg_feat", "adaptive_fuse", "groups", "scale", "compat",
            "residual")
    kwargs = {k: cfg[k] for k in keys if k in cfg}
    if role == "teacher":
        if "teacher_layers" in cfg:
            kwargs["teacher_layers"] = cfg["teacher_layers"]
        return Teacher(**kwargs)
    if role == "student":
        if "student_layers" in cfg:
            kwargs["student_layers"] = cfg["student_layers"]
        return Student(**kwargs)
    raise ValueError(f"role: expected 'teacher' or 'student', got {role!r}")
