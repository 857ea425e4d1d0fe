"""``python -m benchmarks.run``: speed and memory of the CSAKD networks on this machine, in one process.

Parts (``--what``, default all):

- ``peak``: fp32 matmul throughput (GFLOP/s) of this machine, the reference for the networks' figures;
- ``networks``: per configuration and network, parameters, conv MACs, batch-1 latency (min/median/max)
  of the reference and the fast path, achieved GFLOP/s (2·MACs / min latency) and % of the peak;
- ``train``: one co-training step (teacher step + student step, ``engine.cotrainer.CoTrainer.step``), time and
  peak memory (CPU: peak RSS of a child process; CUDA: peak allocated), reference / fast / checkpointed;
- ``fastpath``: per network, the latency of each layout × dense-block form that ``engine.inference.prepare``
  can choose (channels-last or NCHW; concatenations or one buffer), the fastest, and the one it picks here;
- ``data``: samples/s of the synthetic dataset and of the official-layout reader;
- ``tiling``: tiled inference of a large scene (``utils.tiling.tiled_forward``) at two scene sizes, and the
  whole image at once: time and peak memory.

Examples::

    python -m benchmarks.run --json results/bench.json                 # everything (about 20 min on 2 cores)
    python -m benchmarks.run --what peak networks                      # inference only
    python -m benchmarks.run --device cuda --what networks train       # on a GPU

Configurations: ``paper`` (built in) and each ``--config`` YAML (default ``configs/quickstart.yaml``); the
``train``, ``data`` and ``tiling`` parts use the first one. Timings on a machine shared with other work are
noisy: the minimum is the figure to quote, the median shows the noise. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import torch

from utils.fileio import WriteError, atomic_write_json

from .measure import machine_description, matmul_peak
from .suite import PAPER, bench_data, bench_fast_paths, bench_network, bench_tiling, bench_train

PARTS = ("peak", "networks", "fastpath", "train", "data", "tiling")
TRAIN_VARIANTS = ("reference", "fast", "checkpoint")
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                              "quickstart.yaml")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run (default: all)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--config", nargs="*", default=None,
                   help="YAML configs benchmarked besides the paper's (default: configs/quickstart.yaml)")
    p.add_argument("--no_paper", action="store_true", help="leave out the paper configuration (quick tests)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads (torch.set_num_threads)")
    p.add_argument("--json", default=None, help="also write all figures to this JSON file (atomically)")
    t = p.add_argument_group("sizes and repetitions")
    t.add_argument("--matmul_size", type=int, default=2048, help="n of the n×n fp32 matmul peak")
    t.add_argument("--image_size", type=int, default=256, help="HR side of the latency inputs (LR = /scale)")
    t.add_argument("--repeats", type=int, default=5, help="timed runs per latency (after --warmup)")
    t.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    t.add_argument("--batch_size", type=int, default=4, help="co-training step batch")
    t.add_argument("--crop_size", type=int, default=128, help="co-training step HR crop side")
    t.add_argument("--train_steps", type=int, default=2, help="timed co-training steps (after one untimed)")
    t.add_argument("--train_variants", nargs="+", choices=TRAIN_VARIANTS, default=list(TRAIN_VARIANTS))
    t.add_argument("--data_scenes", type=int, default=4, help="scenes of the data-loading datasets")
    t.add_argument("--data_samples", type=int, default=32, help="samples read per data-loading figure")
    t.add_argument("--scene_sizes", type=int, nargs="+", default=[128, 256],
                   help="LR sides of the tiled scenes (HR = scale ×)")
    t.add_argument("--tile", type=int, default=64, help="tile side in LR pixels")
    t.add_argument("--overlap", type=int, default=8, help="tile overlap in LR pixels")
    t.add_argument("--no_whole", action="store_true", help="skip whole-image inference of the largest scene")
    return p


def load_configs(args: argparse.Namespace) -> list[dict]:
    """The benchmarked configurations: {"name", network keys...}."""
    from utils.config import load_config_file

    configs = [] if args.no_paper else [dict(PAPER)]
    for path in args.config if args.config is not None else [DEFAULT_CONFIG]:
        cfg = load_config_file(path)
        configs.append({**cfg, "name": os.path.splitext(os.path.basename(path))[0]})
    if not configs:
        raise ValueError("--no_paper without --config: no configuration to benchmark")
    return configs


# ---------------------------------------------------------------------------------------------------------------------
# tables


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join(lines)


def _lat(t: dict) -> str:
    return f"{t['min']:.3f} / {t['median']:.3f} / {t['max']:.3f}"


def format_report(report: dict) -> str:
    out = [f"machine: {report['machine']}"]
    if "peak" in report:
        pk = report["peak"]
        parts = ", ".join(f"{k} {v:.1f}" for k, v in pk.items() if k not in ("n", "peak"))
        out.append(f"fp32 matmul {pk['n']}×{pk['n']} (GFLOP/s): {parts}; peak = {pk['peak']:.1f}")
    if "networks" in report:
        rows = []
        for r in report["networks"]:
            for path in ("reference", "fast", "fast_bf16"):
                if path not in r:
                    continue
                t = r[path]
                pct = f"{t['percent_of_peak']:.0f}%"
                extra = f"{r['fast_max_abs_diff']:.1e}" if path == "fast" else ""
                if path == "fast_bf16":
                    extra = f"{r['bf16_max_abs_diff']:.1e} ({r['bf16_psnr_vs_fp32_db']:.1f} dB)"
                mem = f"{t['peak_mib']:.0f}" if "peak_mib" in t else ""
                rows.append([r["config"], r["network"], path, f"{r['params'] / 1e6:.3f}M", f"{r['macs'] / 1e9:.2f}",
                             _lat(t), f"{t['gflops']:.1f}", pct, extra, mem])
        size = report["networks"][0]["image_size"]
        out += ["", f"networks, batch 1, HR {size}×{size} (latency s: min / median / max)",
                _table(["config", "network", "path", "params", "GMACs", "latency", "GFLOP/s", "% peak",
                        "max |Δ| vs ref", "peak MiB"], rows)]
    if "fastpath" in report:
        rows = [[r["config"], r["network"], name, _lat(t), f"{t['max_abs_diff']:.1e}",
                 ("fastest" if name == r["fastest"] else "") + (" chosen" if name == r["chosen"] else "")]
                for r in report["fastpath"] for name, t in r["variants"].items()]
        size = report["fastpath"][0]["image_size"]
        out += ["", f"fast-path candidates, batch 1, HR {size}×{size}, capability "
                    f"{report['fastpath'][0]['capability']} (latency s: min / median / max)",
                _table(["config", "network", "layout + dense blocks", "latency", "max |Δ| vs official form", ""],
                       rows)]
    if "train" in report:
        rows = [[r["config"], r["variant"], f"{r['batch_size']}×{r['crop']}²", _lat(r), f"{r['peak_mib']:.0f}",
                 f"{r['teacher_loss']:.4f} / {r['student_loss']:.4f}"] for r in report["train"]]
        out += ["", "co-training step (teacher step + student step), seconds: min / median / max",
                _table(["config", "variant", "batch", "time s", "peak MiB", "loss T / S (1st step)"], rows)]
    if "data" in report:
        rows = [[r["config"], r["reader"], f"{r['image_size']} (crop {r['crop']})", f"{r['samples_per_s']:.1f}"]
                for r in report["data"]]
        out += ["", "data loading, training samples (one process)",
                _table(["config", "reader", "image", "samples/s"], rows)]
    if "tiling" in report:
        rows = [[r["config"], f"{r['lr_size']}² → {r['hr_size']}²", r["mode"],
                 f"{r['tile']}/{r['overlap']}" if r["tile"] else "–", f"{r['seconds']:.2f}",
                 f"{r['seconds_per_hr_megapixel']:.2f}", f"{r['peak_mib']:.0f}", f"{r['scene_mib']:.0f}",
                 f"{r['peak_mib'] - r['scene_mib']:.0f}"] for r in report["tiling"]]
        out += ["", "scene inference, fast student (scene = inputs + output arrays; working = peak − scene)",
                _table(["config", "LR → HR", "mode", "tile/overlap", "time s", "s per HR Mpx", "peak MiB",
                        "scene MiB", "working MiB"], rows)]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available on this machine")
    torch.set_num_threads(args.threads)
    configs = load_configs(args)
    report: dict[str, Any] = {"machine": machine_description(device, args.threads), "device": str(device),
                              "threads": args.threads, "configs": configs}
    if "peak" in args.what or "networks" in args.what:
        report["peak"] = matmul_peak(device, args.matmul_size)
    if "networks" in args.what:
        report["networks"] = [bench_network(cfg, role, device, args.image_size, args.repeats, args.warmup)
                              for cfg in configs for role in ("teacher", "student")]
        # Measured again after the networks: on a shared machine a burst of other work during the first
        # measurement would otherwise understate the peak (and overstate every percentage).
        again = matmul_peak(device, args.matmul_size)
        report["peak"] = {k: max(v, again[k]) for k, v in report["peak"].items()}
        for row in report["networks"]:
            for path in ("reference", "fast", "fast_bf16"):
                if path in row:
                    row[path]["percent_of_peak"] = 100 * row[path]["gflops"] / report["peak"]["peak"]
    if "fastpath" in args.what:
        report["fastpath"] = [bench_fast_paths(cfg, role, device, args.image_size, args.repeats, args.warmup)
                              for cfg in configs for role in ("teacher", "student")]
    first = configs[0]
    if "train" in args.what:
        report["train"] = bench_train(first, args.train_variants, args.batch_size, args.crop_size, args.train_steps,
                                      device, args.threads)
    if "data" in args.what:
        report["data"] = bench_data(first, args.image_size, args.crop_size, args.data_scenes, args.data_samples)
    if "tiling" in args.what:
        report["tiling"] = bench_tiling(first, args.scene_sizes, args.tile, args.overlap, not args.no_whole, device,
                                        args.threads)
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"benchmarks.run: error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        try:
            atomic_write_json(args.json, report)
        except WriteError as exc:
            print(f"benchmarks.run: error: {exc}", file=sys.stderr)
            return 2
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
