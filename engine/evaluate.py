"""Evaluation over a loader: network predictions (whole or tiled), the baseline, per-image metrics, timing with
warm-up and device synchronisation, peak memory, and ``.mat`` predictions.

HSI/MSI fusion: metrics follow ``utils.metrics`` (per image, then the mean over images; conventions there); the
bicubic baseline is the LR-HSI upsampled ×scale (bicubic, align_corners=False) and scored exactly like a network.
Pansharpening data (a dataset with ``task = "pansharpening"``): the toolbox indices in DN
(``engine.pansharpening_metrics``) and the EXP baseline (:class:`PansharpeningScoring`).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.io import savemat
from torch import nn
from torch.utils.data import DataLoader

from data.sensors import SENSORS, get_sensor
from utils.fileio import atomic_write
from utils.metrics import METRIC_NAMES, evaluate_batch, mean_metrics, to_unit_range
from utils.tiling import tiled_forward

from .noise import awgn
from .pansharpening_metrics import FR_METRICS, PANSHARPENING_COUNT_KEYS, RR_METRICS, score_image, summarise
from .runtime import DistContext, autocast, synchronize

OFFICIAL_VAL_EVERY = 5  # official validation scores only every 5th validation batch (docs/decisions.md #7)


def predict(model: nn.Module, lrhsi: torch.Tensor, hrmsi: torch.Tensor, tile: int = 0, overlap: int = 0,
            amp: str = "off", gt: torch.Tensor | None = None) -> torch.Tensor:
    """The network's HR-HSI (B, C, s·h, s·w), float32, [-1, 1] domain; tiled when ``tile`` > 0 (LR pixels).

    The one rule for privileged networks (``model.privileged``, the PSD teacher): they get ``gt`` as their
    third input (its scores measure a GT-fed network, not a fusion method); every other network never sees it.
    """
    if getattr(model, "privileged", False):
        if gt is None:  # a full-resolution split: nothing to feed it (the student runs there)
            raise ValueError("the privileged PSD teacher is fed the GT at its stage-2 input, and full-resolution data "
                             "have none (a full-resolution split, --resolution full): test the student "
                             "(--test_mode 2) there, the teacher at reduced resolution (--resolution reduced)")
        if tile:
            raise ValueError("--tile: the privileged PSD teacher takes the whole GT; test it untiled (--tile 0)")
        with autocast(lrhsi.device, amp):
            return model(lrhsi, hrmsi, gt)[0].float()
    with autocast(lrhsi.device, amp):
        if tile:
            return tiled_forward(model, lrhsi, hrmsi, tile, overlap)
        return model(lrhsi, hrmsi)[0].float()


def bicubic(lrhsi: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline: LR-HSI (B, C, h, w) upsampled to (B, C, s·h, s·w), same domain."""
    return F.interpolate(lrhsi.float(), scale_factor=scale, mode="bicubic", align_corners=False)


def validation_every(cfg: Mapping[str, Any]) -> int:
    """Score every n-th validation batch: 1 (the whole set), or every 5th under ``--compat official``
    (docs/decisions.md #7)."""
    return OFFICIAL_VAL_EVERY if cfg.get("compat") == "official" else 1


@torch.no_grad()
def validate(models: Mapping[str, nn.Module], loader: DataLoader, cfg: dict, device: torch.device,
             every: int = 1, keep_scenes: int = 0, dist: DistContext | None = None, baseline: bool = False
             ) -> tuple[dict[str, dict[str, float]], list[dict]]:
    """Mean validation metrics of each network (``cfg["val_metrics"]``), in eval mode, without noise.

    Args:
        models: {"teacher": .., "student": ..} (any subset, or none with ``baseline``).
        baseline: also score the bicubic baseline (:func:`bicubic`) on the same images, as role ``"bicubic"``.
        every: score only every ``every``-th batch of ``loader`` (official: 5; docs/decisions.md #7).
        keep_scenes: also return the first ``keep_scenes`` scored images (of this process) for the figures.
        dist: with several processes, each scores its shard (``engine.loaders.ValidationShard``: process r
            holds images r, r + W, …) and the per-image rows are gathered back into the single-process
            order, so the mean counts every validation image exactly once, as one process would.

    Returns:
        ({role: {metric: mean}}, scenes) with scenes = [{"name", "gt", "bicubic", role: pred}], each image
        (C, H, W) in [0, 1] on the CPU.
    """
    rows: dict[str, list[dict]] = {role: [] for role in (*models, *(("bicubic",) if baseline else ()))}
    scenes: list[dict] = []
    was_training = {role: m.training for role, m in models.items()}
    for m in models.values():
        m.eval()
    scale = cfg["scale"]
    try:
        for i, batch in enumerate(loader):
            if i % every:
                continue
            lr, msi = batch["lrhsi"].to(device), batch["hrmsi"].to(device)
            gt = batch["gt"].to(device)
            preds = {role: predict(m, lr, msi, amp=cfg.get("amp", "off"), gt=gt) for role, m in models.items()}
            scored = {**preds, "bicubic": bicubic(lr, scale)} if baseline else preds
            for role, pred in scored.items():
                # test_rmse=False: the official training validation has no "+ minv" in its RMSE
                rows[role] += evaluate_batch(pred, gt, batch["maxv"], batch["minv"], scale=scale,
                                             compat=cfg.get("compat"), metrics=cfg.get("val_metrics"),
                                             test_rmse=False)
            for j in range(min(len(gt), keep_scenes - len(scenes))):
                scene = {"name": batch["name"][j], "gt": to_unit_range(gt[j]).cpu(),
                         "bicubic": to_unit_range(bicubic(lr[j:j + 1], scale)[0]).cpu()}
                scene.update({role: to_unit_range(p[j]).cpu() for role, p in preds.items()})
                scenes.append(scene)
    finally:
        for role, m in models.items():
            m.train(was_training[role])
    if dist is not None and dist.distributed:
        rows = {role: interleave(dist.gather(r)) for role, r in rows.items()}
    return {role: mean_metrics(r) for role, r in rows.items()}, scenes


def validate_bicubic(loader: DataLoader, cfg: dict, device: torch.device, dist: DistContext | None = None
                     ) -> dict[str, float]:
    """The bicubic baseline's mean validation metrics on the images :func:`validate` scores (same loader)."""
    return validate({}, loader, cfg, device, dist=dist, baseline=True)[0]["bicubic"]


def interleave(shards: Sequence[Sequence[Any]]) -> list[Any]:
    """Undo a round-robin split: shard r holds items r, r + W, r + 2W, … of the original list (W shards)."""
    out = []
    for k in range(max((len(s) for s in shards), default=0)):
        out += [s[k] for s in shards if k < len(s)]
    return out


def _peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return rss_kb / (2**20 if sys.platform == "darwin" else 2**10), "process peak RSS (CPU)"


def to_raw_units(x: torch.Tensor, maxv: float, minv: float) -> np.ndarray:
    """One image (C, H, W) of the [-1, 1] domain de-normalised: v/2 + 0.5 scaled by the GT's range,
    (v/2 + 0.5)·(maxv − minv) + minv, float32 on the CPU (raw units: radiance for AVIRIS, DN for pansharpening,
    whose samples carry ``maxv`` = the sensor scale and ``minv`` = 0). Not clipped."""
    return to_unit_range(x.detach().float().cpu()).numpy() * (maxv - minv) + minv


def save_prediction(path: str | os.PathLike, pred: torch.Tensor, maxv: float, minv: float,
                    raw_units: bool = False) -> None:
    """Write one prediction to a MATLAB file, key ``pred``, (H, W, C) float32, atomically.

    ``pred`` (C, H, W) is in the network's [-1, 1] domain; it is saved in the [0, 1]-normalised scale
    (v/2 + 0.5, not clipped, as official), or with ``raw_units`` de-normalised (:func:`to_raw_units`).
    """
    x = pred.detach().float().cpu()
    img = to_raw_units(x, maxv, minv) if raw_units else to_unit_range(x).numpy()
    atomic_write(path, lambda f: savemat(f, {"pred": np.ascontiguousarray(img.transpose(1, 2, 0),
                                                                          dtype=np.float32)}))


def task_of(dataset: Any) -> str:
    """``"pansharpening"`` or ``"fusion"`` (HSI/MSI fusion): the ``task`` attribute of a dataset (default fusion)."""
    return getattr(dataset, "task", "fusion")


class FusionScoring:
    """How a test scores HSI/MSI fusion: ``utils.metrics`` in the [0, 1]-normalised scale against the GT, the
    bicubic baseline (:func:`bicubic`), predictions saved normalised (or in raw units with ``--raw_units``)."""

    baseline = "bicubic"
    label = "bicubic"

    def __init__(self, cfg: Mapping[str, Any], metrics: Sequence[str] | None):
        unknown = [m for m in metrics or () if m not in METRIC_NAMES]
        if unknown:
            raise ValueError(f"--metrics {','.join(unknown)}: pansharpening metrics, not computed on HSI fusion data; "
                             f"choose from {','.join(METRIC_NAMES)}")
        self.cfg, self.names = cfg, list(metrics or METRIC_NAMES)
        self.raw_units = bool(cfg.get("raw_units"))

    def score(self, images: torch.Tensor, batch: Mapping[str, Any]) -> list[dict[str, float]]:
        """Per-image metrics of ``images`` (B, C, H, W), [-1, 1] domain, against the batch's GT."""
        gt = batch["gt"].to(images.device)
        return evaluate_batch(images, gt, batch["maxv"], batch["minv"], scale=self.cfg["scale"],
                              compat=self.cfg.get("compat"), metrics=self.names)

    def baseline_images(self, batch: Mapping[str, Any], lr: torch.Tensor) -> torch.Tensor:
        return bicubic(lr, self.cfg["scale"])

    def mean(self, rows: Sequence[dict[str, float]]) -> tuple[dict[str, float], None]:
        """({metric: mean, count: sum} as ``utils.metrics.mean_metrics``, None: no flat-block counts)."""
        return mean_metrics(rows), None


class PansharpeningScoring:
    """How a test scores pansharpening (docs/pansharpening.md): each image de-normalised to DN
    (:func:`to_raw_units`; samples carry ``maxv`` = the sensor scale, ``minv`` = 0) and scored in float64 with the
    toolbox indices (``engine.pansharpening_metrics``): against the GT at reduced resolution (``--dim_cut``), with
    MS↑ = the sample's ``lms`` and PAN = its HR-MSI and the sensor's MS MTF at full resolution. The baseline is
    EXP, the ``lms`` itself (the 23-tap interpolated MS); predictions are saved in DN."""

    baseline = "exp"
    label = "EXP"
    raw_units = True

    def __init__(self, dataset: Any, cfg: Mapping[str, Any], metrics: Sequence[str] | None):
        self.full, self.ratio = bool(dataset.full), int(dataset.ratio)
        if self.full and not dataset.sensor:  # pancollection read with --img_range alone
            raise ValueError("--sensor: the full-resolution indices D_λ^K and HQNR filter with the sensor's MS MTF; "
                             "pass --sensor (one of " + ", ".join(SENSORS) + ")")
        self.gains = get_sensor(dataset.sensor).gnyq_ms if self.full else ()
        self.dim_cut = 0 if self.full else int(cfg.get("dim_cut") or 0)
        own = FR_METRICS if self.full else RR_METRICS
        unknown = [m for m in metrics or () if m not in own]
        if unknown:
            what = "full-resolution" if self.full else "reduced-resolution"
            raise ValueError(f"--metrics {','.join(unknown)}: not computed on {what} pansharpening data; choose "
                             f"from {','.join(own)}")
        self.names = list(metrics or own)

    def score(self, images: torch.Tensor, batch: Mapping[str, Any]) -> list[dict[str, float]]:
        """Per-image toolbox indices of ``images`` (B, C, H, W), [-1, 1] domain (FR rows: and their NaN blocks)."""
        return [self._score_one(images, batch, j) for j in range(len(batch["name"]))]

    def _score_one(self, images: torch.Tensor, batch: Mapping[str, Any], j: int) -> dict[str, float]:
        maxv, minv = float(batch["maxv"][j]), float(batch["minv"][j])

        def dn(x: torch.Tensor) -> np.ndarray:  # image j in DN, float64
            return to_raw_units(x[j], maxv, minv).astype(np.float64)

        refs = {"ms_up": dn(batch["lms"]), "pan": dn(batch["hrmsi"])} if self.full else {"gt": dn(batch["gt"])}
        try:
            values = score_image(dn(images), **refs, gains=self.gains, ratio=self.ratio, dim_cut=self.dim_cut)
        except ValueError as e:  # sizes the toolbox cannot score: name the image and the resolution
            where = "full-resolution (--resolution full)" if self.full else "reduced-resolution"
            raise ValueError(f"{batch['name'][j]}: {where} image {tuple(images.shape[-2:])}: {e}") from None
        return {k: values[k] for k in (*self.names, *PANSHARPENING_COUNT_KEYS) if k in values}

    def baseline_images(self, batch: Mapping[str, Any], lr: torch.Tensor) -> torch.Tensor:
        return batch["lms"]

    def mean(self, rows: Sequence[dict[str, float]]) -> tuple[dict[str, float], dict[str, int]]:
        """({index: mean, NaN-block count: sum}, {NaN-block count: sum}) (``pansharpening_metrics.summarise``)."""
        means, counts = summarise(rows, self.names)
        return {**means, **counts}, counts


def scoring_for(dataset: Any, cfg: Mapping[str, Any], metrics: Iterable[str] | None = None
                ) -> FusionScoring | PansharpeningScoring:
    """The one place that decides how a test split is scored, and so its metric names and baseline (``bicubic``
    or ``exp``), from the dataset's ``task``. ``metrics`` None: all of the task's; names the data cannot give
    are one ValueError naming ``--metrics``."""
    metrics = list(metrics) if metrics is not None else None
    if task_of(dataset) == "pansharpening":
        return PansharpeningScoring(dataset, cfg, metrics)
    return FusionScoring(cfg, metrics)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, cfg: dict, device: torch.device,
             metrics: Iterable[str] | None = None, pred_dir: str | None = None) -> dict[str, Any]:
    """Test one network on every image of ``loader``, scored as :func:`scoring_for` decides for its dataset.

    Uses ``cfg`` keys ``scale``, ``compat``, ``tile``, ``tile_overlap`` (LR pixels), ``warmup``, ``amp``,
    ``snr`` (test-time AWGN on the LR-HSI, seeded by ``seed``; 0 = none), ``raw_units``, ``dim_cut``.

    Returns:
        {"rows": [{"name", <metric>..., "<baseline>_<metric>"..., "time_ms"}],
         "metrics": mean per metric, "baselines": {<baseline>: mean per metric} (``bicubic``, or ``exp`` for
         pansharpening), "names": the metrics scored, "baseline_label" (bicubic, EXP), "nan_blocks"
         (pansharpening only: the network's flat-block counts, summed), "time_ms": mean forward time per image
         (after warm-up, device synchronised), "peak_memory_mb", "peak_memory_kind", "images"}
    """
    scoring = scoring_for(loader.dataset, cfg, metrics)
    model.eval()
    tile, overlap, amp = int(cfg.get("tile") or 0), int(cfg.get("tile_overlap") or 0), cfg.get("amp", "off")
    noise = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rows, times, used_names = [], [], set()
    warm, prefix = int(cfg.get("warmup", 0)), f"{scoring.baseline}_"
    for batch in loader:
        lr, msi = batch["lrhsi"].to(device), batch["hrmsi"].to(device)
        gt = batch["gt"].to(device) if "gt" in batch else None  # full-resolution pansharpening: no GT
        lr_in = awgn(lr, float(cfg.get("snr") or 0), noise)
        for _ in range(warm):  # warm-up on the first batch: allocator, kernels, autotuning
            predict(model, lr_in, msi, tile, overlap, amp, gt)
        warm = 0
        synchronize(device)
        start = time.perf_counter()
        pred = predict(model, lr_in, msi, tile, overlap, amp, gt)
        synchronize(device)
        per_image_ms = (time.perf_counter() - start) * 1000 / len(lr)
        scored = scoring.score(pred, batch)
        base = scoring.score(scoring.baseline_images(batch, lr), batch)
        for j, name in enumerate(batch["name"]):
            rows.append({"name": name, **scored[j], **{prefix + k: v for k, v in base[j].items()},
                         "time_ms": per_image_ms})
            times.append(per_image_ms)
            if pred_dir is not None:
                stem = os.path.basename(name)
                if stem in used_names:  # different folders, same scene name: keep both
                    stem = name.replace("/", "_").replace(os.sep, "_")
                used_names.add(stem)
                save_prediction(os.path.join(pred_dir, stem + ".mat"), pred[j], float(batch["maxv"][j]),
                                float(batch["minv"][j]), raw_units=scoring.raw_units)
    if not rows:
        raise ValueError("evaluate: the loader yielded no images")
    peak, kind = _peak_memory_mb(device)
    net = [{k: v for k, v in r.items() if k != "name" and not k.startswith(prefix) and k != "time_ms"} for r in rows]
    base = [{k[len(prefix):]: v for k, v in r.items() if k.startswith(prefix)} for r in rows]
    (net_mean, nan_blocks), (base_mean, _) = scoring.mean(net), scoring.mean(base)
    return {"rows": rows, "metrics": net_mean, "baselines": {scoring.baseline: base_mean}, "names": scoring.names,
            "baseline_label": scoring.label, **({} if nan_blocks is None else {"nan_blocks": nan_blocks}),
            "time_ms": float(np.mean(times)), "peak_memory_mb": peak, "peak_memory_kind": kind, "images": len(rows)}


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], mean: Mapping[str, float] | None = None,
                 baseline: Mapping[str, float] | None = None, baseline_label: str = FusionScoring.label) -> str:
    """A plain-text table: one line per image, then the mean and the baseline's mean (bicubic, or EXP)."""
    base_row = f"{baseline_label} (mean)"
    width = max([len(base_row), *(len(str(r["name"])) for r in rows)])
    lines = [f"{'image':<{width}}" + "".join(f"{c:>11}" for c in columns)]
    for r in rows:
        lines.append(f"{r['name']:<{width}}" + "".join(f"{r.get(c, float('nan')):>11.4f}" for c in columns))
    for label, values in (("mean", mean), (base_row, baseline)):
        if values:
            lines.append(f"{label:<{width}}" + "".join(f"{values.get(c, float('nan')):>11.4f}" for c in columns))
    return "\n".join(lines)
