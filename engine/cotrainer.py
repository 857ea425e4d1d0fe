"""The teacher–student pair of a run and one optimisation step of it (official: the body of ``trainer`` in
train_CSAKD.py).

A :class:`CoTrainer` holds the networks, the distillation strategy (``engine.strategies``, chosen once by
``--kd_strategy``), the optimisers, schedulers and gradient scalers. The teacher's regime is decided once,
when it is built, from ``--kd_mode``: ``online`` (co-trained), ``offline`` (frozen weights from
``--teacher_ckpt``, eval mode, no gradients) or ``none`` (absent: the student alone with its fidelity terms).

Per batch (docs/csakd.md §5.2, online): teacher zero_grad → forward on the LR-HSI with its own AWGN draw →
teacher objective → backward → AdamW step; then student zero_grad → forward with an independent AWGN draw →
student objective with the teacher's outputs **detached** (computed before the teacher's step) → backward →
AdamW step. No ``retain_graph``: the student's graph never reaches into the teacher's.

Distributed (``DistContext.world_size`` W > 1): each trained network runs inside
DistributedDataParallel, which averages its gradients over the processes in the backward pass; the
strategy's own parameters (which DDP does not hold) are averaged explicitly before the step. Every
objective is a mean over the batch, so with equal per-process batches B the averaged gradient is the
gradient of the global batch of W·B samples. Whether a step is skipped for a non-finite loss is decided
jointly: any process's non-finite loss makes every process skip it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import AdamW
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, StepLR

from models import build_model
from models.describe import build_from_checkpoint
from models.outputs import FusionOutput

from .noise import awgn
from .runtime import DistContext, autocast, init_seed, log
from .strategies import DistillationStrategy, build_strategy

COSINE_ETA_MIN = 1e-10  # official CosineAnnealingLR eta_min
TEACHER_STEP_GAMMA = 0.92  # official StepLR gamma of the teacher (--lr_scheduler step)
STUDENT_STEP_GAMMA = 0.9  # official StepLR gamma of the student
ROLES = ("teacher", "student")


def build_optimizers(cfg: dict, teacher: nn.Module | None, student: nn.Module, first_epoch: int = 0,
                     extra: Iterable[nn.Parameter] = ()) -> tuple[dict[str, torch.optim.Optimizer],
                                                                  dict[str, LRScheduler]]:
    """AdamW for each trained network; teacher: cosine to 1e-10 over ``epochs − first_epoch`` (or StepLR
    γ 0.92, ``--lr_scheduler step``), student: StepLR(step_size, γ 0.9) (or the same cosine,
    ``--student_lr_scheduler cosine``). Stepped once per epoch (docs/csakd.md §5.3).
    ``extra`` (a strategy's parameters) joins the student's optimiser, in the same parameter group."""
    opts, scheds = {}, {}

    def schedule(opt: torch.optim.Optimizer, kind: str, gamma: float) -> LRScheduler:
        if kind == "cosine":
            return CosineAnnealingLR(opt, T_max=cfg["epochs"] - first_epoch, eta_min=COSINE_ETA_MIN)
        return StepLR(opt, step_size=cfg["step_size"], gamma=gamma)

    if teacher is not None:
        opts["teacher"] = AdamW(teacher.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        scheds["teacher"] = schedule(opts["teacher"], cfg["lr_scheduler"], TEACHER_STEP_GAMMA)
    opts["student"] = AdamW([*student.parameters(), *extra], lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    scheds["student"] = schedule(opts["student"], cfg.get("student_lr_scheduler") or "step", STUDENT_STEP_GAMMA)
    return opts, scheds


def frozen_teacher(cfg: dict, purpose: str = "offline distillation") -> nn.Module:
    """``--kd_mode offline``: the teacher of ``--teacher_ckpt``, built as the file describes it (official files
    included: widths, layers and fusion mode are read from their weights), frozen in eval mode. The width flags
    describe the student; only the data's ``--bands`` / ``--msi_bands`` must match the file."""
    shape = {k: cfg[k] for k in ("bands", "msi_bands")}
    teacher, info = build_from_checkpoint(cfg, "teacher", cfg["teacher_ckpt"], given=set(shape))
    log(f"{purpose}: frozen teacher from {cfg['teacher_ckpt']} ({info['source']}; "
        f"{teacher.extra_repr()})")
    return teacher.requires_grad_(False).eval()


def _build_teacher(cfg: dict) -> nn.Module | None:
    """The teacher of ``--kd_mode``: a new network (online), the frozen one of ``--teacher_ckpt`` (offline), or None."""
    if cfg["kd_mode"] == "online":
        return build_model(cfg, "teacher")
    return frozen_teacher(cfg) if cfg["kd_mode"] == "offline" else None


def _inherit(cfg: dict, student: nn.Module, teacher: nn.Module | None) -> None:
    """``--student_init teacher``: copy the converged teacher's matching parts into the student (engine.inherit);
    the frozen teacher of an offline run, else the file ``--teacher_ckpt`` built aside (its construction draws
    nothing from the global RNG)."""
    from .inherit import describe, inherit_from_teacher

    if teacher is None:
        with torch.random.fork_rng(devices=[]):
            teacher = frozen_teacher(cfg, purpose="--student_init teacher")
    log(describe(inherit_from_teacher(student, teacher), cfg["teacher_ckpt"]))


class CoTrainer:
    """Teacher, student, strategy, optimisers, schedulers and scalers of one run.

    Args:
        cfg: the resolved flag dict; uses "kd_mode", "snr" (dB, 0 = no noise), "amp", "compile", the
            optimiser flags ("lr", "weight_decay", "lr_scheduler", "step_size", "epochs") and, through
            :func:`engine.strategies.build_strategy`, "kd_strategy" and the loss weights.
        student: the student network, on ``device``.
        teacher: the teacher (None for ``kd_mode`` none); for ``offline`` its weights are already loaded.
        strategy: the distillation strategy (default: built from ``cfg``).
        device, dist: this process's device and distributed context.
        first_epoch: the cosine schedule's start (``--resume_ind``).
    """

    def __init__(self, cfg: dict, student: nn.Module, teacher: nn.Module | None = None,
                 strategy: DistillationStrategy | None = None, device: torch.device | None = None,
                 dist: DistContext | None = None, first_epoch: int = 0) -> None:
        self.regime = cfg["kd_mode"]
        if (teacher is None) != (self.regime == "none"):
            raise ValueError(f"--kd_mode {self.regime}: " + ("needs a teacher" if teacher is None else
                                                             "trains the student alone; got a teacher"))
        self.cfg, self.dist = cfg, dist or DistContext()
        self.device = device or next(student.parameters()).device
        self.teacher, self.student = teacher, student
        if self.regime == "offline":
            teacher.requires_grad_(False).eval()
        self.strategy = (strategy or build_strategy(cfg, teacher)).to(self.device)
        if getattr(self.strategy, "block_mix", 0) and (self.dist.distributed or cfg.get("compile")):
            raise ValueError("--block_mix runs the student's parts directly: one process without --compile only")
        self.trained = {"teacher": teacher, "student": student} if self.regime == "online" else {"student": student}
        self.opts, self.scheds = build_optimizers(cfg, teacher if self.regime == "online" else None, student,
                                                  first_epoch, extra=self.strategy.parameters())
        self.scalers = ({r: torch.amp.GradScaler(self.device.type) for r in self.trained}
                        if cfg.get("amp") == "fp16" else {})
        # What runs the forward passes: DDP for the trained networks of a distributed run, torch.compile when
        # asked; the plain modules (self.teacher, self.student) are what is saved and loaded. The strategy's forward
        # hooks go on the plain modules first, so that the wrappers run them.
        for role, net in (("teacher", teacher), ("student", student)):
            if net is not None:
                self.strategy.tap(role, net)
        self.fwd = {r: self._wrap(r, n) for r, n in (("teacher", teacher), ("student", student)) if n is not None}

    @classmethod
    def build(cls, cfg: dict, device: torch.device, dist: DistContext | None = None) -> CoTrainer:
        """Build the networks of ``cfg``, load the frozen teacher for ``offline``, move them to ``device`` and make
        the co-trainer.

        Construction order: the student first, from the global RNG reseeded with ``--seed``, then the teacher
        from its own stream (:func:`~engine.runtime.init_seed`), drawn without touching the global RNG: a run
        with a teacher and the student alone of the same seed start from bit-identical student weights (common
        random numbers). ``--compat official``: the official order, teacher then student from the global RNG as
        the seed left it."""
        if cfg.get("compat") == "official":
            teacher = _build_teacher(cfg)
            student = build_model(cfg, "student")
        else:
            torch.manual_seed(init_seed(cfg["seed"], "student"))
            student = build_model(cfg, "student")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(init_seed(cfg["seed"], "teacher"))
                teacher = _build_teacher(cfg)
        if cfg.get("student_init") == "teacher":
            _inherit(cfg, student, teacher)
        for net in (teacher, student):
            if net is not None:
                # Channels-last weights make every convolution output channels-last: oneDNN and cuDNN convolve
                # NHWC natively instead of reordering NCHW data around each call (docs/performance.md).
                net.to(device, memory_format=torch.channels_last)
                net.set_grad_checkpoint(bool(cfg.get("grad_checkpoint")))
        return cls(cfg, student, teacher, device=device, dist=dist, first_epoch=int(cfg.get("resume_ind") or 0))

    def _wrap(self, role: str, net: nn.Module) -> nn.Module:
        ddp = self.dist.distributed and role in self.trained
        if not ddp and not self.cfg.get("compile"):
            return net
        wrapped: nn.Module = net
        if ddp:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Every registered parameter takes part in the loss (the student's unused official modules are never
            # registered), so no find_unused_parameters.
            wrapped = DistributedDataParallel(wrapped, device_ids=ids)
        if self.cfg.get("compile"):
            wrapped = torch.compile(wrapped)
        return wrapped

    # -- one step ------------------------------------------------------------------------------------------------------

    def step(self, batch: dict[str, Any], noise: torch.Generator | None = None,
             log_gradients: bool = False, teacher_noise: torch.Generator | None = None) -> dict[str, float]:
        """One co-training step on one batch: the teacher's step (online), then the student's.

        Args:
            batch: the loader's dict: "lrhsi" (B, C, h, w), "hrmsi" (B, M, s·h, s·w), "gt" (B, C, s·h, s·w),
                all in [-1, 1]; moved to the device here. B is the per-process batch.
            noise: CPU generator of the student's AWGN (and of the teacher's, drawn first, when
                ``teacher_noise`` is None: the official order); None uses the global RNG.
            teacher_noise: CPU generator of the teacher's AWGN, a stream of its own, so that the student's noise is
                what it would be without a teacher; None: the teacher draws from ``noise``.
            log_gradients: also return the strategy's per-term gradient norms on the student's parameters,
                ``"grad/student/<term>"`` (one extra backward per term; this process's batch).

        A network whose loss is not finite on any process skips its backward and step on every process
        (its ``skipped`` entry is 1.0).

        Returns:
            {"teacher/loss", "teacher/<term>"..., "teacher/skipped", "student/loss", "student/<term>"...,
            "student/skipped"} as floats of this process's batch (loss = the optimised total, terms unweighted),
            and with ``log_gradients`` the "grad/student/<term>" norms of the weighted terms.
        """
        amp, snr, dev = self.cfg.get("amp", "off"), float(self.cfg.get("snr", 0)), self.device
        lrhsi, hrmsi, gt = (batch[k].to(dev, non_blocking=True) for k in ("lrhsi", "hrmsi", "gt"))
        strategy, stats = self.strategy, {}
        t_out, t_noise = None, noise if teacher_noise is None else teacher_noise
        if self.regime == "online":
            self.opts["teacher"].zero_grad(set_to_none=True)
            with autocast(dev, amp):
                t_out = strategy.forward_teacher(self.fwd["teacher"], awgn(lrhsi, snr, t_noise), hrmsi, gt)
            total, parts = strategy.teacher_objective(t_out.map(torch.Tensor.float), gt)
            stats.update(_floats("teacher", total, parts, self._optimise("teacher", total)))
        elif self.regime == "offline":
            with torch.no_grad(), autocast(dev, amp):
                t_out = strategy.forward_teacher(self.fwd["teacher"], awgn(lrhsi, snr, t_noise), hrmsi, gt)

        self.opts["student"].zero_grad(set_to_none=True)
        s_in = awgn(lrhsi, snr, noise)
        with autocast(dev, amp):
            s_out = strategy.forward_student(self.fwd["student"], s_in, hrmsi)
        # Detached: the teacher's graph (already freed by its backward) must never receive the student's loss.
        teacher_view = None if t_out is None else t_out.detach().map(torch.Tensor.float)
        total, parts = strategy.student_objective(s_out.map(torch.Tensor.float), teacher_view, gt)
        if "unlabelled" in batch or self.cfg.get("kd_augment"):
            total, parts = self._upcycle(batch, s_in, hrmsi, gt, teacher_view, total, parts)
        if log_gradients:  # before the backward, which frees the graph the extra backwards need
            norms = strategy.student_gradient_norms(self.student.parameters())
            values = torch.stack(list(norms.values())).tolist() if norms else []  # one sync
            stats.update({f"grad/student/{k}": v for k, v in zip(norms, values, strict=True)})
        stats.update(_floats("student", total, parts, self._optimise("student", total)))
        return stats

    def _upcycle(self, batch: dict[str, Any], s_in: torch.Tensor, hrmsi: torch.Tensor, gt: torch.Tensor,
                 teacher_view: FusionOutput | None, total: torch.Tensor, parts: dict[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The data-upcycling terms (engine.upcycle) added to the student's objective: SmoothL1 of the student on the
        step's unlabelled batch (``batch["unlabelled"]``, no AWGN) to the frozen teacher's output on it (its GT for
        ``--kd_mode none``), and of g⁻¹(S(g(x))) on the student's own noisy inputs to the teacher's output on the
        original view (the GT without a teacher); g drawn from (seed, ``batch["step"]``). The extra forwards call
        the networks directly (output only), not the strategy, so no strategy state (e.g. block mixing) moves."""
        from .upcycle import apply, consistency, draw_transform, undo

        amp, dev, student = self.cfg.get("amp", "off"), self.device, self.fwd["student"]
        if "unlabelled" in batch:
            u = {k: v.to(dev, non_blocking=True) for k, v in batch["unlabelled"].items()}
            if "gt" in u:
                target = u["gt"]
            else:
                with torch.no_grad(), autocast(dev, amp):
                    target = self.fwd["teacher"](u["lrhsi"], u["hrmsi"])[0]
            with autocast(dev, amp):
                out = student(u["lrhsi"], u["hrmsi"])[0]
            term = consistency(out.float(), target.float())
            total, parts = total + float(self.cfg["w_unlabelled"]) * term, {**parts, "unlabelled": term.detach()}
        if self.cfg.get("kd_augment"):
            code = draw_transform(int(self.cfg["seed"]), int(batch.get("step", 0)))
            with autocast(dev, amp):
                out = undo(student(apply(s_in, code), apply(hrmsi, code))[0], code)
            term = consistency(out.float(), gt if teacher_view is None else teacher_view.out)
            total, parts = total + float(self.cfg["w_augment"]) * term, {**parts, "augment": term.detach()}
        return total, parts

    def _optimise(self, role: str, loss: torch.Tensor) -> bool:
        """Backward and step unless ``loss`` is not finite on some process. Returns whether it stepped."""
        opt, scaler = self.opts[role], self.scalers.get(role)
        if self.dist.any(not bool(torch.isfinite(loss)), self.device):
            opt.zero_grad(set_to_none=True)
            return False
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if role == "student" and self.dist.distributed:
            own = [p for p in self.strategy.parameters() if p.requires_grad]
            for p in own:  # a parameter unused on one process still takes part in the average
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            self.dist.average_([p.grad for p in own])
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        return True

    # -- epochs, learning rates, state ---------------------------------------------------------------------------------

    def start_epoch(self, epoch: int) -> None:
        """Training modes (the frozen teacher stays in eval mode) and the strategy's schedule for ``epoch``."""
        for role, net in self.fwd.items():
            net.train(role in self.trained)
        self.strategy.set_epoch(epoch)

    def end_epoch(self) -> None:
        """Step every scheduler once (the official per-epoch schedule)."""
        for sched in self.scheds.values():
            sched.step()

    def eval_networks(self) -> dict[str, nn.Module]:
        """The networks to validate, {role: module} (without DDP: evaluation has no gradients to sync)."""
        nets = {"teacher": self.teacher, "student": self.student}
        return {r: n for r, n in nets.items() if n is not None}

    def lrs(self) -> dict[str, float]:
        return {r: o.param_groups[0]["lr"] for r, o in self.opts.items()}

    def scale_lrs(self, factor: float) -> None:
        """Multiply every learning rate, now and in the schedules' future (recovery halves them)."""
        for role, opt in self.opts.items():
            for group in opt.param_groups:
                group["lr"] *= factor
                if "initial_lr" in group:
                    group["initial_lr"] *= factor
            sched = self.scheds[role]
            sched.base_lrs = [lr * factor for lr in sched.base_lrs]
            sched._last_lr = [group["lr"] for group in opt.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """{"networks", "optimizers", "schedulers", "scalers": {role: state_dict}, "strategy": state_dict}
        (only the trained networks; see engine.state for the file around it)."""
        return {"networks": {r: n.state_dict() for r, n in self.trained.items()},
                "optimizers": {r: o.state_dict() for r, o in self.opts.items()},
                "schedulers": {r: s.state_dict() for r, s in self.scheds.items()},
                "scalers": {r: s.state_dict() for r, s in self.scalers.items()},
                "strategy": self.strategy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s keys; a state without a trained network is a ValueError."""
        missing = [r for r in self.trained if r not in state["networks"]]
        if missing:
            raise ValueError(f"the state has no {', '.join(missing)} network (it was saved with another --kd_mode)")
        for r, net in self.trained.items():
            net.load_state_dict(state["networks"][r])
            self.opts[r].load_state_dict(state["optimizers"][r])
            self.scheds[r].load_state_dict(state["schedulers"][r])
            if r in self.scalers and r in state.get("scalers", {}):
                self.scalers[r].load_state_dict(state["scalers"][r])
        self.strategy.load_state_dict(state.get("strategy", {}))  # format 1 states: strategies had no state


def _floats(role: str, total: torch.Tensor, parts: dict[str, torch.Tensor], stepped: bool) -> dict[str, float]:
    names = ["loss", *parts]
    values = torch.stack([total.detach().float(), *(p.float() for p in parts.values())]).tolist()  # one sync
    out = {f"{role}/{n}": v for n, v in zip(names, values, strict=True)}
    out[f"{role}/skipped"] = 0.0 if stepped else 1.0
    return out
