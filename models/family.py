"""The network families ``--arch`` chooses from (:data:`NETWORKS`), the network options they share, and the
rebuilding of a network from a weight file's description (:func:`rebuild`).

A family registers, once and beside its code (``models/dts.py``, ``models/psd.py``), a builder
``(cfg, role) -> nn.Module`` (``role`` ``"teacher"`` or ``"student"``, ``cfg`` a flag dict), the
:class:`models.network.FusionNetwork` class of each role (what a weight file's description is rebuilt with,
:func:`network_class`, :func:`rebuild`) and the options only it reads::

    @NETWORKS.register("dts", classes={"teacher": Teacher, "student": Student}, options=DTS_OPTIONS)
    def build_dts(cfg: dict, role: str) -> nn.Module: ...
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from utils import defaults
from utils.config import Option, Range
from utils.registry import Registry

from .network import DEFAULT_ARCH, NOT_CONSTRUCTOR_KEYS, FusionNetwork

NETWORK = "network"  # the options' group in --help
ROLES = ("teacher", "student")

Builder = Callable[[dict, str], nn.Module]


@dataclass(frozen=True)
class NetworkFamily:
    """One ``--arch`` entry: ``build(cfg, role)`` makes a network of a flag dict; ``classes[role]`` is the class a
    saved description :meth:`FusionNetwork.model_config` of that role is rebuilt with."""

    build: Builder
    classes: Mapping[str, type[FusionNetwork]]


class NetworkRegistry(Registry[NetworkFamily]):
    """:class:`utils.registry.Registry` of the network families: one registration gives ``--arch`` its choice,
    the builder, the classes a weight file is rebuilt with and the options."""

    def register(self, name: str, options: Sequence[Any] = (),  # type: ignore[override]
                 classes: Mapping[str, type[FusionNetwork]] | None = None) -> Callable[[Builder], Builder]:
        """Decorator on a builder ``(cfg, role) -> nn.Module``: family ``name`` builds with it, and its weight files
        are rebuilt with ``classes`` (``{"teacher": cls, "student": cls}``, the same class for both where one class
        serves both); each class's ``arch`` becomes ``name`` (a class is of one family: its weights save it)."""
        if not classes or set(classes) - set(ROLES):
            raise ValueError(f"--arch {name}: classes must map roles {ROLES} to network classes, got {classes!r}")
        taken = {c.__name__: c.__dict__["arch"] for c in classes.values() if c.__dict__.get("arch", name) != name}
        if taken:
            raise ValueError(f"--arch {name}: the classes {taken} are registered with other families")

        def add(build: Builder) -> Builder:
            self.add(name, NetworkFamily(build, dict(classes)), options)
            for cls in classes.values():
                cls.arch = name  # what model_config saves as "arch"
            return build

        return add


NETWORKS = NetworkRegistry("network family", "--arch")


def parse_compat(value: str | None) -> str | None:
    """``--compat``: ``official`` → ``"official"``; ``none``/``fixed``/empty → ``None``."""
    if value is None or str(value).lower() in ("", "none", "null", "fixed", "corrected", "default"):
        return None
    if str(value).lower() == "official":
        return "official"
    raise argparse.ArgumentTypeError(f"--compat: expected 'official' or 'none', got {value!r}")


SHARED_OPTIONS = (
    Option("num_base_chs", type=int, default=defaults.NUM_BASE_CHS, range=Range(1), group=NETWORK,
           help="stream width nf"),
    Option("compat", type=parse_compat, group=NETWORK,
           help="'official' keeps the official code's behaviour (docs/official.md)"),
    # None: resolved from --kd_strategy (engine/flags.py); a training state holds one family's networks
    Option("arch", choices=NETWORKS, group=NETWORK, resume="fixed",
           help="network family: dts (CSAKD's DTS) or psd (PSDNet-style progressive, privileged teacher); default "
                "psd with --kd_strategy psd, else dts"),
)


def network_class(arch: str, role: str, name: str = "network") -> type[FusionNetwork]:
    """The class family ``arch`` registered for its ``role`` networks; a ValueError naming ``name`` (e.g. the file
    described) and the known families otherwise."""
    family = NETWORKS.get(arch)
    if family is None or role not in family.classes:
        known = sorted(f"{a}/{r}" for a, f in NETWORKS.items() for r in f.classes)
        raise ValueError(f"{name}: holds an --arch {arch!r} {role} network, which no loaded module provides; "
                         f"expected one of {known}")
    return family.classes[role]


def rebuild(description: Mapping[str, Any], name: str = "network") -> FusionNetwork:
    """A new network (fresh weights) from a saved description :meth:`FusionNetwork.model_config`."""
    cls = network_class(description.get("arch", DEFAULT_ARCH), description["role"], name)
    return cls(**{k: v for k, v in description.items() if k not in NOT_CONSTRUCTOR_KEYS})
