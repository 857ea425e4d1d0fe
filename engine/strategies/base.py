"""The distillation-strategy interface: one object, chosen once by ``--kd_strategy``, that says what a
teacher–student pair computes (torchdistill's rule: the wiring is decided at construction, never by
string tests inside the training step).

A strategy is an ``nn.Module`` so that its extra trainable parameters (a feature adapter, HKDSR's ACF
network) are registered: the co-trainer adds ``strategy.parameters()`` to the student's optimiser and saves
``strategy.state_dict()`` in the training state; they never enter the student's exported weights.

The teacher's regime (``--kd_mode``: online = co-trained, offline = frozen from ``--teacher_ckpt``,
none = absent) is the user's switch and is decided by the co-trainer; the strategy only defines the
objectives. With ``kd_mode none`` the student objective is called with ``teacher=None`` and must then
reduce to the student's fidelity terms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import torch
from torch import nn

from models.outputs import FusionOutput, check_needs
from models.taps import TapRecorder, record_output, unwrap
from utils.config import Option
from utils.registry import Registry

Objective = tuple[torch.Tensor, dict[str, torch.Tensor]]  # (total to back-propagate, {term: detached value})

STRATEGIES: Registry[type[DistillationStrategy]] = Registry("distillation strategy", "--kd_strategy")


def register(cls: type[DistillationStrategy]) -> type[DistillationStrategy]:
    """Class decorator: make ``cls`` selectable as ``--kd_strategy cls.name``, with its flags ``cls.options``."""
    STRATEGIES.add(cls.name, cls, cls.options)
    return cls


def frozen_teacher_config(cfg: dict, teacher: nn.Module | None) -> dict | None:
    """The description (:meth:`models.network.FusionNetwork.model_config`) of an offline run's frozen teacher: the
    built teacher's when given (no second read of its file), else what the file ``--teacher_ckpt`` holds
    (:func:`models.describe.network_from_file`); None for other regimes or without either."""
    if cfg.get("kd_mode") != "offline":
        return None
    if teacher is not None:
        return teacher.model_config()
    if not cfg.get("teacher_ckpt"):
        return None
    from models.describe import network_from_file  # local: only offline runs read the file here

    return network_from_file(cfg["teacher_ckpt"], role="teacher").description()


class DistillationStrategy(nn.Module):
    """Base class of the strategies.

    Class attributes:
        name: the ``--kd_strategy`` value.
        options: the flags it reads (``utils.config.Option``; ``strategy=name`` on those no other strategy reads).
        needs: the auxiliary fields (``models.outputs.AUX_FIELDS``) both networks must give beyond their output
            tuple. They are taken by forward hooks on the submodules the network's family names for them
            (``FusionNetwork.aux_taps``), registered once per network (:meth:`tap`; the co-trainer does so before
            DistributedDataParallel or ``torch.compile`` wrap it) and recording only inside this strategy's
            forward passes; the networks' ``forward`` stays their own computation.

    Subclasses implement :meth:`teacher_objective` and :meth:`student_objective`; they override
    :meth:`forward_teacher` / :meth:`forward_student` only when a network takes other inputs (PSDNet's
    privileged teacher takes the GT), :meth:`extra_heads` when they bring heads of their own, and
    :meth:`set_epoch` when a weight follows a schedule.
    """

    name: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        check_needs(cls.needs, f"{cls.__name__}.needs")

    def __init__(self) -> None:
        super().__init__()
        self._recorders: dict[str, tuple[nn.Module, TapRecorder | None]] = {}  # role → (plain network, its hooks)

    def extra_heads(self, role: str) -> nn.Module | None:
        """Heads of this strategy's own that the ``role`` network's taps feed (``FusionNetwork.aux_taps``); None."""
        return None

    def tap(self, role: str, net: nn.Module) -> TapRecorder | None:
        """The forward hooks through which ``net`` (the ``role`` network, or a wrapper of it) gives :attr:`needs`,
        registered on first use for that network and kept; None when its output tuple suffices."""
        plain = unwrap(net)
        known = self._recorders.get(role)
        if known is None or known[0] is not plain:
            if known is not None and known[1] is not None:
                known[1].remove()
            self._recorders[role] = (plain, plain.tap_recorder(self.needs, self.extra_heads(role)))
        return self._recorders[role][1]

    def run(self, role: str, net: nn.Module, *inputs: torch.Tensor) -> FusionOutput:
        """One forward pass of the ``role`` network ``net`` (or its wrapper) on ``inputs`` as a :class:`FusionOutput`
        with :attr:`needs` filled."""
        return record_output(net, self.tap(role, net), self.needs, *inputs)

    @classmethod
    def from_config(cls, cfg: dict, teacher: nn.Module | None = None) -> DistillationStrategy:
        """The strategy as the resolved flag dict ``cfg`` configures it (loss weights, ``compat``); ``teacher``, the
        built teacher when there is one, describes itself by ``model_config()``."""
        return cls()

    def forward_teacher(self, teacher: nn.Module, lrhsi: torch.Tensor, hrmsi: torch.Tensor,
                        gt: torch.Tensor) -> FusionOutput:
        """The teacher's forward pass: (B, C, h, w), (B, M, s·h, s·w), GT (B, C, s·h, s·w) in [-1, 1]."""
        return self.run("teacher", teacher, lrhsi, hrmsi)

    def forward_student(self, student: nn.Module, lrhsi: torch.Tensor, hrmsi: torch.Tensor) -> FusionOutput:
        """The student's forward pass; the student never sees the GT."""
        return self.run("student", student, lrhsi, hrmsi)

    def teacher_objective(self, teacher: FusionOutput, gt: torch.Tensor) -> Objective:
        """The online teacher's loss against the GT (B, C, H, W) in [-1, 1]."""
        raise NotImplementedError

    def student_objective(self, student: FusionOutput, teacher: FusionOutput | None, gt: torch.Tensor) -> Objective:
        """The student's loss; ``teacher`` is already detached (or None without a teacher)."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Called by the co-trainer before every epoch (0-based); for warm-up schedules."""

    def student_gradient_norms(self, params: Iterable[nn.Parameter]) -> dict[str, torch.Tensor]:
        """{term: ‖∂(weighted term)/∂θ‖₂} of the last :meth:`student_objective` over the student's parameters θ,
        asked for by the co-trainer right after that objective, before its backward, every ``--grad_log_every``
        steps (TensorBoard ``grad/student/<term>``). Default: {} (a strategy that does not report its terms)."""
        return {}
