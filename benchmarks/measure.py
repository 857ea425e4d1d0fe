"""Measurement primitives of the benchmark suite: timing statistics, the matmul peak, peak memory.

Timing: ``warmup`` untimed calls, then ``repeats`` timed calls; min, median and max are reported. On a
machine shared with other work the minimum is the figure closest to the hardware (interference only
ever adds time), the median says how noisy the run was.

Peak memory: on the CPU the peak resident set size of a child process that runs only the measured work,
so that nothing the parent allocated before counts; the child resets its peak once started (Linux: a spawned
child is forked before it execs, and its ``ru_maxrss`` starts at the parent's peak), then reads ``VmHWM``. On
CUDA the peak of ``torch.cuda.max_memory_allocated`` around the work, in process.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from models.clra import concatenating_dense_blocks as official_dense_blocks  # noqa: F401 (re-exported)
from utils.cpu import describe as describe_cpu

MIB = 2**20


def machine_description(device: torch.device, threads: int) -> str:
    """The host line of every benchmark record: the CPU (model, capability, native bf16/fp16: ``utils.cpu``),
    the threads, torch's version and, on CUDA, the GPU."""
    gpu = f"{torch.cuda.get_device_name(device)}; host " if device.type == "cuda" else ""
    return f"{gpu}{describe_cpu()}, {threads} threads, torch {torch.__version__}"


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA kernels, so that wall-clock time covers the computation."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], device: torch.device, repeats: int = 5, warmup: int = 1) -> dict[str, Any]:
    """Seconds per call of ``fn``: {"min", "median", "max", "runs": [...]} over ``repeats`` timed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    runs = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        synchronize(device)
        runs.append(time.perf_counter() - start)
    return {"min": min(runs), "median": statistics.median(runs), "max": max(runs), "runs": runs}


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 20) -> dict[str, Any]:
    """fp32 throughput (GFLOP/s, 2·n³ per product, best of ``repeats``) of the n×n matrix products available.

    ``torch.mm`` (MKL on the CPU, cuBLAS on CUDA) and, on the CPU, oneDNN's (the library PyTorch's CPU
    convolutions use), as a 1×1 convolution over n pixels. MKL does not use AVX-512 on every CPU
    (AMD), so on some machines oneDNN's product is twice as fast; the reference ``peak`` is the faster one.
    """
    flop = 2.0 * n**3
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    result = {"n": n, "torch_mm": flop / time_calls(lambda: a @ b, device, repeats, warmup=2)["min"] / 1e9}
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        # The same product as a 1×1 convolution over n pixels in channels-last layout: oneDNN's GEMM.
        x = a.reshape(1, n, n, 1).permute(0, 2, 1, 3)  # (1, n channels, n, 1), channels-last strides
        w = b.reshape(n, n, 1, 1)
        with torch.no_grad():
            result["onednn"] = flop / time_calls(lambda: F.conv2d(x, w), device, repeats, warmup=2)["min"] / 1e9
    result["peak"] = max(v for k, v in result.items() if k != "n")
    return result


def reset_peak_rss() -> bool:
    """Set this process's peak RSS to its current RSS (Linux ≥ 4.0: "5" to ``/proc/self/clear_refs``); False
    where that is not possible (the peak then includes everything since the process started)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """This process's peak RSS in MiB since start or :func:`reset_peak_rss`: ``VmHWM`` of /proc/self/status, else
    ``ru_maxrss`` (KiB on Linux)."""
    try:
        with open("/proc/self/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024


def _child(target: Callable[..., dict], kwargs: dict, threads: int, conn) -> None:
    try:
        torch.set_num_threads(threads)
        reset = reset_peak_rss()  # drop the peak inherited from the parent through fork
        before = peak_rss_mib()
        result = target(**kwargs)
        result["peak_rss_mib"] = peak_rss_mib()
        result["rss_before_mib"] = before
        result["peak_rss_reset"] = reset
        conn.send(result)
    except BaseException as exc:  # report it to the parent instead of dying silently
        conn.send({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
    finally:
        conn.close()


def run_in_child(target: Callable[..., dict], threads: int, **kwargs: Any) -> dict:
    """Run ``target(**kwargs)`` in a fresh process and return its dict plus its peak RSS in MiB
    (``peak_rss_mib``; ``rss_before_mib`` is the RSS after start-up and imports, before ``target``;
    ``peak_rss_reset``: whether the inherited peak could be dropped, see the module's docstring).

    ``target`` must be a module-level function (the child is spawned and imports it). An exception in
    the child is raised here as a ``RuntimeError`` carrying the child's message.
    """
    ctx = mp.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(target, kwargs, threads, child_conn))
    proc.start()
    child_conn.close()
    try:
        result = parent_conn.recv()
    except EOFError:
        result = {"error": "the child process died without a result (killed for memory?)"}
    proc.join()
    if "error" in result:
        raise RuntimeError(f"{target.__name__}: {result['error']}\n{result.get('traceback', '')}")
    return result


def cuda_peak(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak CUDA memory allocated (MiB) while ``fn()`` runs, above what was allocated before."""
    synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / MIB
