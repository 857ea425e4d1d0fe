"""The measurements of ``python -m benchmarks.run``, one function per part; each returns a JSON-able dict.

Network configurations are plain dicts keyed by the flag names (``build_model``); ``"paper"`` is the
constructor defaults (172 bands, 4 MSI bands, nf 86, gc 43, CSA fusion, student 1441).

Two paths are compared throughout:

- reference: what the official code does at inference, operation for operation: NCHW tensors,
  ``torch.no_grad()``, dense blocks written with concatenations (``official_dense_blocks``);
- fast: ``engine.inference.prepare`` (channels-last weights, frozen parameters) under
  ``torch.inference_mode()``, dense blocks writing into one buffer (the models' default).

Achieved GFLOP/s = 2 × conv MACs (``utils.complexity``, the paper's convention) / latency: the attention
products, interpolations and element-wise work are done but not counted, so the figure slightly
understates the machine's work.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import time
from typing import Any

import torch

from engine.flags import keys_where
from engine.inference import FastPath, fast_path, prepare
from models import build_model
from models.family import NETWORK
from utils.complexity import complexity

from .measure import MIB, cuda_peak, official_dense_blocks, reset_peak_rss, run_in_child, synchronize, time_calls

PAPER: dict[str, Any] = {"name": "paper", "bands": 172, "msi_bands": 4, "num_base_chs": 86, "num_agg_feat": 43,
                         "adaptive_fuse": 3, "student_layers": "1441", "scale": 4, "compat": None}
#: The keys a network is built from: the shapes and the options of the network families.
MODEL_KEYS = ("bands", "msi_bands", "scale", *keys_where(group=NETWORK))


def model_config(cfg: dict) -> dict:
    """The network keys of a config dict (missing ones take the paper's values)."""
    return {**{k: v for k, v in PAPER.items() if k != "name"}, **{k: cfg[k] for k in MODEL_KEYS if k in cfg}}


def make_model(cfg: dict, role: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(model_config(cfg), role).to(device)


def make_inputs(cfg: dict, batch: int, hr: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """Uniform [-1, 1] LR-HSI (B, bands, hr/s, hr/s), HR-MSI and GT (B, ·, hr, hr)."""
    m = model_config(cfg)
    g = torch.Generator().manual_seed(seed)
    lr = hr // m["scale"]

    def u(*shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=g) * 2 - 1).to(device)

    return {"lrhsi": u(batch, m["bands"], lr, lr), "hrmsi": u(batch, m["msi_bands"], hr, hr),
            "gt": u(batch, m["bands"], hr, hr)}


# ---------------------------------------------------------------------------------------------------------------------
# networks: parameters, MACs, latency of the reference and the fast path


def bench_network(cfg: dict, role: str, device: torch.device, image_size: int, repeats: int,
                  warmup: int) -> dict[str, Any]:
    """One network at batch 1, HR ``image_size`` (LR image_size/scale): counts, latencies, accuracy."""
    model = make_model(cfg, role, device).eval()
    x = make_inputs(cfg, 1, image_size, device)
    counts = complexity(model, tuple(x["lrhsi"].shape), tuple(x["hrmsi"].shape))
    row: dict[str, Any] = {"config": cfg["name"], "network": role, "image_size": image_size,
                           "params": counts["params"], "macs": counts["macs"]}

    def record(path: str, timing: dict) -> None:
        row[path] = {**timing, "gflops": 2 * counts["macs"] / timing["min"] / 1e9}

    with torch.no_grad(), official_dense_blocks():
        reference = model(x["lrhsi"], x["hrmsi"])[0]
        record("reference", time_calls(lambda: model(x["lrhsi"], x["hrmsi"]), device, repeats, warmup))
    fast = prepare(copy.deepcopy(model))
    with torch.inference_mode():
        out = fast(x["lrhsi"], x["hrmsi"])[0]
        row["fast_max_abs_diff"] = (out - reference).abs().max().item()
        record("fast", time_calls(lambda: fast(x["lrhsi"], x["hrmsi"]), device, repeats, warmup))
        if device.type == "cuda":
            row["fast"]["peak_mib"] = cuda_peak(lambda: fast(x["lrhsi"], x["hrmsi"]), device)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                low = fast(x["lrhsi"], x["hrmsi"])[0].float()
                record("fast_bf16", time_calls(lambda: fast(x["lrhsi"], x["hrmsi"]), device, repeats, warmup))
                row["fast_bf16"]["peak_mib"] = cuda_peak(lambda: fast(x["lrhsi"], x["hrmsi"]), device)
            row["bf16_max_abs_diff"] = (low - reference).abs().max().item()
            row["bf16_psnr_vs_fp32_db"] = psnr_db(low, reference)
    return row


FAST_PATH_VARIANTS = {"channels-last + concatenations": FastPath(True, True),
                      "channels-last + one buffer": FastPath(True, False),
                      "NCHW + concatenations": FastPath(False, True),
                      "NCHW + one buffer": FastPath(False, False)}


def bench_fast_paths(cfg: dict, role: str, device: torch.device, image_size: int, repeats: int,
                     warmup: int) -> dict[str, Any]:
    """The candidates of :data:`engine.inference.FAST_PATHS` for one network at batch 1, HR ``image_size``:
    latency of each layout × dense-block form, its max |Δ| from the NCHW + concatenations output (the
    official form), the fastest one and what :func:`engine.inference.fast_path` picks on this CPU."""
    model = make_model(cfg, role, device).eval()
    x = make_inputs(cfg, 1, image_size, device)
    row: dict[str, Any] = {"config": cfg["name"], "network": role, "image_size": image_size,
                           "capability": torch.backends.cpu.get_cpu_capability(), "variants": {}}
    outputs = {}
    for name, path in FAST_PATH_VARIANTS.items():
        net = prepare(copy.deepcopy(model), channels_last=path.channels_last, concatenate=path.concatenate)
        with torch.inference_mode():
            outputs[name] = net(x["lrhsi"], x["hrmsi"])[0].contiguous()
            row["variants"][name] = time_calls(lambda n=net: n(x["lrhsi"], x["hrmsi"]), device, repeats, warmup)
    official = outputs["NCHW + concatenations"]
    for name, out in outputs.items():
        row["variants"][name]["max_abs_diff"] = (out - official).abs().max().item()
    row["fastest"] = min(row["variants"], key=lambda k: row["variants"][k]["min"])
    chosen = fast_path(device)
    row["chosen"] = next(k for k, v in FAST_PATH_VARIANTS.items() if v == chosen)
    return row


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of ``a`` against ``b`` over the [-1, 1] range (peak-to-peak 2)."""
    mse = (a.double() - b.double()).square().mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()


# ---------------------------------------------------------------------------------------------------------------------
# co-training step


def train_step(cfg: dict, variant: str, batch_size: int, crop: int, steps: int, device: str,
               amp: str = "off") -> dict[str, Any]:
    """Time ``steps`` co-training steps (after one untimed step that also allocates the optimiser state).

    variant: "reference" (concatenating dense blocks, NCHW), "fast" (one-buffer dense blocks, channels-last
    weights and batch) or "checkpoint" (fast plus ``set_grad_checkpoint(True)``). Runs in a child process
    (``run_in_child``) for the peak RSS on the CPU; on CUDA it reports the peak allocated memory.
    """
    from engine.cotrainer import CoTrainer

    dev = torch.device(device)
    fmt = torch.contiguous_format if variant == "reference" else torch.channels_last
    teacher = make_model(cfg, "teacher", dev).to(memory_format=fmt).train()
    student = make_model(cfg, "student", dev).to(memory_format=fmt).train()
    if variant == "checkpoint":
        teacher.set_grad_checkpoint(True)
        student.set_grad_checkpoint(True)
    batch = {k: v.contiguous(memory_format=fmt) for k, v in make_inputs(cfg, batch_size, crop, dev).items()}
    step_cfg = {"kd_mode": "online", "snr": 35.0, "amp": amp, "lr": 1e-4, "weight_decay": 0.0, "epochs": 1,
                "lr_scheduler": "cosine", "step_size": 1, "w_sam": 0.1, "w_beba": 0.1, "w_kd": 0.1, "w_feat": 0.1,
                "joint_loss": 1}  # amp: off | bf16 (``--amp``)
    cot = CoTrainer(step_cfg, student, teacher, device=dev)
    noise = torch.Generator().manual_seed(0)

    def step() -> dict:
        return cot.step(batch, noise)

    with official_dense_blocks() if variant == "reference" else contextlib.nullcontext():
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        stats = step()
        timing = time_calls(step, dev, repeats=steps, warmup=0)
    result = {"variant": variant, "batch_size": batch_size, "crop": crop, **timing,
              "teacher_loss": stats["teacher/loss"], "student_loss": stats["student/loss"]}
    if dev.type == "cuda":
        synchronize(dev)
        result["peak_mib"] = torch.cuda.max_memory_allocated(dev) / MIB
    return result


def bench_train(cfg: dict, variants: list[str], batch_size: int, crop: int, steps: int, device: torch.device,
                threads: int) -> list[dict]:
    """One child process per variant (CPU: its peak RSS is the step's peak memory)."""
    rows = []
    for variant in variants:
        kwargs = dict(cfg=cfg, variant=variant, batch_size=batch_size, crop=crop, steps=steps, device=str(device))
        result = run_in_child(train_step, threads, **kwargs) if device.type == "cpu" else train_step(**kwargs)
        if device.type == "cpu":
            result["peak_mib"] = result["peak_rss_mib"]
        rows.append({"config": cfg["name"], **result})
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# data loading


def _data_cfg(cfg: dict, image_size: int, crop: int, scenes: int) -> dict:
    m = model_config(cfg)
    return {"bands": m["bands"], "msi_bands": m["msi_bands"], "scale": m["scale"], "image_size": image_size,
            "crop_size": crop, "synthetic_scenes": [scenes, 1, 1], "seed": 1029}


def _samples_per_s(dataset, samples: int) -> float:
    start = time.perf_counter()
    for i in range(samples):
        dataset[i % len(dataset)]
    return samples / (time.perf_counter() - start)


def bench_data(cfg: dict, image_size: int, crop: int, scenes: int, samples: int) -> list[dict]:
    """Training samples per second (one process, no DataLoader workers) of the synthetic dataset (first pass:
    scenes generated and simulated; then cached) and of the official-layout reader on a temporary dataset
    written by ``data.prepare`` (files read at every access, as official)."""
    from data import build_dataset
    from data.prepare import build_parser
    from data.prepare import prepare as prepare_dataset

    base = _data_cfg(cfg, image_size, crop, scenes)
    rows = []
    synthetic = build_dataset({**base, "dataset": "synthetic"}, "train")
    n = len(synthetic)
    rows.append({"reader": "synthetic, first pass (simulates scenes)", "samples_per_s": _samples_per_s(synthetic, n)})
    rows.append({"reader": "synthetic, cached", "samples_per_s": _samples_per_s(synthetic, samples)})
    with tempfile.TemporaryDirectory(prefix="csakd-bench-") as root:
        args = build_parser().parse_args([
            "--out", root, "--overwrite", "--synthetic", str(scenes), "--synthetic_size", str(image_size),
            "--bands", str(base["bands"]), "--tile", str(image_size), "--split_fractions", "1", "0", "0",
            "--scale", str(base["scale"]), "--srf", f"ms{base['msi_bands']}"])
        prepare_dataset(args)
        official = build_dataset({**base, "dataset": "aviris", "root": root,
                                  "train_file": os.path.join(root, "train.txt")}, "train")
        rows.append({"reader": "official layout (data.prepare output)",
                     "samples_per_s": _samples_per_s(official, samples)})
    for row in rows:
        row.update(config=cfg["name"], image_size=image_size, crop=crop)
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# tiled inference of a large scene


def scene_inference(cfg: dict, lr_size: int, tile: int, overlap: int, device: str) -> dict[str, Any]:
    """The fast student on one (1, bands, lr_size, lr_size) scene, tiled (``tile`` > 0) or whole; one timed run."""
    from utils.tiling import tiled_forward

    dev = torch.device(device)
    model = prepare(make_model(cfg, "student", dev))
    x = make_inputs(cfg, 1, lr_size * model_config(cfg)["scale"], dev)
    del x["gt"]
    scene_mib = sum(t.numel() * t.element_size() for t in x.values()) / MIB
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    else:  # simulating the inputs held the GT and its degraded copies: not part of inference
        reset_peak_rss()
    start = time.perf_counter()
    with torch.inference_mode():
        out = tiled_forward(model, x["lrhsi"], x["hrmsi"], tile, overlap) if tile else model(x["lrhsi"], x["hrmsi"])[0]
    synchronize(dev)
    result = {"seconds": time.perf_counter() - start, "scene_mib": scene_mib + out.numel() * 4 / MIB}
    if dev.type == "cuda":
        result["peak_mib"] = torch.cuda.max_memory_allocated(dev) / MIB
    return result


def bench_tiling(cfg: dict, lr_sizes: list[int], tile: int, overlap: int, whole: bool, device: torch.device,
                 threads: int) -> list[dict]:
    """Tiled inference at each LR scene size (same tile), and whole-image inference at the largest; each run in
    its own child process (CPU peak RSS). ``scene_mib`` is the inputs plus the output, which any method holds."""
    runs = [(size, tile) for size in lr_sizes] + ([(max(lr_sizes), 0)] if whole else [])
    rows = []
    for size, t in runs:
        kwargs = dict(cfg=cfg, lr_size=size, tile=t, overlap=overlap, device=str(device))
        result = run_in_child(scene_inference, threads, **kwargs) if device.type == "cpu" else scene_inference(**kwargs)
        if device.type == "cpu":
            result["peak_mib"] = result["peak_rss_mib"]
        scale = model_config(cfg)["scale"]
        rows.append({"config": cfg["name"], "lr_size": size, "hr_size": size * scale, "tile": t, "overlap": overlap,
                     "mode": "tiled" if t else "whole image", **result,
                     "seconds_per_hr_megapixel": result["seconds"] / ((size * scale) ** 2 / 1e6)})
    return rows
