"""Online teacher–student co-training of CSAKD (official: ``trainer`` in train_CSAKD.py), with full-state
checkpoints, exact resume and recovery from non-finite losses.

Read top to bottom: :func:`co_train_step` is one optimisation step of both networks on one batch;
:func:`train` builds everything from a resolved config dict (``utils.config``) and runs the epochs.

Per batch (docs/csakd.md §5.2, ``--kd_mode online``): teacher zero_grad → forward on the LR-HSI with its own
AWGN draw → L_T → backward → AdamW step; then student zero_grad → forward with an independent AWGN draw →
L_S with the teacher's output and fused feature **detached** (computed before the teacher's step) →
backward → AdamW step. No ``retain_graph``: the student's graph never reaches into the teacher's.
``offline``: the teacher is frozen (loaded from ``--teacher_ckpt``, eval mode, no gradients);
``none``: the student alone with the fidelity terms (L_rec + w_sam·L_SAM + w_beba·L_BEBA), the baseline
that shows what distillation adds.

Per epoch: both schedulers step once; when ``epoch % eval_step == 0`` both networks are validated
(whole validation set; every 5th batch under ``--compat official``), ``best.pth`` of each network is
replaced when its mean val SAM is the lowest so far; ``last.pth`` of both and ``state.pth`` are written
at the end of every epoch, atomically, in that order.

Reproducibility: the data order, the augmentation and the AWGN of epoch ``e`` are drawn from generators
seeded by (seed, e), and the state holds everything else (weights, optimisers, schedulers, scalers,
best metrics, counters, global RNG states). With ``--deterministic``, a run resumed from any
``state.pth`` ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import glob
import math
import os
import random
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim import AdamW
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, StepLR
from tqdm import tqdm

from losses import StudentLoss, TeacherLoss
from models import build_model
from models.describe import build_from_checkpoint
from utils.checkpoint import load_weights, save_weights
from utils.config import config_to_yaml, run_dir
from utils.fileio import atomic_write_text
from utils.metrics import improves

from .evaluate import autocast, validate, validation_every
from .loaders import build_loader
from .noise import awgn
from .state import STATE_FILE, load_training_state, rng_state, save_training_state, set_rng_state
from .visualize import default_rgb_bands, probe_pixels, scene_figure

COSINE_ETA_MIN = 1e-10  # official CosineAnnealingLR eta_min
TEACHER_STEP_GAMMA = 0.92  # official StepLR gamma of the teacher (--lr_scheduler step)
STUDENT_STEP_GAMMA = 0.9  # official StepLR gamma of the student
MAX_NAN_RESTORES = 8  # after this many restores (lr / 256) the run is declared diverged
# Settings that may change between a run and its resumption without changing what it computes.
RESUME_FREE_KEYS = {"config", "resume", "resume_ckpt", "overwrite", "device", "workers", "no_progress", "epochs",
                    "eval_step", "tb_scenes", "rgb_bands", "log_dir", "checkpoint_dir", "val_batch_size",
                    "compile", "debug", "gpus", "nan_patience"}


def log(message: str) -> None:
    """One line to stdout that does not break the progress bar."""
    tqdm.write(message, file=sys.stdout)


# ---------------------------------------------------------------------------------------------------------------------
# Setup


def resolve_device(spec: str) -> torch.device:
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


def build_losses(cfg: dict) -> tuple[nn.Module | None, nn.Module]:
    """(teacher loss or None, student loss) for ``cfg["kd_mode"]`` (loss weights from the flags)."""
    joint = bool(cfg["joint_loss"])
    compat = cfg.get("compat")
    fidelity = dict(w_sam=cfg["w_sam"], w_beba=cfg["w_beba"], joint=joint, compat=compat)
    teacher_loss = TeacherLoss(**fidelity) if cfg["kd_mode"] == "online" else None
    if cfg["kd_mode"] == "none":
        return teacher_loss, TeacherLoss(**fidelity)  # the student's objective without distillation terms
    return teacher_loss, StudentLoss(w_kd=cfg["w_kd"], w_feat=cfg["w_feat"], **fidelity)


def build_optimizers(cfg: dict, teacher: nn.Module | None, student: nn.Module, first_epoch: int = 0
                     ) -> tuple[dict[str, torch.optim.Optimizer], dict[str, LRScheduler]]:
    """AdamW for each trained network; teacher: cosine to 1e-10 over ``epochs − first_epoch`` (or StepLR
    γ 0.92), student: StepLR(step_size, γ 0.9). Stepped once per epoch (docs/csakd.md §5.3)."""
    opts, scheds = {}, {}
    if teacher is not None:
        opts["teacher"] = AdamW(teacher.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        if cfg["lr_scheduler"] == "cosine":
            scheds["teacher"] = CosineAnnealingLR(opts["teacher"], T_max=cfg["epochs"] - first_epoch,
                                                  eta_min=COSINE_ETA_MIN)
        else:
            scheds["teacher"] = StepLR(opts["teacher"], step_size=cfg["step_size"], gamma=TEACHER_STEP_GAMMA)
    opts["student"] = AdamW(student.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    scheds["student"] = StepLR(opts["student"], step_size=cfg["step_size"], gamma=STUDENT_STEP_GAMMA)
    return opts, scheds


# ---------------------------------------------------------------------------------------------------------------------
# One step


def _optimise(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> bool:
    """Backward and step unless ``loss`` is not finite (then the step is skipped). Returns whether it stepped."""
    if not bool(torch.isfinite(loss)):
        opt.zero_grad(set_to_none=True)
        return False
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    return True


def co_train_step(
    teacher: nn.Module | None,
    student: nn.Module,
    batch: dict[str, Any],
    opt_t: torch.optim.Optimizer | None,
    opt_s: torch.optim.Optimizer,
    teacher_loss: nn.Module | None,
    student_loss: nn.Module,
    cfg: dict,
    *,
    noise: torch.Generator | None = None,
    scalers: dict[str, torch.amp.GradScaler] | None = None,
) -> dict[str, float]:
    """One co-training step on one batch: teacher step, then student step (docs/csakd.md §5.2).

    Args:
        teacher, student: the networks, on the same device (``teacher`` None for ``kd_mode`` "none").
        batch: the loader's dict: "lrhsi" (B, C, h, w), "hrmsi" (B, M, s·h, s·w), "gt" (B, C, s·h, s·w),
            all in [-1, 1]; moved to the networks' device here.
        opt_t, opt_s: their optimisers (``opt_t`` None unless ``kd_mode`` is "online").
        teacher_loss: ``losses.TeacherLoss`` (None unless online); student_loss: ``losses.StudentLoss``
            (online/offline) or ``losses.TeacherLoss`` (none: fidelity terms only).
        cfg: uses "kd_mode" (online | offline | none), "snr" (dB, 0 = no noise), "amp" (off | bf16 | fp16).
        noise: CPU generator of the AWGN (teacher and student draw from it one after the other, so their
            noise is independent); None uses the global RNG.
        scalers: {"teacher", "student"} gradient scalers for fp16, else None.

    A network whose loss is not finite skips its backward and step (its ``skipped`` entry is 1.0).

    Returns:
        {"teacher/loss", "teacher/<term>"..., "teacher/skipped", "student/loss", "student/<term>"...,
        "student/skipped"} as Python floats (loss = the optimised total, terms unweighted).
    """
    kd_mode = cfg.get("kd_mode", "online")
    amp, snr = cfg.get("amp", "off"), float(cfg.get("snr", 0))
    scalers = scalers or {}
    device = next(student.parameters()).device
    lrhsi = batch["lrhsi"].to(device, non_blocking=True)
    hrmsi = batch["hrmsi"].to(device, non_blocking=True)
    gt = batch["gt"].to(device, non_blocking=True)
    stats: dict[str, float] = {}

    t_out = t_feat = None
    if kd_mode == "online":
        opt_t.zero_grad(set_to_none=True)
        with autocast(device, amp):
            t_out, t_feat = teacher(awgn(lrhsi, snr, noise), hrmsi)
        total_t, parts_t = teacher_loss(t_out.float(), gt)
        stepped = _optimise(total_t, opt_t, scalers.get("teacher"))
        stats.update(_floats("teacher", total_t, parts_t, stepped))
    elif kd_mode == "offline":
        with torch.no_grad(), autocast(device, amp):
            t_out, t_feat = teacher(awgn(lrhsi, snr, noise), hrmsi)

    opt_s.zero_grad(set_to_none=True)
    with autocast(device, amp):
        s_out, s_feat = student(awgn(lrhsi, snr, noise), hrmsi)
    if kd_mode == "none":
        total_s, parts_s = student_loss(s_out.float(), gt)
    else:
        # Detached: the teacher's graph (already freed by its backward) must never receive the student's loss.
        total_s, parts_s = student_loss(s_out.float(), s_feat.float(), gt, t_out.detach().float(),
                                        t_feat.detach().float())
    stepped = _optimise(total_s, opt_s, scalers.get("student"))
    stats.update(_floats("student", total_s, parts_s, stepped))
    return stats


def _floats(role: str, total: torch.Tensor, parts: dict[str, torch.Tensor], stepped: bool) -> dict[str, float]:
    names = ["loss", *parts]
    values = torch.stack([total.detach().float(), *(p.float() for p in parts.values())]).tolist()  # one sync
    out = {f"{role}/{n}": v for n, v in zip(names, values, strict=True)}
    out[f"{role}/skipped"] = 0.0 if stepped else 1.0
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoint folders and resume


def weight_path(cfg: dict, role: str, which: str) -> str:
    """``<checkpoint_dir>/<prefix>/<role>/<which>.pth`` (which: best | last)."""
    return os.path.join(run_dir(cfg), role, f"{which}.pth")


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


def _warm_start(cfg: dict, nets: dict[str, nn.Module]) -> None:
    """``--resume_ind N``: load every network's weights from :func:`warm_start_paths`."""
    for role, path in warm_start_paths(cfg, list(nets)).items():
        info = load_weights(nets[role], path)
        log(f"warm start: {role} weights from {path} ({info['source']})")


def frozen_teacher(cfg: dict) -> nn.Module:
    """``--kd_mode offline``: the teacher of ``--teacher_ckpt``, built as the file describes it (official files
    included: widths, layers and fusion mode are read from their weights), frozen in eval mode. The width flags
    describe the student; only the data's ``--bands`` / ``--msi_bands`` must match the file."""
    shape = {k: cfg[k] for k in ("bands", "msi_bands")}
    teacher, info = build_from_checkpoint(cfg, "teacher", cfg["teacher_ckpt"], given=set(shape))
    log(f"offline distillation: frozen teacher from {cfg['teacher_ckpt']} ({info['source']}; "
        f"{teacher.extra_repr()})")
    return teacher.requires_grad_(False).eval()


def _scale_lrs(opts: dict[str, torch.optim.Optimizer], scheds: dict[str, LRScheduler], factor: float) -> None:
    for role, opt in opts.items():
        for group in opt.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
        sched = scheds[role]
        sched.base_lrs = [lr * factor for lr in sched.base_lrs]
        sched._last_lr = [group["lr"] for group in opt.param_groups]


# ---------------------------------------------------------------------------------------------------------------------
# The run


def train(cfg: dict, stop_after: int | None = None) -> dict[str, Any]:
    """Train teacher and student as configured by the resolved flag dict ``cfg``.

    Args:
        cfg: from ``utils.config`` (``parse_config`` + ``resolve_config``), keyed by flag names.
        stop_after: return after completing this epoch (the run stays resumable), e.g. for jobs with a
            time limit; None trains to ``cfg["epochs"]``.

    Returns:
        {"run_dir", "epoch" (last completed), "iteration", "best": {role: {"sam", "epoch"}},
        "val": last validation means {role: {metric: value}}, "nonfinite_steps", "nan_restores"}.

    Raises:
        ValueError / FileNotFoundError with one clear message for bad data, configs or checkpoints;
        nothing in the run folder is written before all inputs have been checked.
    """
    from torch.utils.tensorboard import SummaryWriter  # heavy import, only needed here

    cfg = dict(cfg)
    kd_mode = cfg["kd_mode"]
    device = resolve_device(cfg["device"])
    setup_determinism(cfg, device)
    folder = run_dir(cfg)
    state_file = os.path.join(folder, STATE_FILE)
    resume_from = find_resume_state(cfg)
    state = load_training_state(resume_from) if resume_from else None
    if state is None and not cfg.get("resume_ind") and not cfg.get("overwrite") and os.path.isfile(state_file):
        raise ValueError(f"run folder {folder} already holds a run ({state_file}); continue it with --resume, "
                         f"start afresh with --overwrite, or choose another --prefix")

    # Data (checked: empty split, band counts, sizes)
    order = torch.Generator()
    train_loader = build_loader(cfg, "train", cfg["batch_size"], shuffle=True, generator=order)
    val_loader = build_loader(cfg, "val", cfg.get("val_batch_size") or cfg["batch_size"])

    # Networks, in the official construction order (teacher first) under the seed
    teacher = build_model(cfg, "teacher") if kd_mode == "online" else None
    if kd_mode == "offline":
        teacher = frozen_teacher(cfg)
    student = build_model(cfg, "student")
    trained = {"teacher": teacher, "student": student} if kd_mode == "online" else {"student": student}
    for net in (teacher, student):
        if net is not None:
            # Channels-last weights make every convolution output channels-last: oneDNN and cuDNN convolve
            # NHWC natively instead of reordering NCHW data around each call (benchmarks/README: Performance).
            net.to(device, memory_format=torch.channels_last)
            net.set_grad_checkpoint(bool(cfg.get("grad_checkpoint")))

    teacher_loss, student_loss = build_losses(cfg)
    start = 0 if state is None else int(state["epoch"]) + 1
    if state is None and cfg.get("resume_ind"):
        _warm_start(cfg, trained)
        start = int(cfg["resume_ind"])
    opts, scheds = build_optimizers(cfg, trained.get("teacher"), student,
                                    first_epoch=int(cfg.get("resume_ind") or 0))
    scalers = ({role: torch.amp.GradScaler(device.type) for role in trained} if cfg.get("amp") == "fp16" else {})
    iteration = start * len(train_loader)
    best = {role: {"sam": math.inf, "epoch": None} for role in trained}
    counters = {"nonfinite_steps": {role: 0 for role in trained}, "nan_restores": 0}
    last_val: dict[str, dict[str, float]] = {}

    def snapshot(epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "iteration": iteration,
                "networks": {r: n.state_dict() for r, n in trained.items()},
                "optimizers": {r: o.state_dict() for r, o in opts.items()},
                "schedulers": {r: s.state_dict() for r, s in scheds.items()},
                "scalers": {r: s.state_dict() for r, s in scalers.items()},
                "best": best, "counters": counters, "val": last_val, "rng": rng_state(), "config": cfg}

    def restore(snap: dict[str, Any], with_rng: bool) -> None:
        for r, n in trained.items():
            n.load_state_dict(snap["networks"][r])
        for r in trained:
            opts[r].load_state_dict(snap["optimizers"][r])
            scheds[r].load_state_dict(snap["schedulers"][r])
            if r in scalers and r in snap.get("scalers", {}):
                scalers[r].load_state_dict(snap["scalers"][r])
        if with_rng:
            set_rng_state(snap["rng"])

    if state is not None:
        missing = [r for r in trained if r not in state["networks"]]
        if missing:
            raise ValueError(f"--resume {resume_from}: the state has no {', '.join(missing)} network "
                             f"(it was saved with another --kd_mode)")
        restore(state, with_rng=True)
        iteration = int(state["iteration"])
        best.update(state["best"])
        counters = state["counters"]
        last_val = state.get("val", {})
        log(f"resumed from {resume_from}: epoch {start} of {cfg['epochs']}, iteration {iteration}")
        changed = [f"{k} ({state['config'].get(k)!r} → {v!r})" for k, v in cfg.items()
                   if k not in RESUME_FREE_KEYS and state["config"].get(k, v) != v]
        if changed:
            log(f"warning: resuming with changed settings, the run will differ from an uninterrupted one: "
                f"{', '.join(changed)}")

    # Compiled wrappers run the forward passes; the plain modules are what is saved and loaded.
    fwd = {r: (torch.compile(n) if cfg.get("compile") else n) for r, n in (("teacher", teacher), ("student", student))
           if n is not None}

    every = validation_every(cfg)
    rgb = tuple(cfg["rgb_bands"]) if cfg.get("rgb_bands") else default_rgb_bands(cfg["bands"], cfg.get("wavelengths"))
    if max(rgb) >= cfg["bands"] or min(rgb) < 0:
        raise ValueError(f"--rgb_bands {list(rgb)}: band indices must lie in 0..{cfg['bands'] - 1}")

    # All inputs checked: from here on the run folder is written.
    os.makedirs(folder, exist_ok=True)
    tb_dir = os.path.join(cfg["log_dir"], cfg["prefix"])
    if state is None and cfg.get("overwrite"):
        for old in glob.glob(os.path.join(tb_dir, "events.out.tfevents.*")):
            os.remove(old)
    writer = SummaryWriter(tb_dir, purge_step=iteration if state is not None else None)
    atomic_write_text(os.path.join(folder, "config.yaml"), config_to_yaml(cfg))
    if state is None:
        save_training_state(state_file, snapshot(start - 1))  # a loadable state before the first step

    end = cfg["epochs"] if stop_after is None else min(cfg["epochs"], stop_after + 1)
    noise = torch.Generator()
    consecutive = 0
    progress = tqdm(total=(end - start) * len(train_loader), disable=cfg.get("no_progress") or None,
                    dynamic_ncols=True, unit="it")
    epoch = start - 1
    try:
        for epoch in range(start, end):
            # Streams of this epoch: a function of (seed, epoch) only, so a resumed run draws the same.
            order.manual_seed(derive_seed(cfg["seed"], epoch, 0))
            noise.manual_seed(derive_seed(cfg["seed"], epoch, 1))
            if hasattr(train_loader.dataset, "reseed"):
                train_loader.dataset.reseed(derive_seed(cfg["seed"], epoch, 2))  # workers reseed themselves
            for r, n in fwd.items():
                n.train(r in trained)
            sums: dict[str, float] = {}
            steps = 0
            progress.set_description(f"epoch {epoch}/{cfg['epochs'] - 1}")
            for batch in train_loader:
                stats = co_train_step(fwd.get("teacher"), fwd["student"], batch, opts.get("teacher"),
                                      opts["student"], teacher_loss, student_loss, cfg, noise=noise, scalers=scalers)
                iteration += 1
                skipped = [r for r in trained if stats[f"{r}/skipped"]]
                for r in skipped:
                    counters["nonfinite_steps"][r] += 1
                consecutive = consecutive + 1 if skipped else 0
                if skipped:
                    log(f"epoch {epoch} iteration {iteration}: non-finite loss of {', '.join(skipped)}; step skipped "
                        f"({consecutive} in a row)")
                else:
                    steps += 1
                    for k, v in stats.items():
                        sums[k] = sums.get(k, 0.0) + v
                if consecutive >= cfg["nan_patience"]:
                    counters["nan_restores"] += 1
                    if counters["nan_restores"] > MAX_NAN_RESTORES:
                        raise RuntimeError(f"training diverged: {MAX_NAN_RESTORES} restores with halved learning "
                                           f"rates did not help (see the non-finite losses above)")
                    restore(load_training_state(state_file), with_rng=False)
                    _scale_lrs(opts, scheds, 0.5)
                    lrs = ", ".join(f"{r} {o.param_groups[0]['lr']:.3g}" for r, o in opts.items())
                    log(f"{consecutive} non-finite steps in a row: restored the last good state ({state_file}) "
                        f"and halved the learning rates ({lrs})")
                    writer.add_scalar("train/nan_restores", counters["nan_restores"], iteration)
                    consecutive = 0
                progress.update(1)
                if steps:
                    progress.set_postfix({k.replace("/loss", ""): f"{v / steps:.4f}" for k, v in sums.items()
                                          if k.endswith("/loss")}, refresh=False)

            for sched in scheds.values():
                sched.step()
            for k, v in sums.items():
                if not k.endswith("/skipped"):
                    role, term = k.split("/")
                    writer.add_scalar(f"losses/{role}/{'total' if term == 'loss' else term}", v / max(steps, 1),
                                      iteration)
            for r, o in opts.items():
                writer.add_scalar(f"lr/{r}", o.param_groups[0]["lr"], iteration)

            if epoch % cfg["eval_step"] == 0:
                nets = {r: fwd[r] for r in ("teacher", "student") if r in fwd}
                last_val, scenes = validate(nets, val_loader, cfg, device, every=every,
                                            keep_scenes=int(cfg.get("tb_scenes") or 0))
                for r, values in last_val.items():
                    for k, v in values.items():
                        writer.add_scalar(f"metrics/val/{r}/{k}", v, iteration)
                    if r in trained and improves("sam", values["sam"], best[r]["sam"]):
                        best[r] = {"sam": values["sam"], "epoch": epoch}
                        save_weights(weight_path(cfg, r, "best"), trained[r], cfg)
                for i, scene in enumerate(scenes):
                    h, w = scene["gt"].shape[-2:]
                    images = {k: scene[k] for k in ("bicubic", "teacher", "student") if k in scene}
                    fig = scene_figure(scene["name"], images, scene["gt"], rgb, probe_pixels(h, w))
                    writer.add_figure(f"images/val_{i}", fig, iteration)
                log(f"epoch {epoch} | " + " | ".join(
                    f"{r}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "sam_zero_pixels")
                    for r, values in last_val.items()))
            for r, n in trained.items():
                save_weights(weight_path(cfg, r, "last"), n, cfg)
            save_training_state(state_file, snapshot(epoch))
            writer.flush()
    finally:
        progress.close()
        writer.close()
    return {"run_dir": folder, "epoch": epoch, "iteration": iteration, "best": best, "val": last_val,
            "nonfinite_steps": counters["nonfinite_steps"], "nan_restores": counters["nan_restores"]}
