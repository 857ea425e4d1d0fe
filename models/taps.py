"""Intermediate tensors of a network taken by forward hooks on named submodules (torchdistill's ``forward_hook`` by
module path), so that a network's ``forward`` stays its own computation while a distillation strategy reads them.

A :class:`Tap` names one tensor: the output, or one positional input, of the submodule at a dotted path of the
plain network (``"mhfeat.0"``, ``"heads.1"``). A :class:`TapRecorder` hooks a network once and records its taps
only inside :meth:`TapRecorder.recording`, so other passes (validation, export, the extra forwards of data
upcycling) run untouched and cost nothing. Its optional ``finish`` runs in a forward hook on the network itself,
at the end of the same forward pass, on the recorded tensors: extra modules that consume them (HKDSR's
intermediate heads) then run inside whatever wraps the network's ``forward`` (DistributedDataParallel,
``torch.compile``), as parts of the network do.

Hooks live on the plain module (:func:`unwrap` strips the wrappers), so they are registered once, before or
after wrapping, and the wrapper is what is called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .outputs import FusionOutput

PORTS = ("output", "input")

#: ``finish(network_inputs, recorded, network_output) -> extra``: run at the end of the network's forward on its
#: positional inputs, the recorded tensors (in the order of the taps) and its output tuple.
Finish = Callable[[tuple[Any, ...], list[torch.Tensor], Any], Any]


@dataclass(frozen=True)
class Tap:
    """One tensor of a forward pass: the output (``port="output"``) or positional input ``index``
    (``port="input"``) of the submodule at ``path`` (``nn.Module.get_submodule`` syntax)."""

    path: str
    port: str = "output"
    index: int = 0

    def __post_init__(self) -> None:
        if self.port not in PORTS:
            raise ValueError(f"tap {self.path!r}: port {self.port!r}; expected one of {list(PORTS)}")


def unwrap(module: nn.Module) -> nn.Module:
    """The plain network inside ``torch.compile`` (``_orig_mod``) and DistributedDataParallel (``module``)."""
    while True:
        inner = getattr(module, "_orig_mod", None) or (module.module if isinstance(
            module, nn.parallel.DistributedDataParallel) else None)
        if inner is None:
            return module
        module = inner


@dataclass
class Recording:
    """What one recorded forward pass left: ``values`` in the order of the taps, ``extra`` = ``finish``'s result."""

    values: list[torch.Tensor]
    extra: Any = None


class TapRecorder:
    """Forward hooks on ``net`` (the plain network) that record ``taps`` while :meth:`recording` is active.

    Args:
        net: the network, or a wrapper of it (hooks go on :func:`unwrap` of it).
        taps: the tensors to record; a missing submodule is a ValueError naming the path and the network.
        finish: see the module docstring; None: nothing runs after the forward.
    """

    def __init__(self, net: nn.Module, taps: Sequence[Tap], finish: Finish | None = None) -> None:
        self.net, self.taps, self.finish = unwrap(net), tuple(taps), finish
        self._active: Recording | None = None
        self._handles = [self._hook(i, tap) for i, tap in enumerate(self.taps)]
        if finish is not None:
            self._handles.append(self.net.register_forward_hook(self._finish_hook()))

    def _hook(self, slot: int, tap: Tap) -> torch.utils.hooks.RemovableHandle:
        try:
            module = self.net.get_submodule(tap.path)
        except AttributeError:
            raise ValueError(f"tap {tap.path!r}: {type(self.net).__name__} has no such submodule") from None

        def hook(_module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if self._active is not None:
                self._active.values[slot] = output if tap.port == "output" else inputs[tap.index]

        return module.register_forward_hook(hook)

    def _finish_hook(self) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        # a closure, not a bound method: copy.deepcopy of the network then shares the hook instead of copying
        # this recorder (the copy's hooks stay inactive)
        def hook(_module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if self._active is not None:
                self._active.extra = self.finish(inputs, list(self._active.values), output)

        return hook

    @contextmanager
    def recording(self) -> Iterator[Recording]:
        """Record the taps of the forward passes inside the block (the last one's, if several)."""
        self._active = Recording(values=[None] * len(self.taps))  # type: ignore[list-item]
        try:
            yield self._active
        finally:
            missing = [t.path for t, v in zip(self.taps, self._active.values, strict=True) if v is None]
            self._active = None
        if missing:
            raise ValueError(f"taps {missing}: {type(self.net).__name__}'s forward pass did not run them")

    def remove(self) -> None:
        """Take the hooks off the network."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def record_output(call: Callable[..., Any], recorder: TapRecorder | None, needs: frozenset[str],
                  *inputs: torch.Tensor) -> FusionOutput:
    """``call(*inputs)`` (the network or its wrapper) as a :class:`FusionOutput`: ``out`` and, when in ``needs``,
    ``feat`` from the official tuple; the other fields from what ``recorder``'s ``finish`` made of its taps
    (a dict of :class:`FusionOutput` fields), those in ``needs`` only."""
    if recorder is None:
        out, feat = call(*inputs)
        extra: dict[str, Any] = {}
    else:
        with recorder.recording() as rec:
            out, feat = call(*inputs)
        extra = rec.extra or {}
    return FusionOutput(out=out, feat=feat if "feat" in needs else None,
                        **{k: v for k, v in extra.items() if k in needs})
