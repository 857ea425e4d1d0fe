"""One process with T threads against T processes with one thread each (torchrun, gloo), on a short training
run, for the table of docs/distributed.md.

    python -m benchmarks.ddp --config configs/quickstart.yaml --epochs 2

Each setting runs ``train_CSAKD.py`` from scratch in a temporary run folder (``--eval_step 1``, no progress
bar) and reports the wall-clock time of the whole command (start-up, data synthesis, training, validation,
checkpoints), the optimiser steps per epoch and the last validation of the student. ``--batch_size`` is per
process, so 2 processes train with twice the global batch and half the steps per epoch: the results are
not the same run (docs/distributed.md: what the world size changes). The table and ``--json``
``{"machine", "rows"}`` name the CPU, its capability and native bf16/fp16 (``benchmarks.measure.machine_description``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from engine.state import load_training_state

from .measure import machine_description

ROOT = Path(__file__).resolve().parents[1]


def run_setting(config: str, epochs: int, procs: int, threads: int, workdir: str, device: str) -> dict:
    """Train once with ``procs`` processes × ``threads`` threads; returns the row of the table."""
    prefix = f"ddp_{procs}x{threads}"
    args = ["train_CSAKD.py", "--config", config, "--epochs", str(epochs), "--eval_step", "1", "--prefix", prefix,
            "--checkpoint_dir", os.path.join(workdir, "ck"), "--log_dir", os.path.join(workdir, "runs"),
            "--overwrite", "--no_progress", "--device", device]
    launch = [sys.executable] if procs == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                  "--nproc_per_node", str(procs)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run([*launch, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{prefix}: training failed ({done.returncode}):\n{done.stderr[-2000:]}")
    state = load_training_state(os.path.join(workdir, "ck", prefix, "state.pth"))
    cfg, val = state["config"], state["val"]["student"]
    return {"processes": procs, "threads": threads, "batch_per_process": cfg["batch_size"],
            "global_batch": cfg["batch_size"] * procs, "steps": state["iteration"], "epochs": epochs,
            "wall_s": round(wall, 1), "student_psnr": round(val["psnr"], 2), "student_sam": round(val["sam"], 3)}


def table(rows: list[dict]) -> str:
    lines = ["| processes × threads | global batch | optimiser steps | wall (s) | student val PSNR / SAM |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['processes']} × {r['threads']} | {r['global_batch']} | {r['steps']} | {r['wall_s']} | "
                     f"{r['student_psnr']} / {r['student_sam']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/quickstart.yaml")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--cores", type=int, default=2, help="T: threads of the single process = processes of the DDP run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        rows = [run_setting(args.config, args.epochs, 1, args.cores, work, args.device),
                run_setting(args.config, args.epochs, args.cores, 1, work, args.device)]
    machine = machine_description(torch.device(args.device), args.cores)
    print(f"machine: {machine}\n{table(rows)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
