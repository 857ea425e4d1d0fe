"""The run folder: every path of a run and every file in it (official: the ``checkpoints/<prefix>`` folder
that train_CSAKD.py writes).

Layout::

    <checkpoint_dir>/<prefix>/
        config.yaml                  the resolved flags (a valid --config)
        state.pth                    the full training state (engine.state; what --resume continues)
        teacher/{best,last}.pth      weights (utils.checkpoint) for evaluation and deployment
        student/{best,last}.pth
    <log_dir>/<prefix>/              TensorBoard events

Only the main process of a distributed run writes here (the callers check ``DistContext.is_main``); every
process may read. Several nodes need the folder on a filesystem they all see to resume or to recover
from non-finite losses.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from utils.checkpoint import load_weights, save_weights
from utils.config import config_to_yaml, run_dir
from utils.fileio import atomic_write_text

from .runtime import log
from .state import STATE_FILE, load_training_state, save_training_state

#: Settings that may change between a run and its resumption without changing what it computes.
RESUME_FREE_KEYS = {"config", "resume", "resume_ckpt", "overwrite", "device", "workers", "no_progress", "epochs",
                    "eval_step", "tb_scenes", "rgb_bands", "log_dir", "checkpoint_dir", "val_batch_size",
                    "compile", "debug", "gpus", "nan_patience"}


def find_resume_state(cfg: dict) -> str | None:
    """The ``state.pth`` that ``--resume`` (or a ``--resume_ckpt`` naming a state file) asks for, or None."""
    target = cfg.get("resume")
    if not target and cfg.get("resume_ckpt"):
        ckpt = cfg["resume_ckpt"]
        if os.path.isfile(ckpt) and os.path.basename(ckpt) == STATE_FILE:
            target = ckpt
    if not target:
        return None
    if target == "auto":
        target = os.path.join(run_dir(cfg), STATE_FILE)
    elif os.path.isdir(target):
        target = os.path.join(target, STATE_FILE)
    if not os.path.isfile(target):
        raise FileNotFoundError(f"--resume: training state {target}: no such file (nothing to resume)")
    return target


def weight_path(cfg: dict, role: str, which: str) -> str:
    """``<checkpoint_dir>/<prefix>/<role>/<which>.pth`` (which: best | last)."""
    return os.path.join(run_dir(cfg), role, f"{which}.pth")


def warm_start_paths(cfg: dict, roles: Sequence[str]) -> dict[str, str]:
    """The weight files ``--resume_ind N`` loads, per network.

    Default: ``<folder>/<role>/last.pth`` for every network, ``<folder>`` = ``--resume_ckpt`` or this run's folder
    (fixes the official resume, docs/csakd.md §5.5: both networks from the same folder and the same file).
    ``--compat official`` with an official checkpoint tree in ``<base>`` (``--resume_ckpt`` if it is a folder,
    else the working directory), i.e. ``<base>/teacher_checkpoint/<prefix>/`` or ``<base>/student_checkpoint/
    <prefix>/``: the official pair, the teacher's ``best.pth`` and the student's ``last.pth``, as the official
    script loads them when ``--resume_ckpt`` is not a file.
    """
    if cfg.get("compat") == "official":
        base = cfg.get("resume_ckpt") if cfg.get("resume_ckpt") and os.path.isdir(cfg["resume_ckpt"]) else "."
        official = {"teacher": os.path.join(base, "teacher_checkpoint", cfg["prefix"], "best.pth"),
                    "student": os.path.join(base, "student_checkpoint", cfg["prefix"], "last.pth")}
        if any(os.path.isdir(os.path.dirname(official[r])) for r in ("teacher", "student")):
            return {r: official[r] for r in roles}
    folder = cfg.get("resume_ckpt") or run_dir(cfg)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--resume_ckpt {folder}: not a run folder (expected <folder>/teacher/last.pth "
                                f"and <folder>/student/last.pth)")
    return {r: os.path.join(folder, r, "last.pth") for r in roles}


class RunFolder:
    """The files of the run named by ``cfg`` (``checkpoint_dir``, ``prefix``, ``log_dir``)."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.path = run_dir(cfg)
        self.state_file = os.path.join(self.path, STATE_FILE)
        self.tb_dir = os.path.join(cfg["log_dir"], cfg["prefix"])

    def weights(self, role: str, which: str) -> str:
        return weight_path(self.cfg, role, which)

    # -- reading ------------------------------------------------------------------------------------------------------

    def resume_state(self) -> tuple[str | None, dict[str, Any] | None]:
        """(path, state) that this run continues from, or (None, None) for a fresh run.

        Raises a ValueError when the folder already holds a run and the flags neither continue it
        (``--resume``, ``--resume_ind``) nor replace it (``--overwrite``).
        """
        path = find_resume_state(self.cfg)
        if path is not None:
            return path, load_training_state(path)
        cfg = self.cfg
        if not cfg.get("resume_ind") and not cfg.get("overwrite") and os.path.isfile(self.state_file):
            raise ValueError(f"run folder {self.path} already holds a run ({self.state_file}); continue it with "
                             f"--resume, start afresh with --overwrite, or choose another --prefix")
        return None, None

    def last_good_state(self) -> dict[str, Any]:
        """The latest saved training state (the recovery point of non-finite losses)."""
        return load_training_state(self.state_file)

    def warm_start(self, nets: Mapping[str, nn.Module]) -> None:
        """``--resume_ind N``: load every network's weights from :func:`warm_start_paths`."""
        for role, path in warm_start_paths(self.cfg, list(nets)).items():
            info = load_weights(nets[role], path)
            log(f"warm start: {role} weights from {path} ({info['source']})")

    def changed_settings(self, saved: Mapping[str, Any]) -> list[str]:
        """The settings that differ from the resumed run's ``saved`` config and change what it computes."""
        return [f"{k} ({saved.get(k)!r} → {v!r})" for k, v in self.cfg.items()
                if k not in RESUME_FREE_KEYS and saved.get(k, v) != v]

    # -- writing (main process only) ----------------------------------------------------------------------------------

    def prepare(self, fresh: bool) -> None:
        """Create the folder and write ``config.yaml``; a fresh ``--overwrite`` run drops the old TensorBoard
        events (after all inputs have been checked: nothing is written before)."""
        os.makedirs(self.path, exist_ok=True)
        if fresh and self.cfg.get("overwrite"):
            for old in glob.glob(os.path.join(self.tb_dir, "events.out.tfevents.*")):
                os.remove(old)
        atomic_write_text(os.path.join(self.path, "config.yaml"), config_to_yaml(self.cfg))

    def save_weights(self, role: str, which: str, net: nn.Module) -> None:
        save_weights(self.weights(role, which), net, self.cfg)

    def save_state(self, state: Mapping[str, Any]) -> None:
        save_training_state(self.state_file, state)
