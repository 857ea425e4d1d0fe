"""Evaluate a CSAKD network, or count the networks' complexity.

    python test_CSAKD.py --config configs/quickstart.yaml --test_mode 2 --results results/quickstart
    python test_CSAKD.py --test_mode 1 --checkpoint teacher_checkpoint/KD_QRCODE_band4/best.pth --compat official \\
        --root ../../Fusion_data --test_file ./data/test.txt
    python test_CSAKD.py --test_mode 3 [--msi_bands 6] [--json results/complexity.json]

``--test_mode`` 1 tests the teacher, 2 the student (default), 3 prints parameters and operations of both
at the configured shapes (no dataset or checkpoint needed). The checkpoint is ``--checkpoint`` (this
project's weight file or an official ``.pth``), by default ``<checkpoint_dir>/<prefix>/<role>/best.pth``.
Prints a per-image metrics table and the mean next to the bicubic baseline; ``--results DIR`` writes
``per_image.csv``, ``summary.json`` and the predictions ``pred/<name>.mat``.
"""

from __future__ import annotations

import csv
import io
import os
import sys

import torch

from engine.deploy import compare_with_fp32, deployed_network
from engine.evaluate import evaluate, format_table
from engine.loaders import build_loader
from engine.train import resolve_device, weight_path
from models import build_model
from utils.checkpoint import load_weights, read_checkpoint
from utils.complexity import complexity
from utils.config import build_test_parser, build_train_parser, parse_config, resolve_config
from utils.fileio import atomic_write_json, atomic_write_text
from utils.inference import prepare

ROLES = {1: "teacher", 2: "student"}


def build_parser():
    return build_test_parser()


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
        report[role] = complexity(model, lr_shape, hr_shape)
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


def load_network(cfg: dict, role: str, device: torch.device) -> tuple[torch.nn.Module, str]:
    """The ``role`` network with its checkpoint loaded. This project's files rebuild the network they were
    saved from (their constructor arguments travel with the weights); official files are loaded into the
    network the flags describe, and any key or shape mismatch is listed."""
    path = cfg.get("checkpoint") or weight_path(cfg, role, "best")
    ckpt = read_checkpoint(path)
    if isinstance(ckpt.get("model"), dict) and ckpt["model"]:
        saved = ckpt["model"]
        if saved.get("role") not in (None, role):
            raise ValueError(f"checkpoint {path}: holds a {saved['role']} network, but --test_mode "
                             f"{'1' if role == 'teacher' else '2'} tests the {role}")
        model = build_model({**cfg, **{k: v for k, v in saved.items() if k != "role"}}, role)
    else:
        model = build_model(cfg, role)
    info = load_weights(model, path)
    for key in ("bands", "msi_bands", "scale"):
        if getattr(model, key) != cfg[key]:
            raise ValueError(f"checkpoint {path}: the network takes {key}={getattr(model, key)}, but --{key} is "
                             f"{cfg[key]} (the data would not fit it)")
    return prepare(model.to(device)), f"{path} ({info['source']})"


def write_results(folder: str, role: str, cfg: dict, result: dict, source: str) -> None:
    """``per_image.csv`` and ``summary.json`` (atomically) in ``folder``."""
    rows = result["rows"]
    columns = list(rows[0])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(os.path.join(folder, "per_image.csv"), buf.getvalue())
    summary = {"model": role, "checkpoint": source, "split": cfg["split"], "images": result["images"],
               "metrics": result["metrics"], "baselines": result["baselines"], "time_ms": result["time_ms"],
               "peak_memory_mb": result["peak_memory_mb"], "peak_memory_kind": result["peak_memory_kind"],
               "config": {k: v for k, v in cfg.items()}, **result.get("deploy", {})}
    atomic_write_json(os.path.join(folder, "summary.json"), summary)


def run(cfg: dict) -> int:
    if cfg["test_mode"] == 3:
        report = complexity_report(cfg)
        print(format_complexity(report))
        if cfg["json"]:
            atomic_write_json(cfg["json"], report)
        return 0
    role = ROLES[cfg["test_mode"]]
    device = resolve_device(cfg["device"])
    torch.manual_seed(cfg["seed"])

    def load_torch(path: str | None) -> tuple[torch.nn.Module, str]:
        return load_network({**cfg, "checkpoint": path} if path else cfg, role, device)

    model, source, precision = deployed_network(cfg, role, load_torch)
    loader = build_loader(cfg, cfg["split"], cfg["batch_size"])
    pred_dir = os.path.join(cfg["results"], "pred") if cfg.get("results") else None
    result = evaluate(model, loader, cfg, device, metrics=cfg["metrics"], pred_dir=pred_dir)
    result["deploy"] = compare_with_fp32(cfg, model, precision, result["metrics"], load_torch, loader, device)
    print(f"{role} from {source}, {result['images']} {cfg['split']} images")
    print(format_table(result["rows"], cfg["metrics"], result["metrics"], result["baselines"]["bicubic"]))
    print(f"time {result['time_ms']:.2f} ms/image (after {cfg['warmup']} warm-up forwards, synchronised), "
          f"peak memory {result['peak_memory_mb']:.0f} MB ({result['peak_memory_kind']})")
    if result["deploy"]["change_vs_fp32"] is not None:
        change = ", ".join(f"{k} {v:+.4f}" for k, v in result["deploy"]["change_vs_fp32"].items())
        print(f"{cfg['backend']} {precision} against fp32 on the same images: {change}")
    elif precision != "fp32":
        print(f"no fp32 network to compare the {precision} one with (give --reference)")
    if cfg.get("results"):
        write_results(cfg["results"], role, cfg, result, source)
        print(f"results in {cfg['results']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = resolve_config(parse_config(build_test_parser(), argv, other=build_train_parser()))
        return run(cfg)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
