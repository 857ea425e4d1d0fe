"""Testing a trained network as a library call (the body of ``test_CSAKD.py``): :func:`evaluate_run` loads the
teacher or student weight file a resolved test configuration names, evaluates it on a split (``engine.evaluate``),
prints the per-image table and writes ``per_image.csv``, ``summary.json`` and the predictions into a results
folder that appears whole or not at all; test mode 3 counts both networks' complexity instead.
"""

from __future__ import annotations

import csv
import io
import os

import torch

from engine.deploy import compare_with_fp32, deployed_network, describe_change
from engine.evaluate import evaluate, format_table
from engine.inference import prepare
from engine.loaders import build_loader
from engine.pansharpening_metrics import describe_nan_blocks
from engine.run_folder import weight_path
from engine.runtime import check_precision, resolve_device
from models import build_model
from models.describe import build_from_checkpoint
from utils.complexity import complexity
from utils.cpu import describe as describe_cpu
from utils.fileio import atomic_write_json, atomic_write_text, staged_folder

ROLES = {1: "teacher", 2: "student"}


def complexity_report(cfg: dict) -> dict:
    """Complexity of teacher and student for the flag dict ``cfg``: {role: {params, params_all, macs, flops}}."""
    if cfg["image_size"] % cfg["scale"]:
        raise ValueError(f"--image_size {cfg['image_size']} is not a multiple of --scale {cfg['scale']}")
    lr = cfg["image_size"] // cfg["scale"]
    lr_shape, hr_shape = (cfg["bands"], lr, lr), (cfg["msi_bands"], cfg["image_size"], cfg["image_size"])
    report = {"lrhsi_shape": list(lr_shape), "hrmsi_shape": list(hr_shape)}
    for role in ("teacher", "student"):
        with torch.device("meta"):  # counting needs shapes only: skip allocating and initialising weights
            model = build_model(cfg, role)
        gt_shape = (cfg["bands"], *hr_shape[1:]) if getattr(model, "privileged", False) else None
        report[role] = complexity(model, lr_shape, hr_shape, gt_shape)
    return report


def format_complexity(report: dict) -> str:
    lines = [
        f"LR-HSI {tuple(report['lrhsi_shape'])}, HR-MSI {tuple(report['hrmsi_shape'])}, batch 1",
        f"{'network':<10}{'params (run)':>14}{'params (all)':>14}{'GMACs (conv)':>14}{'GFLOPs (all)':>14}",
    ]
    for role in ("teacher", "student"):
        c = report[role]
        lines.append(f"{role:<10}{c['params'] / 1e6:>13.3f}M{c['params_all'] / 1e6:>13.3f}M"
                     f"{c['macs'] / 1e9:>14.2f}{c['flops'] / 1e9:>14.2f}")
    return "\n".join(lines)


def load_network(cfg: dict, role: str, device: torch.device, given: frozenset[str] = frozenset()
                 ) -> tuple[torch.nn.Module, str, dict | None]:
    """The ``role`` network with its checkpoint loaded, built as the file describes it: this project's files
    carry their constructor arguments; official files are described by their keys and shapes
    (:func:`models.describe.network_from_file`). Flags in ``given`` that contradict the file are an error.
    ``cfg``'s ``bands`` and ``msi_bands`` are set to the file's (the data must fit the network). Returns (network,
    source description, the fingerprints of the run that trained it or None)."""
    path = cfg.get("checkpoint") or weight_path(cfg, role, "best")
    model, info = build_from_checkpoint(cfg, role, path, given)
    cfg["bands"], cfg["msi_bands"] = model.bands, model.msi_bands
    if model.scale != cfg["scale"]:
        raise ValueError(f"checkpoint {path}: the network takes scale={model.scale}, but --scale is {cfg['scale']}")
    return prepare(model.to(device)), f"{path} ({info['source']})", info.get("fingerprints")


def results_summary(role: str, cfg: dict, result: dict, source: str, fingerprints: dict | None = None) -> dict:
    """What ``summary.json`` holds: the tested network, split, metrics, baselines, timing, the host, the test
    configuration and ``fingerprints``, those of the run that trained the tested weights (``engine.fingerprint``;
    None for files without them)."""
    return {"model": role, "checkpoint": source, "split": cfg["split"], "images": result["images"],
            "metrics": result["metrics"], "baselines": result["baselines"],
            **({"nan_blocks": result["nan_blocks"]} if "nan_blocks" in result else {}), "time_ms": result["time_ms"],
            "peak_memory_mb": result["peak_memory_mb"], "peak_memory_kind": result["peak_memory_kind"],
            "cpu": describe_cpu(), "config": {k: v for k, v in cfg.items()}, **result.get("deploy", {}),
            "fingerprints": fingerprints}


def write_results(folder: str, result: dict, summary: dict) -> None:
    """``per_image.csv`` and ``summary.json`` (atomically) in ``folder``."""
    rows = result["rows"]
    columns = list(rows[0])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(os.path.join(folder, "per_image.csv"), buf.getvalue())
    atomic_write_json(os.path.join(folder, "summary.json"), summary)


def evaluate_and_report(cfg: dict, model: torch.nn.Module, role: str, source: str, device: torch.device,
                        folder: str | None, compare=None, fingerprints: dict | None = None) -> dict:
    """Evaluate ``model`` on the configured split, print the table, write the results into ``folder`` and return
    the summary (:func:`results_summary`).
    ``compare(metrics, loader) -> dict``: the backend/precision record (``engine.deploy.compare_with_fp32``)."""
    loader = build_loader(cfg, cfg["split"], cfg["batch_size"])
    pred_dir = os.path.join(folder, "pred") if folder else None
    result = evaluate(model, loader, cfg, device, metrics=cfg.get("metrics"), pred_dir=pred_dir)
    cfg = {**cfg, "metrics": result["names"]}  # the default (None): all of the data's, recorded as such
    if compare is not None:
        result["deploy"] = compare(result["metrics"], loader)
    print(f"{role} from {source}, {result['images']} {cfg['split']} images")
    print(format_table(result["rows"], result["names"], result["metrics"], *result["baselines"].values(),
                       baseline_label=result["baseline_label"]))
    nan_line = describe_nan_blocks(result.get("nan_blocks", {}), f"the {role}")
    if nan_line:
        print(nan_line)
    print(f"time {result['time_ms']:.2f} ms/image (after {cfg['warmup']} warm-up forwards, synchronised), "
          f"peak memory {result['peak_memory_mb']:.0f} MB ({result['peak_memory_kind']})")
    if "deploy" in result:
        print(describe_change(result["deploy"]))
    summary = results_summary(role, cfg, result, source, fingerprints)
    if folder:
        write_results(folder, result, summary)
    return summary


def evaluate_run(cfg: dict, given: frozenset[str] | set[str] = frozenset()) -> dict:
    """Test one network as the resolved test configuration ``cfg`` says (``engine.flags.resolve_test_config`` or
    the flags of ``test_CSAKD.py``), print its table and, with ``cfg["results"]``, write the results folder.

    Args:
        cfg: keyed by the test flags: ``test_mode`` 1 (teacher) or 2 (student) evaluates ``checkpoint`` (default
            ``<checkpoint_dir>/<prefix>/<role>/best.pth``) on ``split``; 3 counts both networks' complexity.
        given: the flags set explicitly (checked against the checkpoint's network).

    Returns:
        test modes 1, 2: the summary (what ``summary.json`` holds, :func:`write_results`); 3: the complexity report.

    Raises:
        ValueError / FileNotFoundError (one line) for bad flags, data or checkpoints, ``utils.fileio.WriteError``
        for OS faults while writing, ``utils.interrupts.Interrupted`` after SIGINT / SIGTERM (a ``results`` folder
        is only ever written whole).
    """
    if cfg["test_mode"] == 3:
        report = complexity_report(cfg)
        print(format_complexity(report))
        if cfg.get("json"):
            atomic_write_json(cfg["json"], report)
        return report
    role = ROLES[cfg["test_mode"]]
    device = resolve_device(cfg["device"])
    check_precision(cfg, device)
    torch.manual_seed(cfg["seed"])

    trained_by: dict[str, dict | None] = {}  # the fingerprints of the first file loaded: the tested weights

    def load_torch(path: str | None) -> tuple[torch.nn.Module, str]:
        model, source, prints = load_network({**cfg, "checkpoint": path} if path else cfg, role, device, given)
        trained_by.setdefault("fingerprints", prints)
        return model, source

    model, source, precision = deployed_network(cfg, role, load_torch)

    def compare(metrics: dict, loader) -> dict:
        return compare_with_fp32(cfg, model, precision, metrics, load_torch, loader, device)

    prints = trained_by.get("fingerprints")
    if not cfg.get("results"):
        return evaluate_and_report(cfg, model, role, source, device, None, compare, prints)
    # Locked, checked and created first: a folder in use, holding other files or unwritable fails before evaluating.
    with staged_folder(cfg["results"], f"--results {cfg['results']}", "test_CSAKD.py") as stage:
        summary = evaluate_and_report(cfg, model, role, source, device, stage, compare, prints)
    print(f"results in {cfg['results']}")
    return summary


__all__ = ["ROLES", "complexity_report", "evaluate_run", "format_complexity", "load_network", "results_summary",
           "write_results"]
