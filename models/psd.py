"""A PSDNet-style progressive fusion network with an optional privileged (GT-fed) teacher variant.

PSDNet (Gong et al., "Multipatch Progressive Pansharpening With Knowledge Distillation", IEEE TGRS 2023;
authors' code ``Meiqi-Gong/PSDNet`` dda8b2d, ``Networks/dbpn.py``: ``Net`` = student, ``Net_GT`` = teacher)
refines its estimate in three stages; its teacher is the same network with the ground truth in place of the
stage-1 estimate at the stage-2 input. Restated for HSI/MSI fusion (docs: docs/other-seeds.md §2,
§3.3). Inputs as the DTS networks: LR-HSI (B, bands, h, w) and HR-MSI (B, msi_bands, s·h, s·w) in [-1, 1];
``msi_bands = 1`` is the pansharpening setting (PAN as HR-MSI, LRMS as LR-HSI). With X↑ = bilinear↑s(LR-HSI)
(the base image) and M = the HR-MSI features (one extractor shared by all stages, as the authors share it):

- stage 1: [conv(X↑), M] → shallow block (conv, CAB, SAB) → ORB → F1 → head → Y1 = X↑ + tanh(…)
- stage 2: [conv(Y1, or GT in the teacher), M] → shallow block + TransBlock(F1) → a three-level U-Net
  (widths nf, 2nf, 3nf, bilinear ½ down-sampling, skip connections) → F2 → head → Y2
- stage 3: [conv(Y2), M] → shallow block + TransBlock(E1) + TransBlock(F2) (E1 = first encoder level of
  stage 2) → three ORBs → F3 → head → Y3, the output.

Every F_k is (B, nf, s·h, s·w) and every Y_k (B, bands, s·h, s·w). Differences from the authors' code, on
purpose: stage 1 is this fusion block, not their DBPN back-projection units (which hard-code a ratio of 4);
the three passes of an ORB and the per-stage extractors have their own weights (the authors' reuse the same
module objects); every block has its own PReLU; the LR-HSI is up-sampled bilinearly (theirs: bicubic).

Multipatch (``patches=(4, 2, 1)``, off by default): stage k runs on p_k overlapping HR pieces (4 = 2 × 2,
2 = top/bottom halves, 1 = whole) which are cross-faded back with raised-cosine weights
(:func:`split_patches`, :func:`stitch_patches`). Neighbouring pieces share ``patch_overlap`` HR rows/columns;
the default ``"auto"`` scales the authors' share to the side being split (:func:`auto_overlap`: their 32 of 264
px, about 12 %, i.e. 8 px on PanCollection's 64-px tiles, where 32 would make each half 48 of 64 rows). The
authors also stitch inside stages (between their back-projection blocks and at each U-Net scale); here each
stage's features are stitched once, at its end.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from utils.config import Option, Range
from utils.defaults import BANDS, MSI_BANDS, SCALE

from .dts import DTS
from .family import NETWORK, NETWORKS, ROLES
from .network import FusionNetwork
from .outputs import AUX_FIELDS
from .taps import Finish, Tap

ATTENTION_REDUCTION = 4  # channel bottleneck of the CAB's attention MLP (authors' value)
#: ``patch_overlap`` that scales with the side being split (:func:`auto_overlap`); an integer fixes it.
AUTO_OVERLAP = "auto"
#: The authors' overlap as a share of the tile side, in percent: 32 HR rows (8 LR rows × ratio 4) on 264-px tiles.
OVERLAP_PERCENT = 12
STAGES = 3
#: The forward hooks that give the stage outputs: Y1, Y2 (outputs of the first two heads) and F2 (the second
#: head's feature input).
STAGE_TAPS = (Tap("heads.0"), Tap("heads.1"), Tap("heads.1", port="input"))


# ---------------------------------------------------------------------------------------------------
# Multipatch split and raised-cosine stitching


def crossfade_weights(overlap: int, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """w(i) = ½ + ½·cos(π i / L), i = 0 … L−1, L = ``overlap``: the first piece's weight across the overlap
    (1 at its start, falling towards 0); the second piece gets 1 − w. Shape (L,)."""
    i = torch.arange(overlap, dtype=torch.float64, device=device)
    return (0.5 + 0.5 * torch.cos(math.pi * i / overlap)).to(dtype)


def auto_overlap(size: int) -> int:
    """The ``"auto"`` overlap for a side of ``size`` HR pixels: the even number nearest
    :data:`OVERLAP_PERCENT` % of it (a tie rounded up), at least 2 — 32 for the authors' 264-px tiles, 8 for 64,
    30 for 256, 2 for 16 and below."""
    return max(2, 2 * ((OVERLAP_PERCENT * size // 2 + 50) // 100))


def resolve_overlap(overlap: int | str, size: int) -> int:
    """The overlap in HR pixels that ``overlap`` (an integer, or :data:`AUTO_OVERLAP`) gives a side of ``size``."""
    return auto_overlap(size) if overlap == AUTO_OVERLAP else overlap


def _halves(x: torch.Tensor, dim: int, overlap: int | str) -> tuple[torch.Tensor, torch.Tensor]:
    size = x.shape[dim]
    overlap = resolve_overlap(overlap, size)
    _check_overlap(size, overlap, dim)
    lo, hi = size // 2 - overlap // 2, size // 2 + overlap // 2
    return x.narrow(dim, 0, hi), x.narrow(dim, lo, size - lo)


def _check_overlap(size: int, overlap: int, dim: int) -> None:
    if overlap < 2 or overlap % 2 or overlap > size:
        axis = {-2: "height", -1: "width"}.get(dim, f"dimension {dim}")
        raise ValueError(f"patch_overlap: expected an even overlap between 2 and the {axis} being split "
                         f"({size}), got {overlap}")


def _join(first: torch.Tensor, second: torch.Tensor, dim: int, size: int, overlap: int | str) -> torch.Tensor:
    """Cross-fade two halves made by :func:`_halves` back into ``size`` samples along ``dim``."""
    overlap = resolve_overlap(overlap, size)
    lo = size // 2 - overlap // 2
    shape = [1] * first.dim()
    shape[dim] = overlap
    w = crossfade_weights(overlap, first.dtype, first.device).view(shape)
    a, b = first.narrow(dim, lo, overlap), second.narrow(dim, 0, overlap)
    # b + w·(a − b) rather than w·a + (1 − w)·b: identical pieces give back b bit for bit.
    middle = b + w * (a - b)
    return torch.cat((first.narrow(dim, 0, lo), middle, second.narrow(dim, overlap, second.shape[dim] - overlap)), dim)


def split_patches(x: torch.Tensor, count: int, overlap: int | str = AUTO_OVERLAP) -> list[torch.Tensor]:
    """Split (B, C, H, W) into ``count`` overlapping pieces: 1 → [x]; 2 → [top, bottom] (each H/2 + L/2 rows);
    4 → [top-left, top-right, bottom-left, bottom-right]. Neighbours share L rows/columns centred on the
    middle: L = ``overlap`` (even, 2 ≤ L ≤ the side being split), or with ``"auto"`` :func:`auto_overlap` of
    that side (H for the rows, W for the columns)."""
    if count == 1:
        return [x]
    if count not in (2, 4):
        raise ValueError(f"patches: each stage takes 1, 2 or 4 pieces, got {count}")
    pieces = list(_halves(x, -2, overlap))
    if count == 4:
        pieces = [q for half in pieces for q in _halves(half, -1, overlap)]
    return pieces


def stitch_patches(pieces: Sequence[torch.Tensor], size: tuple[int, int],
                   overlap: int | str = AUTO_OVERLAP) -> torch.Tensor:
    """Inverse of :func:`split_patches` for the original spatial ``size`` (H, W): overlaps are cross-faded with
    :func:`crossfade_weights`, whose two weights sum to 1 (a partition of unity), so stitching the pieces of
    one image returns it exactly. Pieces may have any channel count (images or features)."""
    if len(pieces) == 1:
        return pieces[0]
    height, width = size
    if len(pieces) == 4:
        pieces = [_join(pieces[0], pieces[1], -1, width, overlap), _join(pieces[2], pieces[3], -1, width, overlap)]
    elif len(pieces) != 2:
        raise ValueError(f"stitch_patches: expected 1, 2 or 4 pieces, got {len(pieces)}")
    return _join(pieces[0], pieces[1], -2, height, overlap)


# ---------------------------------------------------------------------------------------------------
# Blocks


def conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, 1, 1)


class CAB(nn.Module):
    """Channel attention block: x + CA(act(conv(act(conv(x))))), CA(u) = u·σ(MLP(avgpool u + maxpool u)) with a
    1×1 bottleneck MLP nf → nf/4 → nf (official: ``CAB`` in PSDNet's ``base_networks.py``). (B, nf, H, W) → same."""

    def __init__(self, nf: int, reduction: int = ATTENTION_REDUCTION) -> None:
        super().__init__()
        hidden = max(1, nf // reduction)
        self.body = nn.Sequential(conv3x3(nf, nf), nn.PReLU(), conv3x3(nf, nf), nn.PReLU())
        self.mlp = nn.Sequential(nn.Conv2d(nf, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, nf, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.body(x)
        pooled = F.adaptive_avg_pool2d(u, 1) + F.adaptive_max_pool2d(u, 1)
        return x + u * torch.sigmoid(self.mlp(pooled))


class SAB(nn.Module):
    """Spatial attention block: x + x·σ(conv3x3([mean_c x, max_c x])), the conv mapping 2 → nf maps
    (official: ``SAB``). (B, nf, H, W) → same; a zero conv gives 1.5·x."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.conv = conv3x3(2, nf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat((x.mean(1, keepdim=True), x.amax(1, keepdim=True)), 1)
        return x + x * torch.sigmoid(self.conv(stats))


class ORB(nn.Module):
    """Original-resolution block: x + body(x), body = three × [CAB, SAB, conv3x3, PReLU] with separate weights
    (official: ``ORB``, whose three passes share one set). (B, nf, H, W) → same."""

    def __init__(self, nf: int, passes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(*(nn.Sequential(CAB(nf), SAB(nf), conv3x3(nf, nf), nn.PReLU())
                                    for _ in range(passes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TransBlock(nn.Module):
    """Stage-to-stage transfer: conv3x3 → PReLU → conv1x1 → PReLU on a previous stage's feature, added to the
    next stage's (official: ``trans_enc*``/``trans_dec*``). (B, in_ch, H, W) → (B, out_ch, H, W)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3x3(in_ch, out_ch), nn.PReLU(), nn.Conv2d(out_ch, out_ch, 1), nn.PReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Shallow(nn.Module):
    """A stage's entry: [conv3x3(image) bands → nf, HR-MSI features] → conv3x3 2nf → nf → PReLU → CAB → SAB."""

    def __init__(self, bands: int, nf: int) -> None:
        super().__init__()
        self.image = conv3x3(bands, nf)
        self.body = nn.Sequential(conv3x3(2 * nf, nf), nn.PReLU(), CAB(nf), SAB(nf))

    def forward(self, image: torch.Tensor, msi_feat: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat((self.image(image), msi_feat), 1))


class Head(nn.Module):
    """Stage output: base + tanh(conv3x3(PReLU(conv3x3(F)))), F (B, nf, H, W) → (B, bands, H, W)."""

    def __init__(self, nf: int, bands: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3x3(nf, nf), nn.PReLU(), conv3x3(nf, bands), nn.Tanh())

    def forward(self, feat: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        return base + self.body(feat)


class UNet(nn.Module):
    """Stage 2's body: three levels (nf at H, 2nf at H/2, 3nf at H/4), bilinear ½ down- and up-sampling,
    additive skips, a CAB per level and side. (B, nf, H, W) → (E1, D1): the first encoder level and the
    last decoder output, both (B, nf, H, W) (official: the encoder/decoder of PSDNet's stage 2)."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        widths = (nf, 2 * nf, 3 * nf)
        self.enc = nn.ModuleList([CAB(widths[0])] + [nn.Sequential(conv3x3(widths[i - 1], widths[i]), CAB(widths[i]))
                                                     for i in (1, 2)])
        self.up = nn.ModuleList([conv3x3(widths[i + 1], widths[i]) for i in (0, 1)])
        self.dec = nn.ModuleList([CAB(w) for w in widths])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = [self.enc[0](x)]
        for level in (1, 2):
            half = F.interpolate(skips[-1], scale_factor=0.5, mode="bilinear", align_corners=False)
            skips.append(self.enc[level](half))
        y = self.dec[2](skips[2])
        for level in (1, 0):
            up = F.interpolate(y, size=skips[level].shape[-2:], mode="bilinear", align_corners=False)
            y = self.dec[level](self.up[level](up) + skips[level])
        return skips[0], y


# ---------------------------------------------------------------------------------------------------
# The network


def _even_overlap(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 2 and not value % 2


def overlap_flag(text: str) -> int | str:
    """``--psd_patch_overlap`` value: ``auto`` or an even integer ≥ 2 (HR pixels)."""
    if text == AUTO_OVERLAP:
        return text
    try:
        value = int(text)
    except ValueError:
        value = None
    if not _even_overlap(value):
        raise argparse.ArgumentTypeError(f"expected {AUTO_OVERLAP!r} or an even number of HR pixels ≥ 2, got {text!r}")
    return value


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")


class PSDNet(FusionNetwork):
    """Progressive three-stage HSI/MSI fusion network (official: PSDNet's ``Net``; ``Net_GT`` with
    ``privileged=True``).

    Args:
        bands: LR-HSI and output bands C.
        msi_bands: HR-MSI bands M (1 = a panchromatic image).
        num_base_chs: feature width nf of every stage (the U-Net goes to 3nf).
        scale: spatial ratio s between HR-MSI and LR-HSI.
        privileged: the teacher variant: ``forward`` requires the GT and feeds it to stage 2 in place of Y1.
        patches: pieces per stage, e.g. ``(4, 2, 1)`` (authors' layout); ``None`` or ``(1, 1, 1)`` = whole images.
        patch_overlap: HR rows/columns two neighbouring pieces share (even, at most the side being split), or
            ``"auto"`` (default): :func:`auto_overlap` of each side, the authors' 32 px of 264 scaled to the tile.
    """

    output_modules = (f"heads.{STAGES - 1}",)  # the last stage's head

    def __init__(self, bands: int = BANDS, msi_bands: int = MSI_BANDS, num_base_chs: int = 64, scale: int = SCALE,
                 privileged: bool = False, patches: Sequence[int] | None = None,
                 patch_overlap: int | str = AUTO_OVERLAP) -> None:
        super().__init__()
        _check_positive(bands=bands, msi_bands=msi_bands, num_base_chs=num_base_chs, scale=scale)
        patches = tuple(patches) if patches is not None else (1,) * STAGES
        if len(patches) != STAGES or any(p not in (1, 2, 4) for p in patches):
            raise ValueError(f"patches: expected {STAGES} piece counts from {{1, 2, 4}} (e.g. (4, 2, 1)), "
                             f"got {patches}")
        if any(p > 1 for p in patches) and patch_overlap != AUTO_OVERLAP and not _even_overlap(patch_overlap):
            raise ValueError(f"patch_overlap: expected an even number of HR pixels ≥ 2 or {AUTO_OVERLAP!r}, "
                             f"got {patch_overlap!r}")
        self.bands, self.msi_bands, self.num_base_chs, self.scale = bands, msi_bands, num_base_chs, scale
        self.privileged, self.patches, self.patch_overlap = bool(privileged), patches, patch_overlap
        self.role = "teacher" if self.privileged else "student"
        nf = num_base_chs
        self.msi_feat = nn.Sequential(conv3x3(msi_bands, nf), nn.PReLU(), conv3x3(nf, nf), nn.PReLU())
        self.shallow = nn.ModuleList([Shallow(bands, nf) for _ in range(STAGES)])
        self.stage1 = ORB(nf)
        self.trans_1_2 = TransBlock(nf, nf)
        self.stage2 = UNet(nf)
        self.trans_enc_2_3, self.trans_dec_2_3 = TransBlock(nf, nf), TransBlock(nf, nf)
        self.stage3 = nn.Sequential(ORB(nf), ORB(nf), ORB(nf))
        self.heads = nn.ModuleList([Head(nf, bands) for _ in range(STAGES)])

    def check_inputs(self, lrhsi: torch.Tensor, hrmsi: torch.Tensor, gt: torch.Tensor | None = None) -> None:
        """Raise a ``ValueError`` naming the input unless the inputs have the shapes this network takes, and
        unless the GT is given exactly when the network is privileged."""
        DTS.check_inputs(self, lrhsi, hrmsi)  # the same LR-HSI/HR-MSI contract (reads bands, msi_bands, scale)
        if self.privileged and gt is None:
            raise ValueError("gt: the privileged PSD teacher takes the ground truth (B, bands, H, W) as its stage-2 "
                             "input; call it as teacher(lrhsi, hrmsi, gt)")
        if not self.privileged and gt is not None:
            raise ValueError("gt: the PSD student never sees the ground truth; call it as student(lrhsi, hrmsi)")
        expected = (lrhsi.shape[0], self.bands, *hrmsi.shape[-2:])
        if gt is not None and (not isinstance(gt, torch.Tensor) or tuple(gt.shape) != expected):
            found = tuple(gt.shape) if isinstance(gt, torch.Tensor) else type(gt).__name__
            raise ValueError(f"gt: expected shape {expected}, got {found}")

    def _patched(self, stage: int, fn: Callable[..., tuple[torch.Tensor, ...]],
                 *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``fn(*inputs)`` on stage ``stage``'s pieces, each of its outputs stitched back to the input size."""
        count = self.patches[stage]
        if count == 1:
            return fn(*inputs)
        size = tuple(inputs[0].shape[-2:])
        split = [split_patches(x, count, self.patch_overlap) for x in inputs]
        results = [fn(*piece) for piece in zip(*split, strict=True)]
        return tuple(stitch_patches(list(outs), size, self.patch_overlap) for outs in zip(*results, strict=True))

    def _stage1(self, base: torch.Tensor, msi: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.stage1(self.shallow[0](base, msi)),)

    def _stage2(self, image: torch.Tensor, msi: torch.Tensor, f1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.stage2(self.shallow[1](image, msi) + self.trans_1_2(f1))

    def _stage3(self, image: torch.Tensor, msi: torch.Tensor, e1: torch.Tensor,
                f2: torch.Tensor) -> tuple[torch.Tensor]:
        x = self.shallow[2](image, msi) + self.trans_enc_2_3(e1) + self.trans_dec_2_3(f2)
        return (self.stage3(x),)

    def stages(self, lrhsi: torch.Tensor, hrmsi: torch.Tensor,
               gt: torch.Tensor | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """All three stages: ([Y1, Y2, Y3] each (B, bands, H, W), [F1, F2, F3] each (B, nf, H, W))."""
        self.check_inputs(lrhsi, hrmsi, gt)
        base = F.interpolate(lrhsi, size=hrmsi.shape[-2:], mode="bilinear", align_corners=False)
        msi = self.msi_feat(hrmsi)
        (f1,) = self._patched(0, self._stage1, base, msi)
        y1 = self.heads[0](f1, base)
        e1, f2 = self._patched(1, self._stage2, gt if self.privileged else y1, msi, f1)
        y2 = self.heads[1](f2, base)
        (f3,) = self._patched(2, self._stage3, y2, msi, e1, f2)
        return [y1, y2, self.heads[2](f3, base)], [f1, f2, f3]

    def forward(self, lrhsi: torch.Tensor, hrmsi: torch.Tensor,
                gt: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, bands, h, w), (B, msi_bands, s·h, s·w)[, GT (B, bands, s·h, s·w), teacher only] →
        HR-HSI Y3 (B, bands, s·h, s·w), last stage feature F3 (B, nf, s·h, s·w), as the DTS networks return."""
        images, feats = self.stages(lrhsi, hrmsi, gt)
        return images[-1], feats[-1]

    def provides(self, heads: nn.Module | None = None) -> frozenset[str]:
        """Every auxiliary field: ``feat`` = F3, ``inter_outs`` = [Y1, Y2], ``stage_feats`` = [F2, F3]."""
        return AUX_FIELDS

    def aux_taps(self, needs: frozenset[str], heads: nn.Module | None = None
                 ) -> tuple[tuple[Tap, ...], Finish | None]:
        """Y1, Y2 = the outputs of the first two stage heads, F2 = the second head's feature input (stitched, when
        multipatch); F3 is the forward's feature. ``heads``: not taken (a ValueError when given)."""
        if heads is not None:
            raise ValueError("PSDNet: takes no extra heads; its stage heads give the intermediate images")
        if not needs & {"inter_outs", "stage_feats"}:
            return (), None

        def finish(_inputs: tuple, tapped: list[torch.Tensor], output: tuple[torch.Tensor, torch.Tensor]) -> dict:
            return {"inter_outs": tapped[:2], "stage_feats": [tapped[2], output[1]]}

        return STAGE_TAPS, finish

    def extra_repr(self) -> str:
        return (f"bands={self.bands}, msi_bands={self.msi_bands}, nf={self.num_base_chs}, scale={self.scale}, "
                f"privileged={self.privileged}, patches={self.patches}, patch_overlap={self.patch_overlap}")


PSD_OPTIONS = (
    Option("psd_patches", type=int, nargs=3, metavar=("P1", "P2", "P3"), range=Range(1), group=NETWORK, arch="psd",
           help="--arch psd multipatch: pieces per stage from {1, 2, 4}, e.g. 4 2 1 (default off)"),
    Option("psd_patch_overlap", type=overlap_flag, range=Range(2), group=NETWORK, arch="psd", metavar="PX|auto",
           help="--arch psd multipatch: HR rows/columns neighbouring pieces share, even, or auto (default): the "
                "even number nearest 12 %% of the side split (authors: 32 of 264; 8 on 64-px tiles)"),
)


@NETWORKS.register("psd", classes=dict.fromkeys(ROLES, PSDNet), options=PSD_OPTIONS)
def build_psd(cfg: dict, role: str) -> PSDNet:
    """A :class:`PSDNet` of a flag dict, the teacher being the privileged (GT-fed) variant, both of width
    ``num_base_chs``; ``psd_patches``, ``psd_patch_overlap``: multipatch."""
    kwargs = {k: cfg[k] for k in ("bands", "msi_bands", "num_base_chs", "scale") if k in cfg}
    # "patches"/"patch_overlap": a checkpoint's own description (PSDNet.model_config) wins over the flags
    kwargs["patches"] = cfg.get("patches") or cfg.get("psd_patches")
    overlap = cfg.get("patch_overlap") or cfg.get("psd_patch_overlap")
    if overlap:
        kwargs["patch_overlap"] = overlap
    return PSDNet(**kwargs, privileged=role == "teacher")
