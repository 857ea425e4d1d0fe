"""The run folder: every path of a run and every file in it (official: the ``checkpoints/<prefix>`` folder
that train_CSAKD.py writes).

Layout::

    <checkpoint_dir>/<prefix>/
        config.yaml                  the resolved flags (a valid --config), opened by the run fingerprints as a
                                     comment (engine.fingerprint; they are also in state.pth and the weights)
        state.pth                    the full training state (engine.state; what --resume continues)
        state_good.pth               the last known-good state: the initial one, then the state after the
                                     latest epoch with finite losses and finite validation (what the
                                     recovery from non-finite losses restores; a hard link, no copy)
        run.lock                     while a run is using the folder: {pid, host, started, command}
        teacher/{best,last}.pth      weights (utils.checkpoint) for evaluation and deployment
        student/{best,last}.pth
    <log_dir>/<prefix>/              TensorBoard events

Only the main process of a distributed run writes here and takes the lock (the callers check
``DistContext.is_main``); every process may read.

The lock (:meth:`RunFolder.lock`, a ``utils.fileio.FolderLock``): ``run.lock`` is created atomically, so two runs
can never both own the folder; a lock whose process is gone (same host, no such pid) is taken over with a note; a
live holder is named in the refusal. The lock is released when the run ends, however it ends; a SIGKILLed run
leaves a stale lock for the next run to take over. Once it holds the lock, a run removes the temporary files of
killed writers in the folder, ``teacher/`` and ``student/``, and only those (the owner marker of
``utils.fileio``): a live process's files, nested folders and files that only look like temporaries stay.

A run folder whose ``state.pth`` records no optimiser step yet (a run that failed in its first batches, e.g.
on bad data) holds no work: a fresh run replaces it, with a note, without ``--overwrite``.

Several nodes need the folder on a filesystem they all see to resume or to recover from non-finite losses.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from utils.checkpoint import load_weights, save_weights
from utils.config import config_to_yaml, run_dir
from utils.fileio import (
    FolderLock,
    FolderLocked,
    WriteError,
    atomic_write_text,
    remove_stale_temps,
    temp_name_prefix,
)

from .fingerprint import KEY as FINGERPRINTS
from .fingerprint import changed_options, run_fingerprints, yaml_header
from .flags import keys_where
from .run_keys import resume_fixed, resume_may_change
from .runtime import log
from .state import STATE_FILE, load_training_state, save_training_state

GOOD_STATE_FILE = "state_good.pth"
LOCK_FILE = "run.lock"
ROLES = ("teacher", "student")



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
    if os.path.basename(target) not in (STATE_FILE, GOOD_STATE_FILE):
        raise ValueError(f"--resume {target}: not a run's state file (expected <run folder>/{STATE_FILE} or "
                         f"{GOOD_STATE_FILE}): a state continues in its own run folder")
    return target


def continue_in_state_folder(cfg: dict, state: str, prefix_given: bool) -> dict:
    """``--resume PATH``: the run continues in PATH's folder (``checkpoint_dir`` and ``prefix`` set from it, in place),
    never in the folder named by the state's saved config (a copied run folder resumes as the copy). An explicit
    ``--prefix`` naming another folder is refused: that folder may hold another run."""
    folder = os.path.normpath(os.path.dirname(state) or ".")
    if os.path.basename(folder) in ("", ".", ".."):
        folder = os.path.abspath(folder)
    asked = run_dir(cfg)
    if prefix_given and os.path.realpath(asked) != os.path.realpath(folder):
        raise ValueError(f"--resume {state} continues the run in {folder}, but --prefix names {asked}; leave "
                         f"--prefix out (a state resumes in its own folder), or start a new run from its weights "
                         f"with --resume_ind N --resume_ckpt {folder}; nothing was written")
    cfg["checkpoint_dir"], cfg["prefix"] = os.path.dirname(folder) or ".", os.path.basename(folder)
    return cfg


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


RunLocked = FolderLocked  # the run folder is in use by another run (the message names it)


def _missing_folders(path: str) -> list[str]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    return missing


class RunFolder:
    """The files of the run named by ``cfg`` (``checkpoint_dir``, ``prefix``, ``log_dir``)."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.path = run_dir(cfg)
        self.state_file = os.path.join(self.path, STATE_FILE)
        self.good_state_file = os.path.join(self.path, GOOD_STATE_FILE)
        self.lock_file = os.path.join(self.path, LOCK_FILE)
        self.tb_dir = os.path.join(cfg["log_dir"], cfg["prefix"])
        self.replaces_empty_run = False  # set by resume_state: the folder holds a run without a single step
        self._lock = FolderLock(self.lock_file, f"run folder {self.path}", kind="run",
                                way_out="choose another --prefix")
        self._created: list[str] = []  # the folders the lock created, deepest first

    def weights(self, role: str, which: str) -> str:
        return weight_path(self.cfg, role, which)

    @functools.cached_property
    def fingerprints(self) -> dict[str, Any]:
        """The run's fingerprints (``engine.fingerprint``), stored in every file of the run that says what it is."""
        return run_fingerprints(self.cfg)

    # -- the lock (main process only) ---------------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the folder's lock (creating the folder), or raise :class:`RunLocked` naming the live holder.
        Then delete the temporary files of killed writers in the folder and its ``teacher/`` and ``student/``
        (only those whose owner is gone: ``utils.fileio.remove_stale_temps``; never below, never a live one's)."""
        if os.path.lexists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"run folder {self.path}: a file is in the way (expected a folder); move it, or choose "
                             f"another --prefix or --checkpoint_dir")
        try:
            self._created = _missing_folders(self.path)
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise WriteError(self.path, exc) from None
        self._lock.acquire(log)
        for folder in (self.path, *(os.path.join(self.path, r) for r in ROLES)):
            for path in remove_stale_temps(folder):
                log(f"note: removed {path}, a temporary file of a run that was killed")

    def unlock(self) -> None:
        """Release the lock (if taken); a folder this run created and left empty is removed."""
        self._lock.release()
        for folder in self._created:  # deepest first; only if empty: a run that failed on its inputs leaves nothing
            try:
                os.rmdir(folder)
            except OSError:
                break

    # -- reading ------------------------------------------------------------------------------------------------------

    def resume_state(self) -> tuple[str | None, dict[str, Any] | None]:
        """(path, state) that this run continues from, or (None, None) for a fresh run.

        Raises a ValueError when the folder already holds a run with at least one optimiser step and the
        flags neither continue it (``--resume``, ``--resume_ind``) nor replace it (``--overwrite``).
        """
        path = find_resume_state(self.cfg)
        if path is not None:
            return path, load_training_state(path, legacy=bool(self.cfg.get("legacy_state")))
        cfg = self.cfg
        if not cfg.get("resume_ind") and not cfg.get("overwrite") and os.path.isfile(self.state_file):
            if self._holds_no_step():
                self.replaces_empty_run = True
                log(f"note: {self.path} holds a run that failed before its first step; replacing it")
                return None, None
            raise ValueError(f"run folder {self.path} already holds a run ({self.state_file}); continue it with "
                             f"--resume, start afresh with --overwrite, or choose another --prefix")
        return None, None

    def _holds_no_step(self) -> bool:
        try:
            state = load_training_state(self.state_file)
        except (ValueError, FileNotFoundError):
            return False  # unreadable: not this code's to judge; the refusal names the file
        return state.get("first_iteration") is not None and state["iteration"] == state["first_iteration"]

    def last_good_state(self) -> tuple[str, dict[str, Any]]:
        """(path, state) of the last known-good state (``state_good.pth``; the recovery point of non-finite
        losses); never a state saved after the losses blew up."""
        path = self.good_state_file if os.path.isfile(self.good_state_file) else self.state_file
        return path, load_training_state(path, legacy=bool(self.cfg.get("legacy_state")))

    def warm_start(self, nets: Mapping[str, nn.Module]) -> None:
        """``--resume_ind N``: load every network's weights from :func:`warm_start_paths`."""
        for role, path in warm_start_paths(self.cfg, list(nets)).items():
            info = load_weights(nets[role], path)
            log(f"warm start: {role} weights from {path} ({info['source']})")

    def check_same_regime(self, saved: Mapping[str, Any], path: str | None) -> None:
        """A ``ValueError`` (one line, before anything is built or written) if the command changes a setting of
        :func:`engine.run_keys.resume_fixed` of the resumed run's ``saved`` config (that state holds another run's
        networks), or any other option that affects the result and that a resume may not change
        (``engine.run_keys.resume_may_change``; compared as the run fingerprint compares them, an option the saved
        config lacks at its default): the resumed run would not be the run its files say it is."""
        changed = [f"--{k} {saved[k]} (saved) vs {self.cfg.get(k)} (asked)" for k in resume_fixed()
                   if k in saved and saved[k] != self.cfg.get(k)]
        if changed:
            raise ValueError(f"--resume {path}: {'; '.join(changed)}: a state cannot change these; start a new run "
                             f"(another --prefix) and take the weights with --teacher_ckpt or --resume_ind; "
                             f"nothing was written")
        changed = [f"{k} {old!r} → {new!r}" for k, (old, new) in changed_options(saved, self.cfg).items()
                   if not resume_may_change(k)]
        if changed:
            raise ValueError(f"--resume {path}: options that change the result differ from the run's (saved → "
                             f"asked): {', '.join(changed)}; resume without changing them, or start a new run "
                             f"(another --prefix, or --overwrite); nothing was written")

    def changed_settings(self, saved: Mapping[str, Any]) -> list[str]:
        """The options that differ from the resumed run's ``saved`` config, change what it computes and that a resume
        may change all the same (e.g. ``--epochs``: a longer schedule)."""
        return [f"{k} ({old!r} → {new!r})" for k, (old, new) in changed_options(saved, self.cfg).items()]

    # -- writing (main process only) ----------------------------------------------------------------------------------

    def prepare(self, fresh: bool) -> None:
        """Create the folder and write ``config.yaml``. A fresh run that replaces an old one (``--overwrite``, or
        a run without a single step) first deletes the old run's weights, states, config and TensorBoard events,
        so that nothing stale can be evaluated or resumed (after all inputs have been checked: nothing is
        written before)."""
        try:
            os.makedirs(self.tb_dir, exist_ok=True)  # can TensorBoard write? (before anything old is removed)
        except OSError as exc:
            raise WriteError(self.tb_dir, exc) from None
        try:
            os.makedirs(self.path, exist_ok=True)
            if fresh and (self.cfg.get("overwrite") or self.replaces_empty_run):
                self._remove_old_run()
        except OSError as exc:
            raise WriteError(getattr(exc, "filename", None) or self.path, exc) from None
        atomic_write_text(os.path.join(self.path, "config.yaml"), yaml_header(self.fingerprints) +
                          config_to_yaml(self.cfg, keys_where(saved=False)))

    def _remove_old_run(self) -> None:
        old = [self.state_file, self.good_state_file, os.path.join(self.path, "config.yaml"),
               *(self.weights(r, w) for r in ROLES for w in ("best", "last")),
               *glob.glob(os.path.join(glob.escape(self.tb_dir), "events.out.tfevents.*"))]
        for path in old:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        for role in ROLES:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(self.path, role))  # only if empty (a user's own files stay)

    def save_weights(self, role: str, which: str, net: nn.Module) -> None:
        save_weights(self.weights(role, which), net, self.cfg, fingerprints=self.fingerprints)

    def save_state(self, state: Mapping[str, Any], good: bool = False) -> None:
        """Write ``state.pth``; ``good`` (finite losses and validation) also makes it ``state_good.pth``."""
        save_training_state(self.state_file, {**state, FINGERPRINTS: self.fingerprints})
        if good:
            self.keep_as_good()

    def keep_as_good(self, source: str | None = None) -> None:
        """``state_good.pth`` := ``source`` (default: the current ``state.pth``): a hard link under a temporary
        name renamed into place (atomic; no copy), or a copy where the file system has no hard links.
        ``state.pth`` is always replaced by a new file, never written in place, so the link keeps the good
        state's bytes."""
        tmp = os.path.join(self.path, f"{temp_name_prefix(self.good_state_file)}{os.getpid()}")
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            try:
                os.link(source or self.state_file, tmp)
            except OSError:
                shutil.copyfile(source or self.state_file, tmp)
            os.replace(tmp, self.good_state_file)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise WriteError(self.good_state_file, exc) from None
