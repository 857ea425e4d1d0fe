"""Evaluate a CSAKD network, or count the networks' complexity.

    python test_CSAKD.py --config configs/quickstart.yaml --test_mode 2 --results results/quickstart
    python test_CSAKD.py --test_mode 1 --checkpoint teacher_checkpoint/KD_QRCODE_band4/best.pth --compat official \\
        --root ../../Fusion_data --test_file configs/splits/aviris/test.txt
    python test_CSAKD.py --test_mode 3 [--msi_bands 6] [--json results/complexity.json]
    python test_CSAKD.py --score FUSED --reference REF --sensor WV3 [--dim_cut 21] [--json OUT]

``--test_mode`` 1 tests the teacher, 2 the student (default), 3 prints parameters and operations of both
at the configured shapes (no dataset or checkpoint needed; ``--arch psd`` / ``--hkd_heads K`` for the related
methods' networks). A privileged network (the PSD teacher) is given the test GT as its stage-2 input
(``engine.evaluate.predict``): its scores measure a GT-fed network, not a fusion method. The checkpoint is
``--checkpoint`` (this project's weight file or an official ``.pth``), by default
``<checkpoint_dir>/<prefix>/<role>/best.pth``. Prints a per-image metrics table and the mean next to the
bicubic baseline; ``--results DIR`` writes ``per_image.csv``, ``summary.json`` and the predictions
``pred/<name>.mat``. The folder is built whole beside ``DIR`` and then swapped in
(``utils.fileio.staged_folder``): it always holds one evaluation's outputs, never a mix with an earlier one,
and a failed run leaves the earlier results as they were. A ``DIR`` holding anything else than these outputs
is refused rather than replaced.

``--score`` scores pansharpened images made by anything against a PanCollection file with the toolbox metrics, no
network involved (``engine.score``; its own flags, ``--score X --help``; docs/pansharpening.md).
"""

from __future__ import annotations

import csv
import io
import os
import sys

from utils.interrupts import Interrupted, StartingUp, StopAtOnce

with StartingUp("test_CSAKD.py"):  # Ctrl-C while torch is imported: one line, not a traceback
    import torch

    from engine.deploy import compare_with_fp32, deployed_network, describe_change
    from engine.evaluate import evaluate, format_table
    from engine.flags import build_test_parser, build_train_parser, resolve_config
    from engine.loaders import build_loader
    from engine.run_folder import weight_path
    from engine.runtime import check_precision, resolve_device
    from engine.score import run_score
    from models import build_model
    from models.describe import build_from_checkpoint
    from utils.complexity import complexity
    from utils.config import explicit_keys, load_plugins, parse_config
    from utils.cpu import describe as describe_cpu
    from utils.fileio import WriteError, atomic_write_json, atomic_write_text, staged_folder
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
                 ) -> tuple[torch.nn.Module, str]:
    """The ``role`` network with its checkpoint loaded, built as the file describes it: this project's files
    carry their constructor arguments; official files are described by their keys and shapes
    (:func:`models.describe.infer_model_config`). Flags in ``given`` that contradict the file are an error.
    ``cfg``'s ``bands`` and ``msi_bands`` are set to the file's (the data must fit the network)."""
    path = cfg.get("checkpoint") or weight_path(cfg, role, "best")
    model, info = build_from_checkpoint(cfg, role, path, given)
    cfg["bands"], cfg["msi_bands"] = model.bands, model.msi_bands
    if model.scale != cfg["scale"]:
        raise ValueError(f"checkpoint {path}: the network takes scale={model.scale}, but --scale is {cfg['scale']}")
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
               "cpu": describe_cpu(), "config": {k: v for k, v in cfg.items()}, **result.get("deploy", {})}
    atomic_write_json(os.path.join(folder, "summary.json"), summary)


def evaluate_and_report(cfg: dict, model: torch.nn.Module, role: str, source: str, device: torch.device,
                        folder: str | None, compare=None) -> None:
    """Evaluate ``model`` on the configured split, print the table, and write the results into ``folder``.
    ``compare(metrics, loader) -> dict``: the backend/precision record (``engine.deploy.compare_with_fp32``)."""
    loader = build_loader(cfg, cfg["split"], cfg["batch_size"])
    pred_dir = os.path.join(folder, "pred") if folder else None
    result = evaluate(model, loader, cfg, device, metrics=cfg["metrics"], pred_dir=pred_dir)
    if compare is not None:
        result["deploy"] = compare(result["metrics"], loader)
    print(f"{role} from {source}, {result['images']} {cfg['split']} images")
    print(format_table(result["rows"], cfg["metrics"], result["metrics"], result["baselines"]["bicubic"]))
    print(f"time {result['time_ms']:.2f} ms/image (after {cfg['warmup']} warm-up forwards, synchronised), "
          f"peak memory {result['peak_memory_mb']:.0f} MB ({result['peak_memory_kind']})")
    if "deploy" in result:
        print(describe_change(result["deploy"]))
    if folder:
        write_results(folder, role, cfg, result, source)


def run(cfg: dict, given: frozenset[str] = frozenset()) -> int:
    """Run ``cfg``; ``given``: the flags set explicitly (checked against the checkpoint's network)."""
    if cfg["test_mode"] == 3:
        report = complexity_report(cfg)
        print(format_complexity(report))
        if cfg["json"]:
            atomic_write_json(cfg["json"], report)
        return 0
    role = ROLES[cfg["test_mode"]]
    device = resolve_device(cfg["device"])
    check_precision(cfg, device)
    torch.manual_seed(cfg["seed"])

    def load_torch(path: str | None) -> tuple[torch.nn.Module, str]:
        return load_network({**cfg, "checkpoint": path} if path else cfg, role, device, given)

    model, source, precision = deployed_network(cfg, role, load_torch)

    def compare(metrics: dict, loader) -> dict:
        return compare_with_fp32(cfg, model, precision, metrics, load_torch, loader, device)

    if not cfg.get("results"):
        evaluate_and_report(cfg, model, role, source, device, None, compare)
        return 0
    # Locked, checked and created first: a folder in use, holding other files or unwritable fails before evaluating.
    with staged_folder(cfg["results"], f"--results {cfg['results']}", "test_CSAKD.py") as stage:
        evaluate_and_report(cfg, model, role, source, device, stage, compare)
    print(f"results in {cfg['results']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done; 2 bad input or an OS fault (one line); 130 / 143 stopped by SIGINT / SIGTERM (one
    line; a --results folder is only ever written whole)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        with StopAtOnce("no results were written (a --results folder appears whole or not at all)"):
            if "--score" in argv or any(a.startswith("--score=") for a in argv):
                return run_score(argv)
            load_plugins(argv)
            cfg = resolve_config(parse_config(build_test_parser(), argv, other=build_train_parser()))
            return run(cfg, frozenset(explicit_keys(build_test_parser(), argv)))
    except (ValueError, FileNotFoundError, WriteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
