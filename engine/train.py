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
seeded by (seed, e) (and the rank, for the per-process augmentation and noise of a distributed run), and
the state holds everything else (weights, optimisers, schedulers, scalers, strategy, best metrics, counters,
global RNG states). With ``--deterministic``, a run resumed from any ``state.pth`` ends with exactly the
weights of an uninterrupted run with the same number of processes.

Distributed (torchrun): ``--batch_size`` is per process; only the main process writes the run folder,
TensorBoard and the progress bar; validation is sharded and gathered; skips, recoveries and the
divergence stop follow jointly reduced flags, so every process takes the same decisions.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from tqdm import tqdm

from utils.metrics import improves

from .cotrainer import CoTrainer
from .evaluate import validate
from .loaders import training_loaders
from .run_folder import RunFolder
from .runtime import DistContext, derive_seed, init_distributed, log, setup_determinism
from .state import rng_state, set_rng_state
from .visualize import default_rgb_bands, probe_pixels, scene_figure

MAX_NAN_RESTORES = 8  # after this many restores (lr / 256) the run is declared diverged


def train(cfg: dict, stop_after: int | None = None) -> dict[str, Any]:
    """Train teacher and student as configured by the resolved flag dict ``cfg`` (on every process of a
    torchrun job, or alone).

    Args:
        cfg: from ``utils.config`` (``parse_config`` + ``resolve_config``), keyed by flag names.
        stop_after: return after completing this epoch (the run stays resumable), e.g. for jobs with a
            time limit; None trains to ``cfg["epochs"]``.

    Returns:
        {"run_dir", "epoch" (last completed), "iteration", "best": {role: {"sam", "epoch"}},
        "val": last validation means {role: {metric: value}}, "nonfinite_steps", "nan_restores", "world_size"}.

    Raises:
        ValueError / FileNotFoundError with one clear message for bad data, configs or checkpoints;
        nothing in the run folder is written before all inputs have been checked.
    """
    dist, device = init_distributed(cfg["device"])
    try:
        return _train(dict(cfg), dist, device, stop_after)
    finally:
        dist.close()


def _train(cfg: dict, dist: DistContext, device: torch.device, stop_after: int | None) -> dict[str, Any]:
    setup_determinism(cfg, device)
    folder = RunFolder(cfg)
    resume_from, state = folder.resume_state()
    dist.barrier()  # every process has checked the folder before the main one writes to it
    order = torch.Generator()  # the data order: the same on every process
    train_loader, val_loader = training_loaders(cfg, order, dist.rank, dist.world_size)
    cot = CoTrainer.build(cfg, device, dist)
    start = 0 if state is None else int(state["epoch"]) + 1
    if state is None and cfg.get("resume_ind"):
        folder.warm_start(cot.trained)
        start = int(cfg["resume_ind"])
    run = {"iteration": start * len(train_loader), "best": {r: {"sam": math.inf, "epoch": None} for r in cot.trained},
           "counters": {"nonfinite_steps": {r: 0 for r in cot.trained}, "nan_restores": 0}, "val": {}}
    if state is not None:
        try:
            cot.load_state_dict(state)
        except ValueError as exc:
            raise ValueError(f"--resume {resume_from}: {exc}") from None
        set_rng_state(state["rng"])
        run.update(iteration=int(state["iteration"]), counters=state["counters"], val=state.get("val", {}))
        run["best"].update(state["best"])
        log(f"resumed from {resume_from}: epoch {start} of {cfg['epochs']}, iteration {run['iteration']} "
            f"(saved by {state.get('world_size', 1)} process(es), resumed by {dist.world_size})")
        changed = folder.changed_settings(state["config"])
        if changed:
            log(f"warning: resuming with changed settings, the run will differ from an uninterrupted one: "
                f"{', '.join(changed)}")
    rgb = tuple(cfg["rgb_bands"]) if cfg.get("rgb_bands") else default_rgb_bands(cfg["bands"], cfg.get("wavelengths"))
    if max(rgb) >= cfg["bands"] or min(rgb) < 0:
        raise ValueError(f"--rgb_bands {list(rgb)}: band indices must lie in 0..{cfg['bands'] - 1}")
    log(f"batch: {cfg['batch_size']} per process × {dist.world_size} process(es) = global batch "
        f"{cfg['batch_size'] * dist.world_size}; {len(train_loader)} steps per epoch")

    def snapshot(epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "iteration": run["iteration"], **cot.state_dict(), "best": run["best"],
                "counters": run["counters"], "val": run["val"], "rng": rng_state(), "config": cfg,
                "world_size": dist.world_size}

    # All inputs checked: from here on the run folder is written (by the main process).
    writer = _writer(cfg, folder, dist, resumed=state is not None, step=run["iteration"])
    if dist.is_main and state is None:
        folder.save_state(snapshot(start - 1))  # a loadable state before the first step
    dist.barrier()

    end = cfg["epochs"] if stop_after is None else min(cfg["epochs"], stop_after + 1)
    noise, consecutive, epoch = torch.Generator(), 0, start - 1
    progress = tqdm(total=(end - start) * len(train_loader), disable=cfg.get("no_progress") or not dist.is_main or None,
                    dynamic_ncols=True, unit="it")
    try:
        for epoch in range(start, end):
            # Streams of this epoch: functions of (seed, epoch[, rank]) only, so a resumed run draws the same.
            own = (dist.rank,) if dist.distributed else ()
            order.manual_seed(derive_seed(cfg["seed"], epoch, 0))
            noise.manual_seed(derive_seed(cfg["seed"], epoch, 1, *own))
            if hasattr(train_loader.dataset, "reseed"):
                train_loader.dataset.reseed(derive_seed(cfg["seed"], epoch, 2, *own))  # workers reseed themselves
            cot.start_epoch(epoch)
            sums: dict[str, float] = {}
            steps = 0
            progress.set_description(f"epoch {epoch}/{cfg['epochs'] - 1}")
            for batch in train_loader:
                every = cfg.get("grad_log_every") or 0
                if every and run["iteration"] % every == 0:
                    stats = cot.step(batch, noise, log_gradients=True)
                else:
                    stats = cot.step(batch, noise)
                for k in [k for k in stats if k.startswith("grad/")]:  # per step, not averaged over the epoch
                    writer.add_scalar(k, stats.pop(k), run["iteration"])
                run["iteration"] += 1
                skipped = [r for r in cot.trained if stats[f"{r}/skipped"]]
                consecutive = consecutive + 1 if skipped else 0
                if skipped:
                    _count_skip(run, skipped, epoch, consecutive)
                else:
                    steps += 1
                    for k, v in stats.items():
                        sums[k] = sums.get(k, 0.0) + v
                if consecutive >= cfg["nan_patience"]:
                    _recover(cot, folder, run, consecutive, writer)
                    consecutive = 0
                progress.update(1)
                if steps:
                    progress.set_postfix({k.replace("/loss", ""): f"{v / steps:.4f}" for k, v in sums.items()
                                          if k.endswith("/loss")}, refresh=False)
            cot.end_epoch()
            _write_epoch(writer, sums, steps, cot.lrs(), run["iteration"])
            if epoch % cfg["eval_step"] == 0:
                _validate(cfg, cot, val_loader, device, dist, folder, writer, run, epoch, rgb)
            if dist.is_main:
                for r, n in cot.trained.items():
                    folder.save_weights(r, "last", n)
                folder.save_state(snapshot(epoch))
            writer.flush()
            dist.barrier()  # every process may read the new state (recovery) only once it is complete
    finally:
        progress.close()
        writer.close()
    return {"run_dir": folder.path, "epoch": epoch, "iteration": run["iteration"], "best": run["best"],
            "val": run["val"], "nonfinite_steps": run["counters"]["nonfinite_steps"],
            "nan_restores": run["counters"]["nan_restores"], "world_size": dist.world_size}


def _count_skip(run: dict, skipped: list[str], epoch: int, consecutive: int) -> None:
    for r in skipped:
        run["counters"]["nonfinite_steps"][r] += 1
    log(f"epoch {epoch} iteration {run['iteration']}: non-finite loss of {', '.join(skipped)}; step skipped "
        f"({consecutive} in a row)")


def _recover(cot: CoTrainer, folder: RunFolder, run: dict, consecutive: int, writer: Any) -> None:
    """``--nan_patience`` non-finite steps in a row: restore the last saved state with halved learning rates,
    or stop after :data:`MAX_NAN_RESTORES` restores (the same decision on every process)."""
    run["counters"]["nan_restores"] += 1
    if run["counters"]["nan_restores"] > MAX_NAN_RESTORES:
        raise RuntimeError(f"training diverged: {MAX_NAN_RESTORES} restores with halved learning rates did not "
                           f"help (see the non-finite losses above)")
    cot.load_state_dict(folder.last_good_state())
    cot.scale_lrs(0.5)
    lrs = ", ".join(f"{r} {lr:.3g}" for r, lr in cot.lrs().items())
    log(f"{consecutive} non-finite steps in a row: restored the last good state ({folder.state_file}) "
        f"and halved the learning rates ({lrs})")
    writer.add_scalar("train/nan_restores", run["counters"]["nan_restores"], run["iteration"])


def _write_epoch(writer: Any, sums: dict[str, float], steps: int, lrs: dict[str, float], iteration: int) -> None:
    for k, v in sums.items():
        if not k.endswith("/skipped"):
            role, term = k.split("/")
            writer.add_scalar(f"losses/{role}/{'total' if term == 'loss' else term}", v / max(steps, 1), iteration)
    for r, lr in lrs.items():
        writer.add_scalar(f"lr/{r}", lr, iteration)


def _validate(cfg: dict, cot: CoTrainer, loader: Any, device: torch.device, dist: DistContext, folder: RunFolder,
              writer: Any, run: dict, epoch: int, rgb: tuple[int, ...]) -> None:
    """Validate both networks (sharded over the processes), log, and keep the best weights (main process)."""
    run["val"], scenes = validate(cot.eval_networks(), loader, cfg, device, keep_scenes=int(cfg.get("tb_scenes") or 0),
                                  dist=dist)
    it = run["iteration"]
    for r, values in run["val"].items():
        for k, v in values.items():
            writer.add_scalar(f"metrics/val/{r}/{k}", v, it)
        if r in cot.trained and improves("sam", values["sam"], run["best"][r]["sam"]):  # never a NaN
            run["best"][r] = {"sam": values["sam"], "epoch": epoch}
            if dist.is_main:
                folder.save_weights(r, "best", cot.trained[r])
    if dist.is_main:
        for i, scene in enumerate(scenes):
            h, w = scene["gt"].shape[-2:]
            images = {k: scene[k] for k in ("bicubic", "teacher", "student") if k in scene}
            writer.add_figure(f"images/val_{i}", scene_figure(scene["name"], images, scene["gt"], rgb,
                                                              probe_pixels(h, w)), it)
    log(f"epoch {epoch} | " + " | ".join(
        f"{r}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "sam_zero_pixels")
        for r, values in run["val"].items()))


class _NoWriter:
    """What the processes other than the main one write to TensorBoard: nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _writer(cfg: dict, folder: RunFolder, dist: DistContext, resumed: bool, step: int) -> Any:
    """The main process's TensorBoard writer (after preparing the run folder); a no-op elsewhere."""
    if not dist.is_main:
        return _NoWriter()
    from torch.utils.tensorboard import SummaryWriter  # heavy import, only needed here

    folder.prepare(fresh=not resumed)
    return SummaryWriter(folder.tb_dir, purge_step=step if resumed else None)
