"""The written protocol of a fusion network: what the co-trainer, evaluation, complexity and export may use.

Every network family (the DTS teacher and student, :mod:`models.dts`; the PSDNet-style network,
:mod:`models.psd`; a plug-in's) subclasses :class:`FusionNetwork` and keeps to this contract; code outside
``models/`` reads nothing else of a network:

==========================  ==========================================================================
member                      meaning
==========================  ==========================================================================
``arch`` (class)            the family's ``--arch`` name, saved as ``"arch"`` with the weights (set by
                            the family's registration, :data:`models.family.NETWORKS`)
``role``                    ``"teacher"`` or ``"student"``
``bands``, ``msi_bands``    the input contract: LR-HSI (B, bands, h, w), HR-MSI (B, msi_bands, s·h, s·w)
``scale``                   s, the HR-MSI / LR-HSI size ratio
``privileged``              True when ``forward`` also takes the GT (B, bands, s·h, s·w) (the PSD teacher)
``output_modules`` (class)  the submodules whose rounding reaches the output directly (the head): int8
                            export keeps them in float32
``config``                  the constructor arguments, captured at construction (plain types)
``forward(lrhsi, hrmsi[,    the official tuple ``(hrhsi (B, bands, s·h, s·w), feature (B, nf, s·h, s·w))``,
gt])``                      in the data's [-1, 1] domain: what parity tests compare and ONNX exports
:meth:`provides`,           the auxiliary fields a strategy may ask for (``inter_outs``, ``stage_feats``)
:meth:`aux_taps`            and the submodules whose forward hooks give them (:mod:`models.taps`)
:meth:`forward_aux`         one pass as the output record :class:`models.outputs.FusionOutput`
:meth:`model_config`        ``{"role", "arch", **config}``: what a weight file saves to rebuild the network
:meth:`set_grad_checkpoint` activation recomputation (a ValueError where a family has none)
==========================  ==========================================================================

Constructor arguments are captured for every subclass without a hand-written list (as diffusers'
``register_to_config``): after ``__init__`` of the instance's own class, :attr:`FusionNetwork.config` holds
every argument by name, defaults applied. A network that normalises an argument (``"1441"`` →
``(1, 4, 4, 1)``) stores the normalised value under the argument's own name, and that form is saved; tuples
are saved as lists. :func:`models.family.network_class` and :func:`models.family.rebuild` turn a saved description
back into a network, with the class the family registered for its role.

Intermediate tensors a distillation strategy needs beyond the tuple are not outputs of the network: they are
taken with forward hooks (:mod:`models.taps`) on the submodules the family names for them in :meth:`aux_taps`
(a DTS network's tap depths depend on its block counts, so the family, not the strategy, knows the paths), and
``forward`` stays the paper's computation.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from .outputs import FusionOutput, check_needs
from .taps import Finish, Tap, TapRecorder, record_output

NOT_CONSTRUCTOR_KEYS = ("arch", "role", "large")  # keys of a saved description that are no constructor argument
DEFAULT_ARCH = "dts"  # the family of a description without "arch" (every file saved before families existed)


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists (a weight file holds plain types only)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _stored(net: nn.Module, name: str, given: Any) -> Any:
    """The value ``net`` stored under the constructor argument ``name`` (its normalised form), else ``given``."""
    value = getattr(net, name, given)
    return given if isinstance(value, nn.Module | torch.Tensor) or callable(value) else value


def _capturing(init: Callable[..., None], owner: type) -> Callable[..., None]:
    """``init`` that, when ``owner`` is the first class of the instance's MRO with its own ``__init__``, records the
    bound arguments (defaults applied) in ``self.config`` once construction is done."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: FusionNetwork, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if next(c for c in type(self).__mro__ if "__init__" in c.__dict__) is not owner:
            return  # a subclass's __init__ called this one through super(): the subclass records its own
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = {k: v for k, v in list(bound.arguments.items())[1:]}
        # the normalised form a network stored under the argument's name wins (saved as the network reads it)
        self.config = {k: _plain(_stored(self, k, v)) for k, v in arguments.items()}

    return wrapper


class FusionNetwork(nn.Module):
    """Base class of every fusion network family; see the module docstring for the protocol.

    Subclasses set ``role``, ``bands``, ``msi_bands``, ``scale`` (and ``privileged`` when they take the GT) and
    implement ``forward``; registering the family (:data:`models.family.NETWORKS`) sets ``arch``.
    """

    arch: ClassVar[str] = ""
    output_modules: ClassVar[tuple[str, ...]] = ()
    privileged: bool = False
    config: dict[str, Any]
    role: str
    bands: int
    msi_bands: int
    scale: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _capturing(cls.__dict__["__init__"], cls)  # type: ignore[method-assign]

    def model_config(self) -> dict[str, Any]:
        """The description a weight file saves: ``{"role", "arch", **constructor arguments}`` (plain types); the
        default family's leaves ``"arch"`` out, so a DTS file's description is what it always was."""
        arch = {} if self.arch == DEFAULT_ARCH else {"arch": self.arch}
        return {"role": self.role, **arch, **self.config}

    def provides(self, heads: nn.Module | None = None) -> frozenset[str]:
        """The auxiliary fields (``models.outputs.AUX_FIELDS``) this network can give: ``feat`` (the tuple's
        feature) always; a family adds what its :meth:`aux_taps` takes (``heads``: as there)."""
        return frozenset({"feat"})

    def aux_taps(self, needs: frozenset[str], heads: nn.Module | None = None) -> tuple[tuple[Tap, ...], Finish | None]:
        """The submodules whose forward hooks give the fields ``needs`` beyond ``feat``, and the ``finish`` that
        makes a dict of :class:`FusionOutput` fields of them (:class:`models.taps.TapRecorder`); ``heads``: extra
        heads on the taps where a family takes them (DTS: intermediate image heads). Default: none."""
        return (), None

    def tap_recorder(self, needs: frozenset[str], heads: nn.Module | None = None) -> TapRecorder | None:
        """Hooks on this network that give ``needs`` (None when the tuple suffices); a ValueError naming the network
        when it cannot give them."""
        needs = check_needs(needs, f"{type(self).__name__}.forward_aux")
        missing = needs - self.provides(heads)
        if missing:
            raise ValueError(f"{type(self).__name__}: needs {sorted(missing)}, but this network provides only "
                             f"{sorted(self.provides(heads))}" + self._missing_hint())
        taps, finish = self.aux_taps(needs, heads)
        return TapRecorder(self, taps, finish) if taps or finish is not None else None

    def _missing_hint(self) -> str:
        return ""

    def forward_aux(self, lrhsi: torch.Tensor, hrmsi: torch.Tensor, needs: frozenset[str] | set[str] = frozenset(),
                    gt: torch.Tensor | None = None, heads: nn.Module | None = None) -> FusionOutput:
        """One forward pass as a :class:`FusionOutput` with the auxiliary fields ``needs`` (only those, plus ``out``),
        taken by forward hooks that are removed afterwards. ``gt``: for a privileged network only. (A strategy keeps
        its hooks for the run instead, :class:`engine.strategies.base.DistillationStrategy`.)"""
        needs = check_needs(needs, f"{type(self).__name__}.forward_aux")
        recorder = self.tap_recorder(needs, heads)
        inputs = (lrhsi, hrmsi) if gt is None else (lrhsi, hrmsi, gt)
        try:
            return record_output(self, recorder, needs, *inputs)
        finally:
            if recorder is not None:
                recorder.remove()

    def set_grad_checkpoint(self, enabled: bool) -> FusionNetwork:
        """Recompute activations in the backward pass (``--grad_checkpoint``); families without it refuse."""
        if enabled:
            raise ValueError(f"--grad_checkpoint: not implemented for --arch {self.arch}; leave it out")
        return self
