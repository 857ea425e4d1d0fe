"""The Dual Two-Streamed (DTS) network and its teacher and student configurations.

Inputs: LR-HSI ``x_h`` (B, bands, h, w) and HR-MSI ``x_m`` (B, msi_bands, s·h, s·w), s = ``scale``,
both in the data's [-1, 1] range. Four streams, each a 3×3 conv + LeakyReLU(0.2) + a stack of CLRA blocks:

====  =====================================  =================  ==========  =============
name  input                                  resolution         official    paper figure
====  =====================================  =================  ==========  =============
Z_hm  [bilinear↑s(x_h), x_m]                 s·h × s·w          hmconv1/hmfeat  high spectral
Z_mh  [x_h, bicubic↓s(x_m)], then nearest↑s   h × w              mhconv1/mhfeat  high spatial
Z_h   x_h, then nearest↑s                    h × w              hconv1/hfeat    high spectral
Z_m   x_m                                    s·h × s·w          mconv1/mfeat    high spatial
====  =====================================  =================  ==========  =============

The fuser (``--adaptive_fuse``) combines them into ``F`` (B, nf, s·h, s·w); the head maps
``F`` → ``last(LeakyReLU(fuse(F)))`` (B, bands, s·h, s·w): 3×3 conv nf→bands, then 3×3 conv
bands→bands without bias. There is no output clamp, and (as in the official code) no global skip unless
``residual`` is set: then the head predicts the correction to the bilinearly upsampled LR-HSI, out =
head(F) + bilinear↑s(x_h) (this project's option ``--residual``; no official counterpart).

``forward`` returns ``(hrhsi, fused_feature)``; the fused feature is what feature distillation matches.
Unlike the official code, no noise is added inside ``forward`` (docs/decisions.md #9): the training
step adds the AWGN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from utils.compat import check_compat
from utils.config import Option, Range, str2bool
from utils.defaults import BANDS, GROUPS, MSI_BANDS, NUM_AGG_FEAT, NUM_BASE_CHS, SCALE

from .clra import CLRA, check_groups, clra_stack
from .family import NETWORK, NETWORKS
from .fusion import FUSION_MODES, build_fusion
from .heads import IntermediateHeads, head_taps
from .network import FusionNetwork
from .taps import Finish, Tap

TEACHER_LAYERS = (6, 6, 4, 4)  # CLRA blocks in Z_hm, Z_mh, Z_h, Z_m (official: FNN_Teacher)
TEACHER_LARGE_LAYERS = (8, 8, 6, 6)  # the official Teacher-Large (models/KQD_Large.py), ``--teacher_layers 8866``
PAPER_STUDENT_LAYERS = (1, 4, 4, 1)  # the paper's student, ``--student_layers 1441``
DTS_AUX = frozenset({"feat"})  # the auxiliary outputs (models.outputs.AUX_FIELDS) a DTS network always provides
HEADED_AUX = DTS_AUX | {"inter_outs"}  # … and with intermediate image heads (``hkd_heads`` > 0)


#: The four streams of a DTS network, {name: the attribute of its CLRA stack} (Z_hm, Z_mh, Z_h, Z_m).
STREAM_STACKS = {"hm": "hmfeat", "mh": "mhfeat", "h": "hfeat", "m": "mfeat"}


def parse_student_layers(value: str | int | Sequence[int], flag: str = "student_layers") -> tuple[int, int, int, int]:
    """Read ``--student_layers`` (or ``--teacher_layers``, named by ``flag``): ``"1441"``, ``1441``,
    ``"1,4,4,1"`` or ``[1, 4, 4, 1]`` → ``(1, 4, 4, 1)``.

    The four numbers are the CLRA blocks of the Z_hm, Z_mh, Z_h and Z_m streams. Single digits are
    read as in the official script; use commas for 10 or more blocks.
    """
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        text = value.strip()
        parts = text.split(",") if "," in text else list(text)
        try:
            layers = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"{flag}: expected four block counts such as '1441' or '1,4,4,1', got {value!r}"
            ) from None
    else:
        layers = tuple(int(v) for v in value)
    if len(layers) != 4 or any(n < 0 for n in layers):
        raise ValueError(
            f"{flag}: expected four non-negative block counts (Z_hm, Z_mh, Z_h, Z_m) "
            f"such as '1441', got {value!r}"
        )
    return layers  # type: ignore[return-value]


class DTS(FusionNetwork):
    """Dual Two-Streamed network (official: FNN_Teacher / FNN_Student).

    Args:
        bands: LR-HSI and output bands C (official ``--bands``, 172 for AVIRIS).
        msi_bands: HR-MSI bands M (``--msi_bands``, 4 or 6).
        num_base_chs: stream width nf (``--num_base_chs``, 86).
        num_agg_feat: dense growth width gc of the CLRA blocks (``--num_agg_feat``, 43).
        adaptive_fuse: fuser 0–4 (see :mod:`models.fusion`).
        groups: conv groups of the head's first conv (``--groups``, 1); must divide nf and bands.
        scale: spatial ratio s between HR-MSI and LR-HSI (4).
        layers: CLRA blocks of (Z_hm, Z_mh, Z_h, Z_m).
        stream_groups: conv groups of the CLRA blocks of (Z_hm, Z_mh, Z_h, Z_m).
        compat: ``None`` (corrected attention) or ``"official"`` (docs/decisions.md #1).
        run_hm_stack: ``False`` for the student, whose Z_hm stream is its input conv alone: the
            Z_hm blocks are then not built (``layers[0]`` has no effect).
        hkd_heads: K intermediate image heads (``--hkd_heads``; :mod:`models.heads`, HKDSR): 0 = none. They are
            built after everything else (the backbone's initial weights do not change with K), saved with the
            network, and run (by forward hooks, :meth:`aux_taps`) only when ``"inter_outs"`` are asked for.
        residual: add the bilinearly upsampled LR-HSI to the head's output (global residual learning; no
            parameters, so the weights of both forms have the same keys).
    """

    role = "dts"
    output_modules = ("fuse", "last")

    def __init__(
        self,
        bands: int,
        msi_bands: int,
        num_base_chs: int,
        num_agg_feat: int,
        adaptive_fuse: int,
        groups: int,
        scale: int,
        layers: Sequence[int],
        stream_groups: Sequence[int],
        compat: str | None = None,
        run_hm_stack: bool = True,
        residual: bool = False,
        hkd_heads: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("bands", bands), ("msi_bands", msi_bands), ("num_base_chs", num_base_chs),
                            ("num_agg_feat", num_agg_feat), ("scale", scale)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if adaptive_fuse not in FUSION_MODES:
            raise ValueError(f"adaptive_fuse: expected one of {sorted(FUSION_MODES)}, got {adaptive_fuse!r}")
        check_compat(compat, type(self).__name__)
        if groups < 1 or num_base_chs % groups or bands % groups:
            raise ValueError(
                f"groups: the head conv (num_base_chs={num_base_chs} → bands={bands}) needs groups dividing "
                f"both, got groups={groups}"
            )
        for stream, g in zip(("Z_hm", "Z_mh", "Z_h", "Z_m"), stream_groups, strict=True):
            check_groups(num_base_chs, num_agg_feat, g, f"{stream} stream CLRA groups")

        self.bands, self.msi_bands, self.scale = bands, msi_bands, scale
        self.num_base_chs, self.num_agg_feat = num_base_chs, num_agg_feat
        self.adaptive_fuse, self.groups, self.compat = adaptive_fuse, groups, compat
        self.layers, self.stream_groups = tuple(layers), tuple(stream_groups)
        self.run_hm_stack, self.residual = run_hm_stack, bool(residual)
        nf, gc = num_base_chs, num_agg_feat
        n_hm, n_mh, n_h, n_m = self.layers
        g_hm, g_mh, g_h, g_m = self.stream_groups

        # Construction follows the official order, so that under the same seed the official
        # mode starts from the official initial weights (the official constructor builds all four
        # fusers first and keeps one).
        if compat == "official":
            fusers = [build_fusion(mode, nf, compat) for mode in (1, 2, 3, 4)]
            self.fuse_att = fusers[adaptive_fuse - 1] if adaptive_fuse else build_fusion(0, nf)
        else:
            self.fuse_att = build_fusion(adaptive_fuse, nf, compat)
        self.hmconv1 = nn.Conv2d(bands + msi_bands, nf, 3, 1, 1)
        self.hmfeat = clra_stack(n_hm if run_hm_stack else 0, nf, gc, g_hm)
        if compat == "official" and not run_hm_stack:
            # The official student builds a Z_hm stack that its forward never runs; building and
            # dropping it here draws the same random numbers as the official constructor.
            clra_stack(n_hm, nf, gc, g_hm)
        self.mhconv1 = nn.Conv2d(bands + msi_bands, nf, 3, 1, 1)
        self.mhfeat = clra_stack(n_mh, nf, gc, g_mh)
        self.hconv1 = nn.Conv2d(bands, nf, 3, 1, 1)
        self.hfeat = clra_stack(n_h, nf, gc, g_h)
        self.mconv1 = nn.Conv2d(msi_bands, nf, 3, 1, 1)
        self.mfeat = clra_stack(n_m, nf, gc, g_m)
        self.fuse = nn.Conv2d(nf, bands, 3, 1, 1, groups=groups)
        self.last = nn.Conv2d(bands, bands, 3, 1, 1, bias=False)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)  # only ever applied to fresh convolution outputs
        if not isinstance(hkd_heads, int) or isinstance(hkd_heads, bool) or hkd_heads < 0:
            raise ValueError(f"hkd_heads: expected a non-negative integer, got {hkd_heads!r}")
        self.hkd_heads = hkd_heads
        # K > 0: the heads (their tap depths included) are part of the network; None keeps the official keys.
        self.inter_heads = IntermediateHeads.for_network(self, count=hkd_heads) if hkd_heads else None

    def set_grad_checkpoint(self, enabled: bool) -> DTS:
        """Recompute the activations of every CLRA block in the backward pass (``--grad_checkpoint``).

        Same outputs and gradients; about a third more computation in training for a fraction of the
        activation memory (one CLRA block's instead of all of them). No effect without gradients.
        """
        for module in self.modules():
            if isinstance(module, CLRA):
                module.grad_checkpoint = bool(enabled)
        return self

    def check_inputs(self, lrhsi: torch.Tensor, hrmsi: torch.Tensor) -> None:
        """Raise a ``ValueError`` naming the input unless the pair has the shapes this network takes."""
        for name, x, ch, what in (("lrhsi", lrhsi, self.bands, "bands"), ("hrmsi", hrmsi, self.msi_bands, "msi_bands")):
            if not isinstance(x, torch.Tensor) or x.dim() != 4:
                found = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(f"{name}: expected a 4-D tensor (B, C, H, W), got {found}")
            if x.shape[1] != ch:
                raise ValueError(
                    f"{name}: expected {ch} channels ({what}={ch}), got {x.shape[1]} (shape {tuple(x.shape)})"
                )
        if lrhsi.shape[0] != hrmsi.shape[0]:
            raise ValueError(f"hrmsi: batch size {hrmsi.shape[0]} differs from the lrhsi batch size {lrhsi.shape[0]}")
        expected = (self.scale * lrhsi.shape[-2], self.scale * lrhsi.shape[-1])
        if tuple(hrmsi.shape[-2:]) != expected:
            raise ValueError(
                f"hrmsi: expected spatial size {expected} = scale ({self.scale}) × the lrhsi size "
                f"{tuple(lrhsi.shape[-2:])}, got {tuple(hrmsi.shape[-2:])}"
            )

    def forward(self, lrhsi: torch.Tensor, hrmsi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, bands, h, w), (B, msi_bands, s·h, s·w) → HR-HSI (B, bands, s·h, s·w), fused (B, nf, s·h, s·w)."""
        self.check_inputs(lrhsi, hrmsi)
        stems, lrhsi_up = self.stems(lrhsi, hrmsi)
        z = {"hm": self.hmfeat(stems["hm"]), "mh": self.mhfeat(stems["mh"]), "m": self.mfeat(stems["m"]),
             "h": self.hfeat(stems["h"])}
        return self.head(z, lrhsi_up)

    def stems(self, lrhsi: torch.Tensor, hrmsi: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The streams' stem features before their CLRA blocks, {"hm", "m": (B, nf, s·h, s·w); "mh", "h": (B, nf,
        h, w)}, and the bilinearly upsampled LR-HSI (B, bands, s·h, s·w)."""
        hr_size, lr_size = hrmsi.shape[-2:], lrhsi.shape[-2:]
        lrhsi_up = F.interpolate(lrhsi, size=hr_size, mode="bilinear", align_corners=False)
        hrmsi_down = F.interpolate(hrmsi, size=lr_size, mode="bicubic", align_corners=False)
        return {"hm": self.lrelu(self.hmconv1(torch.cat((lrhsi_up, hrmsi), 1))),
                "mh": self.lrelu(self.mhconv1(torch.cat((lrhsi, hrmsi_down), 1))),
                "m": self.lrelu(self.mconv1(hrmsi)), "h": self.lrelu(self.hconv1(lrhsi))}, lrhsi_up

    def head(self, z: dict[str, torch.Tensor], lrhsi_up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The streams' final features ``z`` (as :meth:`stems`) through the fuser and the head: (HR-HSI (B, bands,
        s·h, s·w), fused feature (B, nf, s·h, s·w))."""
        hr_size = lrhsi_up.shape[-2:]
        up_h, up_mh = (F.interpolate(z[k], size=hr_size, mode="nearest") for k in ("h", "mh"))
        fused = self.fuse_att(up_h, z["m"], up_mh, z["hm"])
        out = self.last(self.lrelu(self.fuse(fused)))
        return (out + lrhsi_up if self.residual else out), fused

    def provides(self, heads: nn.Module | None = None) -> frozenset[str]:
        """``feat``, and ``inter_outs`` with intermediate heads: the network's own (``hkd_heads`` > 0) or ``heads``."""
        return HEADED_AUX if (heads if heads is not None else self.inter_heads) is not None else DTS_AUX

    def aux_taps(self, needs: frozenset[str], heads: IntermediateHeads | None = None
                 ) -> tuple[tuple[Tap, ...], Finish | None]:
        """``inter_outs``: the K intermediate images (B, bands, s·h, s·w), shallow to deep, of ``heads`` (default:
        the network's own) on the CLRA blocks at their depths (:func:`models.heads.head_taps`)."""
        if "inter_outs" not in needs:
            return (), None
        return head_taps(self, heads if heads is not None else self.inter_heads)

    def _missing_hint(self) -> str:
        return " (intermediate outputs need --hkd_heads K > 0)"

    def extra_repr(self) -> str:
        return (f"bands={self.bands}, msi_bands={self.msi_bands}, nf={self.num_base_chs}, gc={self.num_agg_feat}, "
                f"layers={self.layers}, adaptive_fuse={self.adaptive_fuse}, scale={self.scale}, compat={self.compat}"
                + (", residual=True" if self.residual else ""))


class Teacher(DTS):
    """The CSAKD teacher: CLRA blocks (6, 6, 4, 4), ungrouped (official: Teacher / FNN_Teacher).

    26.81M parameters and 941.8 GMACs at the paper's shapes (172×64×64 + 4×256×256).
    ``teacher_layers=(8, 8, 6, 6)`` is the official Teacher-Large (official: ``models/KQD_Large.py``),
    which differs only in these block counts.
    """

    role = "teacher"

    def __init__(
        self,
        bands: int = BANDS,
        msi_bands: int = MSI_BANDS,
        num_base_chs: int = NUM_BASE_CHS,
        num_agg_feat: int = NUM_AGG_FEAT,
        adaptive_fuse: int = 3,
        groups: int = GROUPS,
        scale: int = SCALE,
        compat: str | None = None,
        teacher_layers: str | int | Sequence[int] = TEACHER_LAYERS,
        residual: bool = False,
        hkd_heads: int = 0,
    ) -> None:
        layers = parse_student_layers(teacher_layers, "teacher_layers")
        super().__init__(bands, msi_bands, num_base_chs, num_agg_feat, adaptive_fuse, groups, scale,
                         layers=layers, stream_groups=(1, 1, 1, 1), compat=compat, residual=residual,
                         hkd_heads=hkd_heads)
        self.teacher_layers = layers



class Student(DTS):
    """The CSAKD student (official: Student / FNN_Student).

    ``student_layers`` = (a, b, c, d) CLRA blocks for (Z_hm, Z_mh, Z_h, Z_m). As in the official
    forward, the Z_hm stream runs only its input conv, so ``a`` has no effect and no Z_hm blocks are
    built (docs/decisions.md #4; the paper's 7.44M parameters exclude them). The Z_h stream is grouped with
    ``num_base_chs // 2`` groups (43 at paper size); Z_m uses ``groups`` when it divides ``bands``, else 1,
    as official. The paper's student (1441): 7.45M parameters, 144.8 GMACs.
    """

    role = "student"

    def __init__(
        self,
        bands: int = BANDS,
        msi_bands: int = MSI_BANDS,
        num_base_chs: int = NUM_BASE_CHS,
        num_agg_feat: int = NUM_AGG_FEAT,
        adaptive_fuse: int = 3,
        groups: int = GROUPS,
        scale: int = SCALE,
        student_layers: str | int | Sequence[int] = PAPER_STUDENT_LAYERS,
        compat: str | None = None,
        residual: bool = False,
        hkd_heads: int = 0,
    ) -> None:
        layers = parse_student_layers(student_layers)
        if num_base_chs < 2:
            raise ValueError(f"num_base_chs: the student's grouped Z_h stream needs at least 2, got {num_base_chs}")
        g_m = groups if groups >= 1 and bands % groups == 0 else 1
        super().__init__(bands, msi_bands, num_base_chs, num_agg_feat, adaptive_fuse, groups, scale,
                         layers=layers, stream_groups=(g_m, 1, num_base_chs // 2, g_m), compat=compat,
                         run_hm_stack=False, residual=residual, hkd_heads=hkd_heads)
        self.student_layers = layers

    def model_config(self) -> dict:
        return {**super().model_config(), "student_layers": list(self.student_layers)}


def _layers(name: str, default: tuple[int, ...], help_text: str, **kw) -> Option:
    return Option(name, type=str, default="".join(map(str, default)), group=NETWORK, help=help_text, **kw)


DTS_OPTIONS = (
    Option("num_agg_feat", type=int, default=NUM_AGG_FEAT, range=Range(1), group=NETWORK,
           help="CLRA dense growth width gc"),
    Option("adaptive_fuse", type=int, choices=range(5), default=3, official=0, group=NETWORK,
           # the paper's CSA fusion; the official script's default is 0
           help="fusion: 0 sum, 1 sigmoid weights, 2 cross-attention, 3 CSA, 4 concat attention"),
    _layers("student_layers", PAPER_STUDENT_LAYERS,
            "student CLRA blocks of Z_hm, Z_mh, Z_h, Z_m, e.g. 1441 (Z_hm's count has no effect)"),
    _layers("teacher_layers", TEACHER_LAYERS,
            "teacher CLRA blocks of Z_hm, Z_mh, Z_h, Z_m: 6644 (teacher), 8866 (official Teacher-Large)",
            teacher_only=True),
    Option("groups", type=int, default=GROUPS, range=Range(1), group=NETWORK, help="groups of the head conv"),
    Option("num_blocks", type=int, default=6, group=NETWORK, affects_result=False,
           help="accepted for compatibility; ignored, as in the official code"),
    Option("residual", type=str2bool, default=False, group=NETWORK,
           help="true: both networks predict the correction to the bilinearly upsampled LR-HSI (global residual "
                "learning; not official, refused under --compat official)"),
    # None: resolved from --kd_strategy (engine/flags.py)
    Option("hkd_heads", type=int, range=Range(0), group=NETWORK,
           help="K intermediate image heads on both DTS networks, saved with them (HKDSR); default 2 with "
                "--kd_strategy hkd, else 0"),
)
_DTS_KWARGS = ("bands", "msi_bands", "num_base_chs", "num_agg_feat", "adaptive_fuse", "groups", "scale", "compat",
               "residual", "hkd_heads")


@NETWORKS.register("dts", classes={"teacher": Teacher, "student": Student}, options=DTS_OPTIONS)
def build_dts(cfg: dict, role: str) -> DTS:
    """The DTS :class:`Teacher` or :class:`Student` of a flag dict (missing keys: the constructor defaults)."""
    kwargs = {k: cfg[k] for k in _DTS_KWARGS if cfg.get(k) is not None}
    layers = f"{role}_layers"
    if layers in cfg:
        kwargs[layers] = cfg[layers]
    return Teacher(**kwargs) if role == "teacher" else Student(**kwargs)


def block_mixed(student: DTS, teacher: DTS, lrhsi: torch.Tensor, hrmsi: torch.Tensor) -> torch.Tensor:
    """Block mixing's composite HR-HSI (B, bands, s·h, s·w) (``--block_mix``, :mod:`engine.strategies.mixing`): the
    student's stems and blocks, the teacher's remaining blocks of each stream, the teacher's fuser and head. Inputs
    as the networks' (in [-1, 1]); equal widths required."""
    if student.num_base_chs != teacher.num_base_chs:
        raise ValueError(f"--block_mix: the student's width nf {student.num_base_chs} differs from the frozen "
                         f"teacher's {teacher.num_base_chs}; block mixing needs equal widths")
    stems, lrhsi_up = student.stems(lrhsi, hrmsi)
    z = {}
    for name, attr in STREAM_STACKS.items():
        own = getattr(student, attr)
        z[name] = getattr(teacher, attr)[len(own):](own(stems[name]))
    return teacher.head(z, lrhsi_up)[0]
