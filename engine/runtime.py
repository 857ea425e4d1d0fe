"""Where a run executes: the device, determinism and seeds, autocast, device synchronisation, logging and
the distributed context (rank, world size, main process, barrier, reductions).

Distributed runs are started by ``torchrun`` (official counterpart: none; the official ``--gpus`` flag is
accepted and has no effect). :func:`init_distributed` reads torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and joins the process group: NCCL when
the processes train on CUDA devices (process ``LOCAL_RANK`` on ``cuda:LOCAL_RANK``), gloo on the CPU.
Without that environment the context is a single process and every collective is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from tqdm import tqdm

from utils.cpu import refuse_emulated

_QUIET = False  # set on every process but the main one: only the main process prints


def log(message: str) -> None:
    """One line to stdout (main process only) that does not break the progress bar."""
    if not _QUIET:
        tqdm.write(message, file=sys.stdout)


# ---------------------------------------------------------------------------------------------------------------------
# Device, determinism, seeds


def resolve_device(spec: str | None) -> torch.device:
    """``auto`` → the first CUDA device if there is one, else the CPU; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    if spec in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {spec}: CUDA is not available on this machine (use --device cpu or auto)")
    return device


def setup_determinism(cfg: dict, device: torch.device) -> None:
    """Seed the global RNGs; with ``--deterministic`` use deterministic kernels only, else the official
    speed settings (cuDNN autotuning, TF32 matmuls)."""
    seed = int(cfg["seed"])
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the legacy global RNG, for any library code that draws from it
    torch.manual_seed(seed)
    if cfg.get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.set_float32_matmul_precision("highest")
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (e.g. (seed, epoch, stream)); distinct keys give unrelated streams."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


#: Key of each network's initialisation stream under the corrected construction (:func:`init_seed`).
INIT_STREAMS = {"teacher": 1}


def init_seed(seed: int, role: str) -> int:
    """The seed a network of ``role`` is initialised from: the student from ``seed`` itself (so a student-alone run
    initialises as it always has), the teacher from its own stream derived from (seed, role), so that what the
    teacher draws never moves the student's weights."""
    return int(seed) if role == "student" else derive_seed(seed, 7919, INIT_STREAMS[role])


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``--amp bf16|fp16`` on ``device``; a no-op context for ``off``."""
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def check_precision(cfg: dict, device: torch.device) -> None:
    """Refuse, before anything is written, a low precision the CPU ``device`` would only emulate
    (``utils.cpu.refuse_emulated``): ``--amp bf16|fp16`` (both scripts) and ``--precision bf16`` with the torch
    backend (``test_CSAKD.py``; onnxruntime runs its own kernels). ``--allow_emulated_precision`` keeps them; CUDA
    devices are never refused."""
    if (cfg.get("backend") or "torch") != "torch":
        return
    allow = bool(cfg.get("allow_emulated_precision"))
    amp = cfg.get("amp") or "off"
    if amp != "off":
        refuse_emulated(f"--amp {amp}", amp, device, "--amp off", allow)
    if cfg.get("precision") == "bf16":
        refuse_emulated("--precision bf16", "bf16", device,
                        "fp32 (leave --precision out) or --backend onnxruntime --precision int8", allow)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels (so that wall-clock timing measures the computation)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------------------------------
# Distributed context


@dataclass
class DistContext:
    """The processes of one run. ``world_size`` 1 (no process group) makes every collective a no-op.

    Attributes:
        rank: this process's global rank, 0 … world_size − 1 (0 is the main process).
        world_size: number of processes in the run (torchrun's ``WORLD_SIZE``).
        local_rank: rank on this node (the CUDA device index under NCCL).
        owns_group: this context created the process group and destroys it in :meth:`close`.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """The process that writes checkpoints, TensorBoard, the progress bar and the log."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait until every process arrives here."""
        if self.distributed:
            torch_dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process when ``flag`` is true on any one (e.g. a non-finite loss)."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
        return bool(t.item())

    def average_(self, tensors: list[torch.Tensor]) -> None:
        """Replace each tensor by its mean over the processes, in place (e.g. gradients DDP does not own)."""
        if not self.distributed:
            return
        for t in tensors:
            torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
            t.div_(self.world_size)

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable), in rank order, on every process."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        """Leave the process group if this context joined it (the end of ``train``)."""
        global _QUIET
        if self.owns_group and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
        _QUIET = False


def init_distributed(device_spec: str | None) -> tuple[DistContext, torch.device]:
    """The distributed context and this process's device, from torchrun's environment.

    ``WORLD_SIZE`` > 1 joins the process group (``env://`` rendezvous): NCCL when the device resolves to
    CUDA (process ``LOCAL_RANK`` takes ``cuda:LOCAL_RANK``), gloo on the CPU. Without torchrun the
    context is one process on ``device_spec``.
    """
    global _QUIET
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_spec)
    if world <= 1:
        return DistContext(), device
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local}: this node has {torch.cuda.device_count()} CUDA devices; "
                             f"start at most that many processes per node (torchrun --nproc_per_node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    owns = not torch_dist.is_initialized()
    if owns:
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                                      rank=rank, world_size=world)
    _QUIET = rank != 0
    return DistContext(rank=rank, world_size=world, local_rank=local, owns_group=owns), device
