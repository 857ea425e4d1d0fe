"""The training loop of CSAKD (official: ``trainer`` in train_CSAKD.py): epochs of co-training steps,
validation, checkpoints, exact resume and recovery from non-finite losses.

The owners: ``engine.runtime`` (device, seeds, distributed context, logging), ``engine.run_folder`` (every
file of the run), ``engine.cotrainer`` (networks, strategy, optimisers and one step), ``engine.loaders``
(data and the per-process samplers). :func:`train` only orders them.

Per epoch: every batch is one :meth:`CoTrainer.step`; the schedulers step once; when
``epoch % eval_step == 0`` both networks are validated (whole validation set; every 5th batch under
``--compat official``), ``best.pth`` of each network is replaced when its mean val SAM is the lowest so far;
``last.pth`` of both and ``state.pth`` are written at the end of every epoch, atomically, in that order.

Reproducibility: the data order, the augmentation and the AWGN of epoch ``e`` are drawn from generators
seeded by (seed, e) (and the rank, for the per-process augmentation and noise of a distributed run; the
teacher's AWGN from a stream of its own, so the student's inputs do not depend on the teacher), and
the state holds everything else (weights, optimisers, schedulers, scalers, strategy, best metrics, counters,
global RNG states). With ``--deterministic``, a run resumed from any ``state.pth`` ends with exactly the
weights of an uninterrupted run with the same number of processes.

Interrupts (``utils.interrupts``): SIGINT / SIGTERM stop the run at the next step boundary with a state that
records the position in the epoch (k batches done), every process's AWGN generator state and the epoch's loss
sums. A signal after the last epoch's last step (during its validation or save) lets the run finish: there is
nothing left to resume.
``--resume`` re-seeds the epoch's streams, loads and discards the first k batches (so the data order and the
augmentation draws replay exactly, workers or not), then restores the AWGN and global RNG states and trains on:
the run ends as an uninterrupted one would.

Known-good state: ``state.pth`` is written after every epoch; ``state_good.pth`` only after an epoch without a
non-finite loss whose validation (if any) is finite. The recovery from ``--nan_patience`` non-finite steps in
a row restores ``state_good.pth``, never a state saved after the blow-up; after :data:`MAX_NAN_RESTORES`
restores the run ends with :class:`TrainingDiverged` (one line).

The run folder is locked while the run lasts (``RunFolder.lock``, main process), whatever way it ends.

Distributed (torchrun): ``--batch_size`` is per process; only the main process writes the run folder,
TensorBoard and the progress bar; validation is sharded and gathered; skips, recoveries and the
divergence stop follow jointly reduced flags, so every process takes the same decisions.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from utils.fileio import WriteError
from utils.interrupts import Interrupted, StopSignals, signal_name
from utils.metrics import improves

from .cotrainer import CoTrainer
from .evaluate import validate, validate_bicubic
from .loaders import training_loaders
from .run_folder import RunFolder, RunLocked
from .runtime import DistContext, check_precision, derive_seed, init_distributed, log, resolve_device, setup_determinism
from .state import rng_state, set_rng_state
from .upcycle import unlabelled_stream
from .visualize import default_rgb_bands, probe_pixels, scene_figure

MAX_NAN_RESTORES = 8  # after this many restores (lr / 256) the run is declared diverged
FINITE_VALIDATION = ("sam", "rmse")  # validation metrics that must be finite for a known-good state


class TrainingDiverged(RuntimeError):
    """The losses stayed non-finite through :data:`MAX_NAN_RESTORES` restores (the message is one line)."""


class PeerLost(RuntimeError):
    """A collective of a distributed run failed because another process ended (killed, out of memory) or became
    unreachable; the message is one line, the last saved state resumes."""


def train(cfg: dict, stop_after: int | None = None) -> dict[str, Any]:
    """Train teacher and student as configured by the resolved flag dict ``cfg`` (on every process of a
    torchrun job, or alone).

    Args:
        cfg: from ``utils.config.parse_config`` + ``engine.flags.resolve_config``, keyed by flag names.
        stop_after: return after completing this epoch (the run stays resumable), e.g. for jobs with a
            time limit; None trains to ``cfg["epochs"]``.

    Returns:
        {"run_dir", "epoch" (last completed), "iteration", "best": {role: {"sam", "epoch"}},
        "val": last validation means {role: {metric: value}}, "bicubic_val": the bicubic baseline's validation
        means on the same images (None without a validation), "nonfinite_steps", "nan_restores", "world_size"}.

    Raises:
        ValueError / FileNotFoundError with one clear message for bad data, configs or checkpoints (nothing in
        the run folder is written before all inputs have been checked), :class:`~engine.run_folder.RunLocked`
        (a ValueError) when another run holds the folder, ``utils.fileio.WriteError`` for OS faults while
        writing, :class:`~utils.interrupts.Interrupted` after SIGINT / SIGTERM (the resumable state saved),
        :class:`TrainingDiverged`, :class:`PeerLost` (another process of a distributed run is gone).
    """
    check_precision(cfg, resolve_device(cfg["device"]))  # before any process group or run folder
    dist, device = init_distributed(cfg["device"])
    try:
        with StopSignals(announce=log) as signals:
            return _train(dict(cfg), dist, device, stop_after, signals)
    except RuntimeError as exc:
        if not dist.distributed or isinstance(exc, TrainingDiverged) or not _collective_failure(exc):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PeerLost(f"process {dist.rank} of {dist.world_size}: another process of this distributed run ended or "
                       f"lost its connection ({first[:200]}); stopped; the last saved state continues with "
                       f"--resume") from None
    finally:
        dist.close()


def _collective_failure(exc: RuntimeError) -> bool:
    """Whether ``exc`` is a failed collective (gloo / NCCL: a peer process killed or unreachable)."""
    return isinstance(exc, torch.distributed.DistError) or any(
        word in str(exc) for word in ("gloo", "NCCL", "Connection reset", "Connection closed", "Broken pipe"))


def _train(cfg: dict, dist: DistContext, device: torch.device, stop_after: int | None,
           signals: StopSignals) -> dict[str, Any]:
    setup_determinism(cfg, device)
    folder = RunFolder(cfg)
    try:
        _lock(folder, dist, device)
        return _train_locked(cfg, dist, device, stop_after, signals, folder)
    finally:
        if dist.is_main:
            folder.unlock()


def _lock(folder: RunFolder, dist: DistContext, device: torch.device) -> None:
    """The main process locks the run folder; every process fails together if it cannot."""
    error = None
    if dist.is_main:
        try:
            folder.lock()
        except (ValueError, OSError) as exc:
            error = exc
    if dist.any(error is not None, device):
        raise error if error is not None else RunLocked(f"run folder {folder.path}: the main process could not "
                                                        f"lock it (its message says why)")


def _train_locked(cfg: dict, dist: DistContext, device: torch.device, stop_after: int | None,
                  signals: StopSignals, folder: RunFolder) -> dict[str, Any]:
    resume_from, state = folder.resume_state()
    if state is not None:
        folder.check_same_regime(state["config"], resume_from)
    dist.barrier()  # every process has checked the folder before the main one writes to it
    order = torch.Generator()  # the data order: the same on every process
    train_loader, val_loader = training_loaders(cfg, order, dist.rank, dist.world_size)
    cot = CoTrainer.build(cfg, device, dist)
    start = 0 if state is None else int(state["epoch"]) + 1
    if state is None and cfg.get("resume_ind"):
        folder.warm_start(cot.trained)
        start = int(cfg["resume_ind"])
    loop = _Loop(cfg, dist, device, folder, cot, train_loader, val_loader, order, signals)
    loop.first_iteration = start * len(train_loader)
    loop.iteration = loop.first_iteration
    if state is not None:
        _check_epochs(cfg, resume_from, start, int(state.get("position", 0)))
        loop.resume(state, resume_from)
    loop.unlabelled = unlabelled_stream(cfg)
    if loop.unlabelled is not None and loop.iteration:
        loop.unlabelled.restart(loop.iteration)  # the batches the run has drawn so far
    log(f"batch: {cfg['batch_size']} per process × {dist.world_size} process(es) = global batch "
        f"{cfg['batch_size'] * dist.world_size}; {len(train_loader)} steps per epoch")

    # All inputs checked: from here on the run folder is written (by the main process).
    loop.writer = _writer(cfg, folder, dist, resumed=state is not None, step=loop.iteration)
    if dist.is_main and state is None:
        folder.save_state(loop.snapshot(start - 1), good=True)  # a loadable, known-good state before the first step
    elif dist.is_main and not os.path.isfile(folder.good_state_file):
        folder.keep_as_good(source=resume_from)  # a state of an older version: the best known point
    dist.barrier()

    end = cfg["epochs"] if stop_after is None else min(cfg["epochs"], stop_after + 1)
    loop.progress = tqdm(total=(end - start) * len(train_loader) - loop.skip, dynamic_ncols=True, unit="it",
                         disable=cfg.get("no_progress") or not dist.is_main or None)
    epoch = start - 1
    try:
        for epoch in range(start, end):
            loop.run_epoch(epoch)
    except BaseException:
        loop.close(quiet=True)
        raise
    loop.close()
    bicubic_val = loop.compare_with_bicubic()
    return {"run_dir": folder.path, "epoch": epoch, "iteration": loop.iteration, "best": loop.best,
            "val": loop.val, "bicubic_val": bicubic_val, "nonfinite_steps": loop.counters["nonfinite_steps"],
            "nan_restores": loop.counters["nan_restores"], "world_size": dist.world_size}


def _check_epochs(cfg: dict, resume_from: str | None, start: int, position: int) -> None:
    if cfg["epochs"] <= start:
        partial = f" and {position} step(s) of epoch {start}" if position else ""
        raise ValueError(f"--resume {resume_from}: the run has completed {start} epoch(s){partial}; --epochs "
                         f"{cfg['epochs']} leaves nothing to train (give --epochs greater than {start}); "
                         f"nothing was written")


@dataclass
class _Tally:
    """One epoch's progress: batches done, loss sums over the steps that were not skipped, and whether every
    loss was finite (kept in a mid-epoch state, so a resumed epoch logs the same means)."""

    position: int = 0
    steps: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    clean: bool = True


class _Loop:
    """The state of a run between epochs and steps, and what one epoch does."""

    def __init__(self, cfg: dict, dist: DistContext, device: torch.device, folder: RunFolder, cot: CoTrainer,
                 train_loader: Any, val_loader: Any, order: torch.Generator, signals: StopSignals) -> None:
        self.cfg, self.dist, self.device, self.folder, self.cot = cfg, dist, device, folder, cot
        self.train_loader, self.val_loader, self.order, self.signals = train_loader, val_loader, order, signals
        self.noise = torch.Generator()
        # The teacher's AWGN: a stream of its own (the student's noise does not depend on the teacher), or, under
        # --compat official, drawn from the student's generator just before it (the official order).
        own_stream = cot.teacher is not None and cfg.get("compat") != "official"
        self.teacher_noise = torch.Generator() if own_stream else None
        self.iteration = self.first_iteration = 0
        self.best = {r: {"sam": math.inf, "epoch": None} for r in cot.trained}
        self.counters = {"nonfinite_steps": {r: 0 for r in cot.trained}, "nan_restores": 0}
        self.val: dict[str, dict[str, float]] = {}
        self.consecutive = 0  # non-finite steps in a row (across epochs)
        self.skip = 0  # batches of the first epoch done before the resumed state was saved
        self.pending: dict[str, Any] | None = None  # the resumed state's streams, restored after the skipped batches
        self.tally = _Tally()
        self.unlabelled: Any = None  # engine.upcycle.UnlabelledStream of --unlabelled: one batch per step
        self.writer: Any = _NoWriter()
        self.progress: Any = None
        rgb = cfg.get("rgb_bands") or default_rgb_bands(cfg["bands"], cfg.get("wavelengths"))
        self.rgb = tuple(rgb)
        if max(self.rgb) >= cfg["bands"] or min(self.rgb) < 0:
            raise ValueError(f"--rgb_bands {list(self.rgb)}: band indices must lie in 0..{cfg['bands'] - 1}")

    # -- state ----------------------------------------------------------------------------------------------------

    def resume(self, state: dict[str, Any], path: str | None) -> None:
        try:
            self.cot.load_state_dict(state)
        except ValueError as exc:
            raise ValueError(f"--resume {path}: {exc}") from None
        self.iteration, self.first_iteration = int(state["iteration"]), state.get("first_iteration")
        self.counters, self.val = state["counters"], state.get("val", {})
        self.best.update(state["best"])
        self.consecutive = int(state.get("consecutive", 0))
        self.skip, self.pending = int(state.get("position", 0)), state
        if self.skip:
            self.tally = _Tally(**state["epoch_tally"])
        at = f"epoch {int(state['epoch']) + 1}" + (f" after its step {self.skip}" if self.skip else "")
        log(f"resumed from {path}: {at} (of {self.cfg['epochs']} epochs), iteration {self.iteration} "
            f"(saved by {state.get('world_size', 1)} process(es), resumed by {self.dist.world_size})")
        changed = self.folder.changed_settings(state["config"])
        if changed:
            log(f"warning: resuming with changed settings, the run will differ from an uninterrupted one: "
                f"{', '.join(changed)}")

    def snapshot(self, done: int, tally: _Tally | None = None, noise: list[torch.Tensor] | None = None,
                 teacher_noise: list[torch.Tensor] | None = None) -> dict[str, Any]:
        """The training state after epoch ``done`` (plus ``tally.position`` batches of the next one, with
        ``noise`` and ``teacher_noise``: every process's AWGN generator states, in rank order)."""
        state = {"epoch": done, "iteration": self.iteration, "first_iteration": self.first_iteration,
                 **self.cot.state_dict(), "best": self.best, "counters": self.counters, "val": self.val,
                 "consecutive": self.consecutive, "rng": rng_state(), "config": self.cfg,
                 "world_size": self.dist.world_size}
        if tally is not None and tally.position:
            if teacher_noise is not None:
                state["teacher_noise_rng"] = teacher_noise
            state.update(position=tally.position, noise_rng=noise,
                         epoch_tally={"position": tally.position, "steps": tally.steps, "sums": tally.sums,
                                      "clean": tally.clean})
        return state

    def _restore_streams(self) -> None:
        """After the skipped batches: the AWGN generator and the global RNGs as the interrupted run had them."""
        if self.pending is not None:
            for gen, key in ((self.noise, "noise_rng"), (self.teacher_noise, "teacher_noise_rng")):
                noise = self.pending.get(key)
                if gen is not None and noise is not None and len(noise) == self.dist.world_size:
                    gen.set_state(noise[self.dist.rank])  # else another run: the epoch's own draws
            set_rng_state(self.pending["rng"])
            self.pending = None

    # -- one epoch ------------------------------------------------------------------------------------------------

    def run_epoch(self, epoch: int) -> None:
        cfg, dist = self.cfg, self.dist
        # Streams of this epoch: functions of (seed, epoch[, rank]) only, so a resumed run draws the same.
        own = (dist.rank,) if dist.distributed else ()
        self.order.manual_seed(derive_seed(cfg["seed"], epoch, 0))
        self.noise.manual_seed(derive_seed(cfg["seed"], epoch, 1, *own))
        if self.teacher_noise is not None:
            self.teacher_noise.manual_seed(derive_seed(cfg["seed"], epoch, 3, *own))
        if hasattr(self.train_loader.dataset, "reseed"):
            self.train_loader.dataset.reseed(derive_seed(cfg["seed"], epoch, 2, *own))  # workers reseed themselves
        self.cot.start_epoch(epoch)
        skip, self.skip = self.skip, 0
        tally = self.tally if skip else _Tally()
        self.progress.set_description(f"epoch {epoch}/{cfg['epochs'] - 1}")
        for position, batch in enumerate(self.train_loader, 1):
            if position <= skip:
                continue  # loaded and discarded: replays the epoch's data order and augmentation draws
            self._restore_streams()
            self._step(batch, epoch, tally)
            tally.position = position
            self._stop_if_asked(epoch, tally)
        self._restore_streams()  # resumed after the last batch of an epoch
        self.cot.end_epoch()
        _write_epoch(self.writer, self._run_sums(tally), tally.steps, self.cot.lrs(), self.iteration)
        validated = epoch % cfg["eval_step"] == 0 or (bool(cfg.get("eval_last")) and epoch == cfg["epochs"] - 1)
        if validated:
            self._validate(epoch)
        good = tally.clean and (not validated or _finite(self.val))
        if dist.is_main:
            for r, n in self.cot.trained.items():
                self.folder.save_weights(r, "last", n)
            self.folder.save_state(self.snapshot(epoch), good=good)
        self.writer.flush()
        dist.barrier()  # every process may read the new state (recovery) only once it is complete
        self._stop_if_asked(epoch, None)

    def _run_sums(self, tally: _Tally) -> dict[str, float]:
        """The epoch's loss sums averaged over the processes (a collective: every process calls it). Each process
        sums its own batches over the same number of steps (a step is skipped on all processes or none), so the
        logged means are the means over every batch of the global batches."""
        if not self.dist.distributed or not tally.sums:
            return tally.sums
        keys = sorted(tally.sums)
        sums = torch.tensor([tally.sums[k] for k in keys], dtype=torch.float64, device=self.device)
        self.dist.average_([sums])
        return dict(zip(keys, sums.tolist(), strict=True))

    def _step(self, batch: dict[str, Any], epoch: int, tally: _Tally) -> None:
        every = self.cfg.get("grad_log_every") or 0
        batch = {**batch, "step": self.iteration}  # what a draw of this step depends on (--kd_augment)
        if self.unlabelled is not None:
            batch["unlabelled"] = self.unlabelled.next()
        if every and self.iteration % every == 0:
            stats = self.cot.step(batch, self.noise, log_gradients=True, teacher_noise=self.teacher_noise)
            for k in [k for k in stats if k.startswith("grad/")]:  # per step, not averaged over the epoch
                self.writer.add_scalar(k, stats.pop(k), self.iteration)
        else:
            stats = self.cot.step(batch, self.noise, teacher_noise=self.teacher_noise)
        self.iteration += 1
        skipped = [r for r in self.cot.trained if stats[f"{r}/skipped"]]
        self.consecutive = self.consecutive + 1 if skipped else 0
        if skipped:
            tally.clean = False
            for r in skipped:
                self.counters["nonfinite_steps"][r] += 1
            log(f"epoch {epoch} iteration {self.iteration}: non-finite loss of {', '.join(skipped)}; step skipped "
                f"({self.consecutive} in a row)")
        else:
            tally.steps += 1
            for k, v in stats.items():
                tally.sums[k] = tally.sums.get(k, 0.0) + v
        if self.consecutive >= self.cfg["nan_patience"]:
            self._recover()
        self.progress.update(1)
        if tally.steps:
            self.progress.set_postfix({k.replace("/loss", ""): f"{v / tally.steps:.4f}" for k, v in tally.sums.items()
                                       if k.endswith("/loss")}, refresh=False)

    def _recover(self) -> None:
        """``--nan_patience`` non-finite steps in a row: restore the last known-good state with halved learning
        rates, or stop after :data:`MAX_NAN_RESTORES` restores (the same decision on every process)."""
        self.counters["nan_restores"] += 1
        path, good = self.folder.last_good_state()
        when = "the initial state" if good["epoch"] < 0 else f"after epoch {good['epoch']}"
        if self.counters["nan_restores"] > MAX_NAN_RESTORES:
            raise TrainingDiverged(f"training diverged: the losses stayed non-finite through {MAX_NAN_RESTORES} "
                                   f"restores of the last known-good state with halved learning rates (see the "
                                   f"lines above); {path} keeps that state ({when})")
        # Halved once per restore since that state was saved (it may itself come after earlier restores).
        halvings = self.counters["nan_restores"] - int(good["counters"]["nan_restores"])
        self.cot.load_state_dict(good)
        self.cot.scale_lrs(0.5 ** halvings)
        lrs = ", ".join(f"{r} {lr:.3g}" for r, lr in self.cot.lrs().items())
        log(f"{self.consecutive} non-finite step(s) in a row: restored the last known-good state ({path}, {when}) "
            f"and halved the learning rates {halvings} time(s) since it ({lrs})")
        self.writer.add_scalar("train/nan_restores", self.counters["nan_restores"], self.iteration)
        self.consecutive = 0

    def _stop_if_asked(self, epoch: int, tally: _Tally | None) -> None:
        """After a step (``tally``: the epoch so far) or an epoch's end (None, its state just saved): if any
        process received SIGINT / SIGTERM, every process stops here together, with a resumable state."""
        if not self.dist.any(self.signals.requested is not None, self.device):
            return
        signum = self.signals.requested or signal.SIGTERM  # processes without the signal stop with the others
        if tally is None and epoch + 1 >= self.cfg["epochs"]:  # the last epoch is saved: nothing is left to resume
            self.signals.saved = True
            log(f"{signal_name(signum)} arrived during the last epoch, which is complete and saved: the run finishes")
            return
        if tally is not None:
            noise = self.dist.gather(self.noise.get_state())
            t_noise = None if self.teacher_noise is None else self.dist.gather(self.teacher_noise.get_state())
            if self.dist.is_main:
                self.folder.save_state(self.snapshot(epoch - 1, tally, noise, t_noise))
        self.dist.barrier()
        self.signals.saved = True
        where = (f"step {tally.position} of {len(self.train_loader)} of epoch {epoch}" if tally is not None
                 else f"the end of epoch {epoch}")
        raise Interrupted(signum, f"interrupted by {signal_name(signum)} at {where}: resumable state saved in "
                                  f"{self.folder.state_file}; continue with --resume")

    def _validate(self, epoch: int) -> None:
        """Validate both networks (sharded over the processes), log, and keep the best weights (main process)."""
        cfg, cot, dist = self.cfg, self.cot, self.dist
        self.val, scenes = validate(cot.eval_networks(), self.val_loader, cfg, self.device,
                                    keep_scenes=int(cfg.get("tb_scenes") or 0), dist=dist)
        it = self.iteration
        for r, values in self.val.items():
            for k, v in values.items():
                self.writer.add_scalar(f"metrics/val/{r}/{k}", v, it)
            if r in cot.trained and improves("sam", values["sam"], self.best[r]["sam"]):  # never a NaN
                self.best[r] = {"sam": values["sam"], "epoch": epoch}
                if dist.is_main:
                    self.folder.save_weights(r, "best", cot.trained[r])
        if dist.is_main:
            for i, scene in enumerate(scenes):
                h, w = scene["gt"].shape[-2:]
                images = {k: scene[k] for k in ("bicubic", "teacher", "student") if k in scene}
                self.writer.add_figure(f"images/val_{i}", scene_figure(scene["name"], images, scene["gt"], self.rgb,
                                                                       probe_pixels(h, w)), it)
        log(f"epoch {epoch} | " + " | ".join(
            f"{r}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "sam_zero_pixels")
            for r, values in self.val.items()))

    def compare_with_bicubic(self) -> dict[str, float] | None:
        """After training: the bicubic baseline's mean validation metrics on the validation images the networks
        were selected on, with one warning line per network whose best validation SAM is not below the baseline's
        (:func:`sam_warnings`); None when nothing was validated."""
        if not any(math.isfinite(b["sam"]) for b in self.best.values()):
            return None
        bicubic = validate_bicubic(self.val_loader, self.cfg, self.device, self.dist)
        for line in sam_warnings(self.best, bicubic["sam"], _sam_advice(self.cfg)):
            log(line)
        return bicubic

    def close(self, quiet: bool = False) -> None:
        if self.progress is not None:
            self.progress.close()
        self.writer.close(quiet=quiet)


def sam_warnings(best: dict[str, dict[str, Any]], bicubic_sam: float, advice: str) -> list[str]:
    """One warning per network whose best validation SAM (degrees, ``best[role]["sam"]`` at ``best[role]["epoch"]``)
    is not below ``bicubic_sam``, the bicubic baseline's on the same validation images: such a network adds no
    spectral fidelity over upsampling the LR-HSI, which a user should see before testing. ``advice`` ends the line."""
    return [f"warning: the {role}'s best validation SAM {b['sam']:.2f}° (epoch {b['epoch']}) is not below the "
            f"bicubic baseline's {bicubic_sam:.2f}° on the same validation images: it does not beat upsampling the "
            f"LR-HSI on spectral angle; {advice} (docs/own-data.md)"
            for role, b in best.items() if math.isfinite(b["sam"]) and b["sam"] >= bicubic_sam]


def _sam_advice(cfg: dict) -> str:
    if cfg.get("compat") == "official":
        return "the official networks cannot learn a residual; the corrected mode's --residual true can"
    if not cfg.get("residual"):
        return "train with --residual true, the own-data recipe"
    return "train longer, or check the data (python -m data.check)"


def _finite(val: dict[str, dict[str, float]]) -> bool:
    return all(math.isfinite(values[k]) for values in val.values() for k in FINITE_VALIDATION if k in values)


def _write_epoch(writer: Any, sums: dict[str, float], steps: int, lrs: dict[str, float], iteration: int) -> None:
    for k, v in sums.items():
        if not k.endswith("/skipped"):
            role, term = k.split("/")
            writer.add_scalar(f"losses/{role}/{'total' if term == 'loss' else term}", v / max(steps, 1), iteration)
    for r, lr in lrs.items():
        writer.add_scalar(f"lr/{r}", lr, iteration)


class _NoWriter:
    """What the processes other than the main one write to TensorBoard: nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class _TensorBoard:
    """The main process's SummaryWriter; an OS error while writing the events (full disk, a path under a file)
    becomes a :class:`~utils.fileio.WriteError` naming the TensorBoard folder.

    The writer's background thread reports a failed write by raising, which Python would print as a
    traceback; that thread's exceptions are not printed (the writer raises the same error again in this
    thread at the next call, where it becomes the one line)."""

    def __init__(self, tb_dir: str, purge_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # heavy import, only needed here

        self.tb_dir = tb_dir
        self._hook = threading.excepthook
        threading.excepthook = self._quiet_writer_thread
        try:
            self._writer = SummaryWriter(tb_dir, purge_step=purge_step)
        except OSError as exc:
            threading.excepthook = self._hook
            raise WriteError(tb_dir, exc) from None

    def _quiet_writer_thread(self, args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__name__ != "_AsyncWriterThread":
            self._hook(args)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._writer, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except OSError as exc:
                raise WriteError(self.tb_dir, exc) from None
        return call

    def close(self, quiet: bool = False) -> None:
        """Flush and close; ``quiet``: while another error is on its way out, a write error here is dropped."""
        try:
            self._writer.close()
        except OSError as exc:
            if not quiet:
                raise WriteError(self.tb_dir, exc) from None
        finally:
            threading.excepthook = self._hook


def _writer(cfg: dict, folder: RunFolder, dist: DistContext, resumed: bool, step: int) -> Any:
    """The main process's TensorBoard writer (after preparing the run folder); a no-op elsewhere."""
    if not dist.is_main:
        return _NoWriter()
    folder.prepare(fresh=not resumed)
    return _TensorBoard(folder.tb_dir, purge_step=step if resumed else None)
