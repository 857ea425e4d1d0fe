"""``python -m benchmarks.deploy``: the student per backend and precision, and the bf16 co-training step.

Parts (``--what``, default all):

- ``latency``: batch-1 student latency (min / median / max) at HR ``--image_size`` for each configuration
  (paper; each ``--config``, default the quick start), random weights and inputs, per variant: PyTorch fp32
  (``engine.inference.prepare``, the fast path), PyTorch bf16 autocast, PyTorch bf16 weights
  (``engine.deploy.to_bf16``), onnxruntime fp32 and int8 (``engine.deploy``; int8 calibrated on ``--calib``
  synthetic training patches of the configuration). Each variant's output is compared with the fp32 output
  (max |Δ| and PSNR over the [-1, 1] range).
- ``accuracy``: with ``--checkpoint`` (a trained student, e.g. the quick start's), the test-set metrics of every
  variant on the checkpoint's own test split, and their change against fp32 on the same images.
- ``train``: one co-training step (``engine.cotrainer.CoTrainer.step``) with ``--amp bf16`` beside fp32: time, peak
  memory (child process RSS), first-step losses and their difference.

On a CPU without native bf16 (``utils.cpu``) the PyTorch bf16 rows are skipped with a note in the report (bf16
would be emulated, slower than fp32), unless ``--allow_emulated_precision``. The report's ``machine`` line names
the CPU, its capability and whether bf16/fp16 are native.

Example (docs/deployment.md)::

    python -m benchmarks.deploy --threads 1 --checkpoint checkpoints/quickstart/student/best.pth \
        --json results/deploy.json

Timings on a machine shared with other work are noisy; the median over ``--repeats`` is reported.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import torch

from engine.inference import prepare
from utils import cpu
from utils.fileio import atomic_write_json

from .measure import machine_description, time_calls
from .run import load_configs
from .suite import make_inputs, make_model, model_config, psnr_db, run_in_child, train_step

PARTS = ("latency", "accuracy", "train")
VARIANTS = ("torch fp32", "torch bf16 autocast", "torch bf16 weights", "onnxruntime fp32", "onnxruntime int8")
BF16_VARIANTS = ("torch bf16 autocast", "torch bf16 weights")  # PyTorch computing in bf16 on the CPU


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.deploy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run (default: all)")
    p.add_argument("--config", nargs="*", default=None,
                   help="YAML configs benchmarked besides the paper's (default: configs/quickstart.yaml)")
    p.add_argument("--no_paper", action="store_true", help="leave out the paper configuration")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), metavar="VARIANT",
                   help=f"latency variants (default all: {', '.join(VARIANTS)})")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="CPU threads of PyTorch and onnxruntime (pinned)")
    p.add_argument("--image_size", type=int, default=256, help="HR side of the latency inputs (LR = /scale)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per latency (after --warmup)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    p.add_argument("--calib", type=int, default=16, help="int8 calibration patches")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo", help="ONNX exporter")
    p.add_argument("--checkpoint", default=None, help="trained student for the accuracy part")
    p.add_argument("--train_batch", type=int, default=2, help="co-training step batch")
    p.add_argument("--train_crop", type=int, default=64, help="co-training step HR crop side")
    p.add_argument("--train_steps", type=int, default=3, help="timed co-training steps (after one untimed)")
    p.add_argument("--json", default=None, help="also write all figures to this JSON file (atomically)")
    p.add_argument("--allow_emulated_precision", action="store_true",
                   help="keep the PyTorch bf16 rows on a CPU without native bf16 (skipped by default: emulated)")
    return p


def bf16_rows(allow: bool) -> tuple[bool, str | None]:
    """Whether the PyTorch bf16 rows run on this CPU, and the report's note when they do not."""
    reason = None if allow else cpu.emulated("bf16")
    return reason is None, (f"PyTorch bf16 rows skipped: {reason}; {cpu.OVERRIDE_FLAG} runs them" if reason else None)


def synthetic_data_cfg(cfg: dict, image_size: int, scenes: int) -> dict:
    """A synthetic-scene data configuration with ``cfg``'s bands, MSI bands and scale (calibration data)."""
    m = model_config(cfg)
    return {"dataset": "synthetic", "bands": m["bands"], "msi_bands": m["msi_bands"], "scale": m["scale"],
            "image_size": image_size, "crop_size": image_size // 2, "synthetic_scenes": [scenes, 1, 1], "seed": 1029}


def deploy_variants(model: torch.nn.Module, names: list[str], folder: str, calib: list[dict], exporter: str,
                    checkpoint: str | None = None) -> dict[str, Callable]:
    """The networks of ``names`` built from ``model`` (PyTorch, fp32): callables ``(lrhsi, hrmsi) -> outputs``."""
    from engine.deploy import OnnxNetwork, export_onnx, quantize_int8, to_bf16

    fast = prepare(copy.deepcopy(model))
    nets: dict[str, Callable] = {}
    if "torch fp32" in names:
        nets["torch fp32"] = fast
    if "torch bf16 autocast" in names:
        def autocast_bf16(lr: torch.Tensor, msi: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fast(lr, msi)[0].float(), None
        nets["torch bf16 autocast"] = autocast_bf16
    if "torch bf16 weights" in names:
        nets["torch bf16 weights"] = to_bf16(prepare(copy.deepcopy(model)))
    onnx_fp32 = os.path.join(folder, "fp32.onnx")
    if any(n.startswith("onnxruntime") for n in names):
        export_onnx(model, onnx_fp32, checkpoint=checkpoint, exporter=exporter)
    if "onnxruntime fp32" in names:
        nets["onnxruntime fp32"] = OnnxNetwork(onnx_fp32)
    if "onnxruntime int8" in names:
        quantize_int8(onnx_fp32, os.path.join(folder, "int8.onnx"), calib)
        nets["onnxruntime int8"] = OnnxNetwork(os.path.join(folder, "int8.onnx"))
    return nets


def bench_latency(cfg: dict, names: list[str], image_size: int, repeats: int, warmup: int, calib: int,
                  exporter: str) -> list[dict]:
    """Per variant: latency of the student at batch 1 and its output's difference from PyTorch fp32."""
    from engine.deploy import calibration_patches

    model = make_model(cfg, "student", torch.device("cpu")).eval()
    x = make_inputs(cfg, 1, image_size, torch.device("cpu"))
    patches = calibration_patches(synthetic_data_cfg(cfg, image_size, max(1, min(calib, 8))), calib)
    rows = []
    with tempfile.TemporaryDirectory(prefix="csakd-deploy-") as folder, torch.inference_mode():
        nets = deploy_variants(model, names, folder, patches, exporter)
        reference = None
        for name, net in nets.items():
            out = net(x["lrhsi"], x["hrmsi"])[0].float()
            reference = out if reference is None else reference
            timing = time_calls(lambda net=net: net(x["lrhsi"], x["hrmsi"]), torch.device("cpu"), repeats, warmup)
            rows.append({"config": cfg["name"], "variant": name, "image_size": image_size, **timing,
                         "max_abs_diff_vs_fp32": (out - reference).abs().max().item(),
                         "psnr_vs_fp32_db": psnr_db(out, reference)})
    base = next((r["median"] for r in rows if r["variant"] == "torch fp32"), None)
    for r in rows:
        r["speedup_vs_torch_fp32"] = base / r["median"] if base else None
    return rows


def bench_accuracy(checkpoint: str, names: list[str], calib: int, exporter: str) -> list[dict]:
    """Test-set metrics of each variant of a trained student on its own test split, and the change vs fp32."""
    from engine.deploy import calibration_patches
    from engine.evaluate import evaluate
    from engine.loaders import build_loader
    from models import build_model
    from utils.checkpoint import load_weights, read_checkpoint

    ckpt = read_checkpoint(checkpoint)
    cfg = {**ckpt["config"], "warmup": 0, "snr": 0, "tile": 0, "workers": 0}
    model = build_model({**cfg, **{k: v for k, v in ckpt["model"].items() if k != "role"}}, "student")
    load_weights(model, checkpoint)
    loader = build_loader(cfg, "test", 1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="csakd-deploy-") as folder:
        nets = deploy_variants(model.eval(), names, folder, calibration_patches(cfg, calib), exporter, checkpoint)
        for name, net in nets.items():
            if name == "torch bf16 autocast":
                result = evaluate(nets["torch fp32"], loader, {**cfg, "amp": "bf16"}, torch.device("cpu"))
            else:
                result = evaluate(net, loader, {**cfg, "amp": "off"}, torch.device("cpu"))
            rows.append({"variant": name, "images": result["images"], "metrics": result["metrics"]})
    fp32 = rows[0]["metrics"]
    for r in rows:
        r["delta_vs_fp32"] = {k: v - fp32[k] for k, v in r["metrics"].items()}
    return rows


def bench_train_amp(cfg: dict, batch: int, crop: int, steps: int, threads: int, bf16: bool = True) -> list[dict]:
    """The co-training step in fp32 and (``bf16``) with bf16 autocast, each in a child process (peak RSS)."""
    rows = []
    for amp in ("off", "bf16") if bf16 else ("off",):
        result = run_in_child(train_step, threads, cfg=cfg, variant="fast", batch_size=batch, crop=crop,
                              steps=steps, device="cpu", amp=amp)
        rows.append({"config": cfg["name"], "amp": amp, **result, "peak_mib": result["peak_rss_mib"]})
    for r in rows:
        r["teacher_loss_diff"] = r["teacher_loss"] - rows[0]["teacher_loss"]
        r["student_loss_diff"] = r["student_loss"] - rows[0]["student_loss"]
    return rows


def format_report(report: dict) -> str:
    from .run import _table

    out = [f"machine: {report['machine']}", *(f"note: {n}" for n in report.get("notes", []))]
    if "latency" in report:
        rows = [[r["config"], r["variant"], f"{r['min']:.3f} / {r['median']:.3f} / {r['max']:.3f}",
                 f"{r['speedup_vs_torch_fp32']:.2f}×", f"{r['max_abs_diff_vs_fp32']:.1e}",
                 f"{r['psnr_vs_fp32_db']:.1f}"] for r in report["latency"]]
        out += ["", f"student latency, batch 1, HR {report['latency'][0]['image_size']}² (s: min / median / max)",
                _table(["config", "variant", "latency", "speed-up (median)", "max |Δ| vs fp32", "PSNR vs fp32 dB"],
                       rows)]
    if "accuracy" in report:
        keys = ("psnr", "sam", "ssim")
        rows = [[r["variant"], *(f"{r['metrics'][k]:.3f}" for k in keys),
                 *(f"{r['delta_vs_fp32'][k]:+.3f}" for k in keys)] for r in report["accuracy"]]
        out += ["", f"test set of {report['checkpoint']} ({report['accuracy'][0]['images']} images)",
                _table(["variant", "PSNR dB", "SAM °", "SSIM", "ΔPSNR", "ΔSAM", "ΔSSIM"], rows)]
    if "train" in report:
        rows = [[r["config"], r["amp"], f"{r['batch_size']}×{r['crop']}²",
                 f"{r['min']:.3f} / {r['median']:.3f} / {r['max']:.3f}", f"{r['peak_mib']:.0f}",
                 f"{r['teacher_loss']:.5f} / {r['student_loss']:.5f}",
                 f"{r['teacher_loss_diff']:+.1e} / {r['student_loss_diff']:+.1e}"] for r in report["train"]]
        out += ["", "co-training step, seconds: min / median / max",
                _table(["config", "amp", "batch", "time s", "peak MiB", "loss T / S (1st step)", "Δ vs fp32"], rows)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    configs = load_configs(args)
    bf16, note = bf16_rows(args.allow_emulated_precision)
    variants = [v for v in args.variants if bf16 or v not in BF16_VARIANTS]
    report: dict[str, Any] = {"machine": machine_description(torch.device("cpu"), args.threads), "args": vars(args),
                              "notes": [note] if note else []}
    if "train" in args.what:
        report["train"] = bench_train_amp(configs[-1], args.train_batch, args.train_crop, args.train_steps,
                                          args.threads, bf16)
    if "latency" in args.what and variants:
        report["latency"] = [row for cfg in configs for row in bench_latency(
            cfg, variants, args.image_size, args.repeats, args.warmup, args.calib, args.exporter)]
    if "accuracy" in args.what and args.checkpoint and variants:
        report["checkpoint"] = args.checkpoint
        report["accuracy"] = bench_accuracy(args.checkpoint, variants, args.calib, args.exporter)
    print(format_report(report))
    if args.json:
        atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
