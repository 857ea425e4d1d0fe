"""Evaluation over a loader: network predictions (whole or tiled), the bicubic baseline, per-image metrics,
timing with warm-up and device synchronisation, peak memory, and ``.mat`` predictions.

Metrics follow ``utils.metrics`` (per image, then the mean over images; conventions there). The bicubic
baseline is the LR-HSI upsampled ×scale (bicubic, align_corners=False) and scored exactly like a network.
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

from utils.fileio import atomic_write
from utils.metrics import evaluate_batch, mean_metrics, to_unit_range
from utils.tiling import tiled_forward

from .noise import awgn
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
            raise ValueError("the privileged PSD teacher is fed the ground truth at its stage-2 input, and these "
                             "images have none (a full-resolution split, --resolution full): test the student "
                             "(--test_mode 2) there, the teacher on --resolution reduced")
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


def save_prediction(path: str | os.PathLike, pred: torch.Tensor, maxv: float, minv: float,
                    raw_units: bool = False) -> None:
    """Write one prediction to a MATLAB file, key ``pred``, (H, W, C) float32, atomically.

    ``pred`` (C, H, W) is in the network's [-1, 1] domain; it is saved in the [0, 1]-normalised scale
    (v/2 + 0.5, not clipped, as official), or with ``raw_units`` de-normalised with the GT's max/min
    (v·(maxv − minv) + minv, radiance for AVIRIS).
    """
    img = to_unit_range(pred.detach().float().cpu()).numpy().transpose(1, 2, 0)
    if raw_units:
        img = img * (maxv - minv) + minv
    atomic_write(path, lambda f: savemat(f, {"pred": np.ascontiguousarray(img, dtype=np.float32)}))


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, cfg: dict, device: torch.device,
             metrics: Iterable[str] | None = None, pred_dir: str | None = None) -> dict[str, Any]:
    """Test one network on every image of ``loader``.

    Uses ``cfg`` keys ``scale``, ``compat``, ``tile``, ``tile_overlap`` (LR pixels), ``warmup``, ``amp``,
    ``snr`` (test-time AWGN on the LR-HSI, seeded by ``seed``; 0 = none), ``raw_units``.

    Returns:
        {"rows": [{"name", <metric>..., "bicubic_<metric>"..., "time_ms"}],
         "metrics": mean per metric, "baselines": {"bicubic": mean per metric},
         "time_ms": mean forward time per image (after warm-up, device synchronised),
         "peak_memory_mb", "peak_memory_kind", "images"}
    """
    metrics = list(metrics) if metrics is not None else None
    model.eval()
    tile, overlap, amp = int(cfg.get("tile") or 0), int(cfg.get("tile_overlap") or 0), cfg.get("amp", "off")
    noise = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rows, times, used_names = [], [], set()
    warm = int(cfg.get("warmup", 0))
    for batch in loader:
        lr, msi = batch["lrhsi"].to(device), batch["hrmsi"].to(device)
        gt = batch["gt"].to(device)
        lr_in = awgn(lr, float(cfg.get("snr") or 0), noise)
        for _ in range(warm):  # warm-up on the first batch: allocator, kernels, autotuning
            predict(model, lr_in, msi, tile, overlap, amp, gt)
        warm = 0
        synchronize(device)
        start = time.perf_counter()
        pred = predict(model, lr_in, msi, tile, overlap, amp, gt)
        synchronize(device)
        per_image_ms = (time.perf_counter() - start) * 1000 / len(gt)
        scored = evaluate_batch(pred, gt, batch["maxv"], batch["minv"], scale=cfg["scale"],
                                compat=cfg.get("compat"), metrics=metrics)
        base = evaluate_batch(bicubic(lr, cfg["scale"]), gt, batch["maxv"], batch["minv"], scale=cfg["scale"],
                              compat=cfg.get("compat"), metrics=metrics)
        for j, name in enumerate(batch["name"]):
            row = {"name": name, **scored[j], **{f"bicubic_{k}": v for k, v in base[j].items()},
                   "time_ms": per_image_ms}
            rows.append(row)
            times.append(per_image_ms)
            if pred_dir is not None:
                stem = os.path.basename(name)
                if stem in used_names:  # different folders, same scene name: keep both
                    stem = name.replace("/", "_").replace(os.sep, "_")
                used_names.add(stem)
                save_prediction(os.path.join(pred_dir, stem + ".mat"), pred[j], float(batch["maxv"][j]),
                                float(batch["minv"][j]), raw_units=bool(cfg.get("raw_units")))
    if not rows:
        raise ValueError("evaluate: the loader yielded no images")
    peak, kind = _peak_memory_mb(device)
    net = [{k: v for k, v in r.items() if k != "name" and not k.startswith("bicubic_") and k != "time_ms"}
           for r in rows]
    base = [{k[len("bicubic_"):]: v for k, v in r.items() if k.startswith("bicubic_")} for r in rows]
    return {"rows": rows, "metrics": mean_metrics(net), "baselines": {"bicubic": mean_metrics(base)},
            "time_ms": float(np.mean(times)), "peak_memory_mb": peak, "peak_memory_kind": kind, "images": len(rows)}


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], mean: Mapping[str, float] | None = None,
                 baseline: Mapping[str, float] | None = None) -> str:
    """A plain-text table: one line per image, then the mean and the bicubic mean."""
    width = max([len("bicubic (mean)"), *(len(str(r["name"])) for r in rows)])
    lines = [f"{'image':<{width}}" + "".join(f"{c:>11}" for c in columns)]
    for r in rows:
        lines.append(f"{r['name']:<{width}}" + "".join(f"{r.get(c, float('nan')):>11.4f}" for c in columns))
    for label, values in (("mean", mean), ("bicubic (mean)", baseline)):
        if values:
            lines.append(f"{label:<{width}}" + "".join(f"{values.get(c, float('nan')):>11.4f}" for c in columns))
    return "\n".join(lines)
