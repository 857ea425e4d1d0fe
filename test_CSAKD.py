"""Evaluate CSAKD networks.

``--test_mode 3`` prints parameters and operations of the teacher and the student at the
configured shapes (no dataset or checkpoint needed)::

    python test_CSAKD.py --test_mode 3 [--msi_bands 6] [--json results/complexity.json]
"""

from __future__ import annotations

import argparse
import sys

import torch

from models import build_model
from utils.complexity import complexity
from utils.config import add_model_args, resolve_model_config
from utils.fileio import atomic_write_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test_mode", type=int, choices=(3,), default=3,
                        help="3: complexity of teacher and student")
    parser.add_argument("--image_size", type=int, default=256, help="HR side (the LR-HSI side is image_size/scale)")
    parser.add_argument("--json", type=str, default=None, help="also write the figures to this JSON file")
    add_model_args(parser)
    return parser


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


def main(argv: list[str] | None = None) -> int:
    cfg = resolve_model_config(vars(build_parser().parse_args(argv)))
    try:
        report = complexity_report(cfg)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_complexity(report))
    if cfg["json"]:
        atomic_write_json(cfg["json"], report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
