"""The full training state of a run (one file, ``<run>/state.pth``) and the random-number states in it.

``state.pth`` is what ``--resume`` continues from (the per-network weight files under ``teacher/`` and
``student/`` are for evaluation and deployment). It holds::

    {"format": "csakd-train-state", "format_version": 4,
     "epoch": last completed epoch (-1 before the first), "iteration": optimiser steps so far,
     "networks": {"teacher": state_dict, "student": state_dict},       # only the trained ones
     "optimizers": {...}, "schedulers": {...}, "scalers": {...},        # same keys
     "strategy": state_dict,                                            # the distillation strategy's own
                                                                        # parameters and buffers (may be empty)
     "world_size": processes that trained it (informational: any number may resume it),
     "best": {"teacher": {"sam": .., "epoch": ..}, "student": {...}},    # lowest mean val SAM so far
     "counters": {"nonfinite_steps": {...}, "nan_restores": int},
     "consecutive": non-finite steps in a row so far, "first_iteration": the iteration this run folder's
                    training started at (a state with iteration == first_iteration holds no step),
     # only in a state saved by SIGINT / SIGTERM within an epoch (engine.train):
     "position": batches of epoch "epoch" + 1 already trained, "noise_rng": [AWGN generator state per rank],
     "epoch_tally": {"position", "steps", "sums", "clean"} (that epoch's loss sums so far),
     "rng": {"python": (version, 625 ints, gauss), "numpy": {"bit_generator", "key": int64 tensor (624,), "pos",
             "has_gauss", "cached_gaussian"}, "torch": uint8 tensor, "cuda": [uint8 tensor per device]},
     "config": resolved flag dict,
     "tensor_sha256": digest of every tensor above (version 2, utils.checkpoint.tensor_digest)}

Version 2 added "tensor_sha256", version 3 "strategy" and "world_size"; version 4 stores the NumPy RNG
state as a tensor and plain numbers, so that the whole file is plain data: it is read by PyTorch's
weights-only unpickler (utils.checkpoint.safe_load), and no state file can run code when it is read.
Versions 1-3 hold a pickled NumPy array; they load only with ``--legacy_state``, which trusts NumPy's
array reconstructor (:data:`LEGACY_TRUSTED`) and nothing else, as a strategy without state (versions 1, 2),
trained by one process. The keys "consecutive", "first_iteration", "position",
"noise_rng" and "epoch_tally" are optional (absent in older version-3 files). The
student's optimiser holds the student's parameters followed by the strategy's, in one parameter group.
Weights are those of the plain networks (never DDP's ``module.`` names), so a state saved by N processes
resumes with M.

It is written atomically (temporary file + rename): a process killed at any moment leaves either the
previous state or the new one, both loadable. Every load verifies the archive's CRCs and the stored
digest, and refuses network weights holding NaN or Inf (utils.checkpoint, "Integrity"); version 1
files (no digest) still load.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from utils.checkpoint import (
    DIGEST_KEY,
    TRAIN_STATE_FORMAT,
    UnsafeFile,
    refuse_nonfinite,
    safe_load,
    tensor_digest,
    verify_archive,
    verify_digest,
    warn_unverified,
)
from utils.fileio import atomic_torch_save

STATE_FORMAT = TRAIN_STATE_FORMAT
STATE_FORMAT_VERSION = 4  # 2 added "tensor_sha256"; 3 "strategy" and "world_size"; 4 plain-data RNG states
STATE_FILE = "state.pth"
#: What ``--legacy_state`` trusts beyond plain data: NumPy's array reconstruction (the RNG state of versions 1-3).
LEGACY_TRUSTED = (np._core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32)))


def rng_state() -> dict[str, Any]:
    """The states of Python's ``random``, NumPy's global RNG, torch's CPU RNG and every CUDA device's RNG, as
    tensors, tuples and numbers (plain data for the weights-only loader)."""
    name, key, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the global RNG is what is captured
    return {
        "python": random.getstate(),
        "numpy": {"bit_generator": str(name), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states captured by :func:`rng_state` (or by a version 1-3 state: a NumPy tuple); CUDA states
    only where CUDA is available."""
    random.setstate(_as_python_state(state["python"]))
    numpy = state["numpy"]
    if isinstance(numpy, Mapping):
        numpy = (numpy["bit_generator"], numpy["key"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                 numpy["cached_gaussian"])
    np.random.set_state(numpy)  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_python_state(obj: Any) -> tuple:
    # torch.save keeps tuples, but be lenient with states that went through lists (e.g. JSON)
    version, internal, gauss = obj
    return version, tuple(internal), gauss


def save_training_state(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write ``state`` (the keys of the module docstring; format tags are added) atomically to ``path``."""
    body = {k: v for k, v in state.items() if k != DIGEST_KEY}
    atomic_torch_save({"format": STATE_FORMAT, "format_version": STATE_FORMAT_VERSION, **body,
                       DIGEST_KEY: tensor_digest(body)}, path)


def load_training_state(path: str | os.PathLike, legacy: bool = False) -> dict[str, Any]:
    """Read a ``state.pth`` with the weights-only loader (``legacy``: ``--legacy_state``, also NumPy arrays,
    :data:`LEGACY_TRUSTED`); a missing, truncated, corrupt, foreign or code-carrying file, or one whose network
    weights hold NaN or Inf, raises one clear error naming it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"training state {path}: no such file (nothing to resume; start without --resume)")
    verified = verify_archive(path, "training state")
    try:
        obj = safe_load(path, "training state", verified, LEGACY_TRUSTED if legacy else ())
    except UnsafeFile as exc:
        if not legacy and exc.asked.startswith("numpy"):
            raise UnsafeFile(f"training state {path}: an older format (version 3 or earlier: its NumPy RNG state is "
                             f"a pickled array, which the weights-only loader does not read); if you wrote this "
                             f"file, resume with --legacy_state, which trusts NumPy's array reconstructor and "
                             f"nothing else", exc.asked) from None
        raise
    if not verified:
        warn_unverified(path, "training state")
    if not isinstance(obj, dict) or obj.get("format") != STATE_FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"training state {path}: not a CSAKD training state (format {found!r}, "
                         f"expected {STATE_FORMAT!r}); network weight files resume with --resume_ind/--resume_ckpt")
    if obj.get("format_version", 0) > STATE_FORMAT_VERSION:
        raise ValueError(f"training state {path}: format version {obj['format_version']} is newer than this code "
                         f"({STATE_FORMAT_VERSION})")
    missing = [k for k in ("config", "epoch", "iteration", "networks", "rng") if k not in obj]
    if missing:
        raise ValueError(f"training state {path}: incomplete (no {', '.join(map(repr, missing))}); restore or "
                         f"re-create the file")
    body = {k: v for k, v in obj.items() if k not in ("format", "format_version", DIGEST_KEY)}
    verify_digest(obj, body, path, "training state")
    refuse_nonfinite(obj.get("networks", {}), path, "training state")
    return obj
