"""CSAKD networks: the DTS teacher and student, their CLRA blocks and the fusion modules; the PSDNet-style
progressive network (``--arch psd``)."""

from torch import nn

from .clra import CLRA, DenseResidualBlock
from .describe import HeldNetwork, network_from_file
from .dts import DTS, PAPER_STUDENT_LAYERS, TEACHER_LARGE_LAYERS, TEACHER_LAYERS, Student, Teacher, parse_student_layers
from .fusion import FUSION_MODES, CrossAttentionFusion, CSAFusion, build_fusion
from .psd import PSDNet

ARCHS = ("dts", "psd")  # --arch

__all__ = [
    "ARCHS",
    "CLRA",
    "DTS",
    "FUSION_MODES",
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

    ``cfg["arch"]`` (default ``"dts"``) picks the family: ``dts`` = :class:`Teacher` / :class:`Student`
    (with ``hkd_heads`` intermediate heads); ``psd`` = :class:`PSDNet`, the teacher being the privileged
    (GT-fed) variant, both of width ``num_base_chs`` (``psd_patches``, ``psd_patch_overlap``: multipatch).
    Missing keys take the constructor defaults; ``compat`` is read from ``cfg["compat"]``.
    """
    if role not in ("teacher", "student"):
        raise ValueError(f"role: expected 'teacher' or 'student', got {role!r}")
    arch = cfg.get("arch") or "dts"
    if arch == "psd":
        kwargs = {k: cfg[k] for k in ("bands", "msi_bands", "num_base_chs", "scale") if k in cfg}
        # "patches"/"patch_overlap": a checkpoint's own description (PSDNet.model_config) wins over the flags
        kwargs["patches"] = cfg.get("patches") or cfg.get("psd_patches")
        overlap = cfg.get("patch_overlap") or cfg.get("psd_patch_overlap")
        if overlap:
            kwargs["patch_overlap"] = overlap
        return PSDNet(**kwargs, privileged=role == "teacher")
    if arch != "dts":
        raise ValueError(f"--arch {arch!r}: expected one of {list(ARCHS)}")
    keys = ("bands", "msi_bands", "num_base_chs", "num_agg_feat", "adaptive_fuse", "groups", "scale", "compat",
            "residual", "hkd_heads")
    kwargs = {k: cfg[k] for k in keys if cfg.get(k) is not None}
    if role == "teacher":
        if "teacher_layers" in cfg:
            kwargs["teacher_layers"] = cfg["teacher_layers"]
        return Teacher(**kwargs)
    if "student_layers" in cfg:
        kwargs["student_layers"] = cfg["student_layers"]
    return Student(**kwargs)
