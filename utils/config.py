"""Command-line flags of the networks, shared by ``train_CSAKD.py`` and ``test_CSAKD.py``.

Flag names are the official ones. ``--compat official`` switches every documented deviation
back to the official behaviour (decisions.md); for the networks that is the attention of fusion
modes 2 and 3 and the default ``--adaptive_fuse`` (0 instead of 3).
"""

from __future__ import annotations

import argparse

from models import PAPER_STUDENT_LAYERS

MODEL_DEFAULTS = {
    "bands": 172,
    "msi_bands": 4,
    "num_base_chs": 86,
    "num_agg_feat": 43,
    "adaptive_fuse": None,  # resolved by compat: 3 (the paper's CSA), or 0 under --compat official
    "student_layers": "".join(map(str, PAPER_STUDENT_LAYERS)),
    "groups": 1,
    "scale": 4,
    "num_blocks": 6,
    "compat": None,
}


def parse_compat(value: str | None) -> str | None:
    """``--compat``: ``official`` → ``"official"``; ``none``/``fixed``/empty → ``None``."""
    if value is None or str(value).lower() in ("", "none", "null", "fixed", "corrected"):
        return None
    if str(value).lower() == "official":
        return "official"
    raise argparse.ArgumentTypeError(f"--compat: expected 'official' or 'none', got {value!r}")


def add_model_args(parser: argparse.ArgumentParser, shape_flags: bool = True) -> argparse.ArgumentParser:
    """Add the network flags (official names) to ``parser``.

    ``shape_flags=False`` leaves out ``--bands``, ``--msi_bands`` and ``--scale`` for a parser that
    already defines them with the data flags.
    """
    g = parser.add_argument_group("network")
    if shape_flags:
        g.add_argument("--bands", type=int, default=MODEL_DEFAULTS["bands"], help="HSI bands C (172 for AVIRIS)")
        g.add_argument("--msi_bands", type=int, default=MODEL_DEFAULTS["msi_bands"], help="HR-MSI bands M (4 or 6)")
        g.add_argument("--scale", type=int, default=MODEL_DEFAULTS["scale"], help="HR-MSI / LR-HSI size ratio")
    g.add_argument("--num_base_chs", type=int, default=MODEL_DEFAULTS["num_base_chs"], help="stream width nf")
    g.add_argument("--num_agg_feat", type=int, default=MODEL_DEFAULTS["num_agg_feat"],
                   help="CLRA dense growth width gc")
    g.add_argument("--adaptive_fuse", type=int, choices=range(5), default=MODEL_DEFAULTS["adaptive_fuse"],
                   help="fusion: 0 sum, 1 sigmoid weights, 2 cross-attention, 3 CSA, 4 concat attention "
                        "(default 3; 0 under --compat official)")
    g.add_argument("--student_layers", type=str, default=MODEL_DEFAULTS["student_layers"],
                   help="student CLRA blocks of Z_hm, Z_mh, Z_h, Z_m, e.g. 1441 (Z_hm's count has no effect)")
    g.add_argument("--groups", type=int, default=MODEL_DEFAULTS["groups"], help="groups of the head conv")
    g.add_argument("--num_blocks", type=int, default=MODEL_DEFAULTS["num_blocks"],
                   help="accepted for compatibility; ignored, as in the official code")
    g.add_argument("--compat", type=parse_compat, default=MODEL_DEFAULTS["compat"],
                   help="'official' keeps the official code's behaviour (see decisions in README)")
    return parser


def resolve_model_config(cfg: dict) -> dict:
    """Fill the compat-dependent defaults of a flag dict in place and return it."""
    if cfg.get("adaptive_fuse") is None:
        cfg["adaptive_fuse"] = 0 if cfg.get("compat") == "official" else 3
    return cfg
