"""The network families ``--arch`` chooses from (:data:`NETWORKS`) and the network options they share.

A family registers a builder ``(cfg, role) -> nn.Module`` (``role`` ``"teacher"`` or ``"student"``, ``cfg`` a flag
dict) with the options only it reads, beside its code (``models/dts.py``, ``models/psd.py``)::

    @NETWORKS.register("dts", options=DTS_OPTIONS)
    def build_dts(cfg: dict, role: str) -> nn.Module: ...
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from torch import nn

from utils import defaults
from utils.config import Option, Range
from utils.registry import Registry

NETWORK = "network"  # the options' group in --help

NETWORKS: Registry[Callable[[dict, str], nn.Module]] = Registry("network family", "--arch")


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
