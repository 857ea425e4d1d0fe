"""Command-line flags and YAML configs of ``train_CSAKD.py`` and ``test_CSAKD.py`` (the one home for both).

Flag names are the official ones (docs/csakd.md §5.1, §6.2) plus this project's additions. A run's
configuration is one plain dict keyed by the flag names (``dest``), resolved in one way only::

    defaults (the flag definitions)  ←  YAML file (--config FILE)  ←  command line

YAML keys are the flag names (``batch_size: 8``, ``student_layers: "1441"``); a key that no flag of
either script defines is an error naming the closest valid key. Keys that only the other script uses
(``results`` in a training run, ``epochs`` in a test run) are accepted and ignored, so one YAML file
serves both scripts. The resolved dict is saved as YAML next to the checkpoints and inside every
checkpoint; that file is itself a valid ``--config``.

``--compat official`` switches every documented deviation back to the official behaviour
(docs/decisions.md); here that is the defaults of :data:`COMPAT_DEFAULTS` (``--adaptive_fuse``, ``--w_feat``),
the refusal of ``--residual`` and the validation subset (every 5th batch instead of the whole set).
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import reprlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import yaml

from losses.distillation import FEATURE_NORMS
from losses.progressive import PSD_FEATURE_WEIGHT
from models import ARCHS, PAPER_STUDENT_LAYERS, TEACHER_LAYERS, parse_student_layers
from utils import defaults

MODEL_DEFAULTS = {
    "bands": defaults.BANDS,
    "msi_bands": defaults.MSI_BANDS,
    "num_base_chs": defaults.NUM_BASE_CHS,
    "num_agg_feat": defaults.NUM_AGG_FEAT,
    "adaptive_fuse": None,  # resolved by compat: COMPAT_DEFAULTS
    "student_layers": "".join(map(str, PAPER_STUDENT_LAYERS)),
    "teacher_layers": "".join(map(str, TEACHER_LAYERS)),
    "groups": defaults.GROUPS,
    "scale": defaults.SCALE,
    "num_blocks": 6,
    "residual": False,
    "compat": None,
}

KD_MODES = ("online", "offline", "none")
AMP_MODES = ("off", "bf16", "fp16")
VAL_METRICS = ("psnr", "sam", "ergas", "rmse", "ssim")
TEST_METRICS = ("psnr", "sam", "ergas", "rmse", "ssim", "uiqi", "cc")
CONFIG_RELATIVE_KEYS = ("train_file", "val_file", "test_file")  # looked up beside the YAML file first
OFFICIAL_VAL_EVERY = 5  # official validation scores only every 5th validation batch (docs/decisions.md #7)


class ConfigError(ValueError):
    """A configuration problem: names the flag or YAML key, what was found and what was expected."""


class Range(NamedTuple):
    """Allowed values of a numeric flag: ``low <= v`` (``low < v`` if ``open_low``), ``v <= high`` if set."""

    low: float
    open_low: bool = False
    high: float | None = None

    def describe(self) -> str:
        text = f"{'>' if self.open_low else '>='} {self.low:g}"
        return text + (f" and <= {self.high:g}" if self.high is not None else "")

    def holds(self, v: float) -> bool:
        return (v > self.low if self.open_low else v >= self.low) and (self.high is None or v <= self.high)


# The one place for value ranges (both scripts and data.prepare; a flag a parser lacks is skipped). Every float
# flag is also required to be finite (`--lr inf` would train to NaN weights); lists are checked element-wise.
RANGES: dict[str, Range] = {
    **dict.fromkeys(("epochs", "batch_size", "val_batch_size", "eval_step", "step_size", "nan_patience", "bands",
                     "msi_bands", "scale", "num_base_chs", "num_agg_feat", "groups", "crop_size", "blur_size",
                     "hkd_row_chunk", "hkd_sample_rows", "psd_patches"), Range(1)),
    **dict.fromkeys(("weight_decay", "w_sam", "w_beba", "w_kd", "w_feat", "workers",
                     "tile", "tile_overlap", "warmup", "tb_scenes", "image_size", "resume_ind", "phase", "rgb_bands",
                     "synthetic_scenes", "blur_sigma", "misreg", "gpus", "finetuning_step",
                     "unlabelled", "w_unlabelled", "w_augment", "kd_warmup", "grad_log_every", "hkd_heads",
                     "psd_feat_weight", "psd_patch_overlap",
                     "stride", "synthetic", "realistic", "split_fractions"), Range(0)),  # the last 4: data.prepare
    "synthetic_size": Range(1),
    # Finite but absurd values overflow later (10^(snr/10) beyond ~3000 dB; an lr of 1e308 trains to Inf weights):
    # bounded here so that they end at parse time, before anything is written.
    **dict.fromkeys(("snr", "snr_hsi", "snr_msi"), Range(0, high=300)),
    "lr": Range(0, open_low=True, high=1e3),
    "kd_decay": Range(0, high=1),
    "block_mix": Range(0, high=1),
    "block_mix_weight": Range(0),
}


def parse_compat(value: str | None) -> str | None:
    """``--compat``: ``official`` → ``"official"``; ``none``/``fixed``/empty → ``None``."""
    if value is None or str(value).lower() in ("", "none", "null", "fixed", "corrected", "default"):
        return None
    if str(value).lower() == "official":
        return "official"
    raise argparse.ArgumentTypeError(f"--compat: expected 'official' or 'none', got {value!r}")


def _str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {value!r}")


def _metric_list(value: str | Sequence[str]) -> list[str]:
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
    unknown = [n for n in names if n not in TEST_METRICS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown metric(s) {unknown}; choose from {','.join(TEST_METRICS)}")
    return names


# ---------------------------------------------------------------------------------------------------------------------
# Flag groups


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
                        f"({compat_default_help('adaptive_fuse')})")
    g.add_argument("--student_layers", type=str, default=MODEL_DEFAULTS["student_layers"],
                   help="student CLRA blocks of Z_hm, Z_mh, Z_h, Z_m, e.g. 1441 (Z_hm's count has no effect)")
    g.add_argument("--teacher_layers", type=str, default=MODEL_DEFAULTS["teacher_layers"],
                   help="teacher CLRA blocks of Z_hm, Z_mh, Z_h, Z_m: 6644 (teacher), 8866 (official Teacher-Large)")
    g.add_argument("--groups", type=int, default=MODEL_DEFAULTS["groups"], help="groups of the head conv")
    g.add_argument("--num_blocks", type=int, default=MODEL_DEFAULTS["num_blocks"],
                   help="accepted for compatibility; ignored, as in the official code")
    g.add_argument("--residual", type=_str2bool, default=MODEL_DEFAULTS["residual"],
                   help="true: both networks predict the correction to the bilinearly upsampled LR-HSI (global "
                        "residual learning; not official, refused under --compat official)")
    g.add_argument("--compat", type=parse_compat, default=MODEL_DEFAULTS["compat"],
                   help="'official' keeps the official code's behaviour (docs/official.md)")
    g.add_argument("--arch", choices=ARCHS, default=None,
                   help="network family: dts (CSAKD's DTS) or psd (PSDNet-style progressive, privileged teacher); "
                        "default psd with --kd_strategy psd, else dts")
    g.add_argument("--hkd_heads", type=int, default=None,
                   help="K intermediate image heads on both DTS networks, saved with them (HKDSR); "
                        "default 2 with --kd_strategy hkd, else 0")
    g.add_argument("--psd_patches", type=int, nargs=3, default=None, metavar=("P1", "P2", "P3"),
                   help="--arch psd multipatch: pieces per stage from {1, 2, 4}, e.g. 4 2 1 (default off)")
    g.add_argument("--psd_patch_overlap", type=int, default=None,
                   help="--arch psd multipatch: HR rows/columns neighbouring pieces share (even; default 32)")
    return parser


#: The one home of the defaults that depend on ``--compat``: {flag: {compat: value}} (None = corrected mode). A
#: flag listed here has the default None on the command line, filled in by :func:`resolve_model_config`.
COMPAT_DEFAULTS: dict[str, dict[str | None, Any]] = {
    "adaptive_fuse": {"official": 0, None: 3},  # the paper's CSA fusion; the official script's default is 0
    "w_feat": {"official": 0.1, None: 0.0},  # feature distillation: 0 measured best (docs/distillation.md)
}


def compat_default_help(flag: str) -> str:
    """"default A; B under --compat official" for a flag of :data:`COMPAT_DEFAULTS` (help texts)."""
    values = COMPAT_DEFAULTS[flag]
    return f"default {values[None]:g}; {values['official']:g} under --compat official"


def resolve_model_config(cfg: dict) -> dict:
    """Fill the compat-dependent defaults (:data:`COMPAT_DEFAULTS`) and the strategy-dependent ones of a flag dict in
    place and return it.

    One rule each: ``--kd_strategy psd`` implies ``--arch psd`` (any other strategy: ``dts``); ``--kd_strategy
    hkd`` on DTS networks implies ``--hkd_heads 2`` (otherwise 0). A contradicting explicit value is an error.
    """
    for flag, values in COMPAT_DEFAULTS.items():
        if flag in cfg and cfg[flag] is None:
            cfg[flag] = values[cfg.get("compat")]
    if cfg.get("compat") == "official" and cfg.get("residual"):
        raise ConfigError("--residual true: the official networks have no global skip; leave --residual out "
                          "under --compat official")
    if "arch" not in cfg:
        return cfg
    strategy = cfg.get("kd_strategy")
    if cfg["arch"] is None:
        cfg["arch"] = "psd" if strategy == "psd" else "dts"
    if strategy == "psd" and cfg["arch"] != "psd":
        raise ConfigError(f"--kd_strategy psd distils a progressive network's stages: it needs --arch psd, "
                          f"got --arch {cfg['arch']}")
    if cfg.get("hkd_heads") is None:
        cfg["hkd_heads"] = 2 if strategy == "hkd" and cfg["arch"] == "dts" else 0
    if cfg["hkd_heads"] < 0 or (cfg["arch"] == "psd" and cfg["hkd_heads"]):
        raise ConfigError(f"--hkd_heads {cfg['hkd_heads']}: expected ≥ 0, and 0 with --arch psd (its stage images "
                          f"are its intermediate outputs)")
    if strategy == "hkd" and cfg["arch"] == "dts" and not cfg["hkd_heads"]:
        raise ConfigError("--kd_strategy hkd distils intermediate images: it needs --hkd_heads K > 0 on the DTS "
                          "networks (default 2)")
    return cfg


def _add_common_args(parser: argparse.ArgumentParser, official_device: str) -> None:
    """Flags shared by both scripts: config file, seed, device, run naming, loader workers."""
    g = parser.add_argument_group("run")
    g.add_argument("--config", type=str, default=None, metavar="FILE.yaml",
                   help="YAML file whose keys are flag names; the command line overrides it")
    g.add_argument("--seed", "--SEED", dest="seed", type=int, default=defaults.SEED,
                   help="seed of every random stream (official --SEED 1029)")
    g.add_argument("--device", type=str, default="auto",
                   help=f"auto | cpu | cuda | cuda:N (official default {official_device})")
    g.add_argument("--prefix", type=str, default="KD_4bn_Band4",
                   help="run name: checkpoints in <checkpoint_dir>/<prefix>/, TensorBoard in <log_dir>/<prefix>")
    g.add_argument("--checkpoint_dir", type=str, default="checkpoints", help="parent folder of the run folders")
    g.add_argument("--workers", type=int, default=4, help="DataLoader worker processes (0 = load in the main process)")
    g.add_argument("--amp", choices=AMP_MODES, default="off",
                   help="mixed precision: off | bf16 | fp16 (autocast; fp16 training uses a gradient scaler); on a "
                        "CPU without native bf16/fp16 refused (emulated: slower than fp32)")
    g.add_argument("--allow_emulated_precision", action="store_true",
                   help="run --amp bf16|fp16 or --precision bf16 on a CPU that would only emulate them (for testing; "
                        "slower than fp32 there)")
    g.add_argument("--compile", action="store_true", help="wrap the networks with torch.compile (off by default)")
    g.add_argument("--network_mode", type=int, choices=(1,), default=1,
                   help="official input mode; CSAKD has only mode 1 (LR-HSI + HR-MSI)")
    g.add_argument("--DEBUG", dest="debug", type=_str2bool, nargs="?", const=True, default=False,
                   help="accepted for compatibility; no effect")
    g.add_argument("--gpus", type=int, default=1,
                   help="accepted for compatibility; no effect: one process uses one device, several GPUs or "
                        "machines are used with torchrun --nproc_per_node N (docs/distributed.md)")


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    # The data part owns its flags; add_model_args(shape_flags=False) leaves --bands/--msi_bands/--scale to it.
    from data import add_data_args  # local import: utils must not import data at package import time

    add_data_args(parser)


def _strategy_names() -> list[str]:
    from engine.strategies import STRATEGIES  # local import: the strategies import the losses and models

    return sorted(STRATEGIES)


def add_train_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Training flags: the official ones (docs/csakd.md §5.1) with their official meaning and defaults, then
    this project's additions."""
    g = parser.add_argument_group("training (official flags)")
    g.add_argument("--batch_size", type=int, default=4,
                   help="training batch size per process (global batch = this × processes; paper run: 8)")
    g.add_argument("--epochs", type=int, default=600, help="training epochs (paper run: 800)")
    g.add_argument("--lr", type=float, default=1e-4, help="initial learning rate of both networks")
    g.add_argument("--lr_scheduler", choices=("cosine", "step"), default="cosine",
                   help="teacher schedule: cosine to 1e-10 over the epochs, or StepLR(step_size, 0.92); "
                        "the student always uses StepLR(step_size, 0.9)")
    g.add_argument("--step_size", type=int, default=100, help="StepLR period in epochs")
    g.add_argument("--weight_decay", type=float, default=0.0, help="AdamW weight decay of both networks")
    g.add_argument("--snr", type=float, default=35.0,
                   help="AWGN on the training LR-HSI in dB (independent draws for teacher and student); 0 = none")
    g.add_argument("--eval_step", type=int, default=2, help="validate when epoch %% eval_step == 0 (epoch 0 included)")
    g.add_argument("--joint_loss", type=int, choices=(0, 1), default=1,
                   help="1: full losses; 0: reconstruction term only (no SAM/BEBA/distillation)")
    g.add_argument("--resume_ind", type=int, default=0,
                   help="official warm start: load both networks' last.pth from --resume_ckpt (or this run) "
                        "and continue at this epoch with fresh optimisers (cosine over epochs − resume_ind)")
    g.add_argument("--resume_ckpt", type=str, default="",
                   help="run folder of the warm start (default: this run's); a state.pth here means --resume")
    g.add_argument("--finetuning_step", type=int, default=300,
                   help="accepted for compatibility; unused, as in the official training loop")
    w = parser.add_argument_group("loss weights (official: 0.1 each)")
    w.add_argument("--w_sam", type=float, default=0.1, help="SAM term (teacher and student)")
    w.add_argument("--w_beba", type=float, default=0.1, help="band-energy (BEBA) term (teacher and student)")
    w.add_argument("--w_kd", type=float, default=0.1, help="response distillation SmoothL1(S, T)")
    w.add_argument("--w_feat", type=float, default=None,
                   help=f"feature distillation BCE(σ(F_S), σ(F_T)) ({compat_default_help('w_feat')})")
    h = parser.add_argument_group("related strategies (--kd_strategy hkd | psd; docs/strategies.md)")
    h.add_argument("--hkd_acf", choices=("global", "pixel", "none"), default="global",
                   help="hkd: adaptive channel fusion target, one weight pair per image or per pixel and band")
    h.add_argument("--hkd_row_chunk", type=int, default=None,
                   help="hkd: FSM similarity rows per chunk, recomputed in the backward pass (exact, less memory)")
    h.add_argument("--hkd_sample_rows", type=int, default=None,
                   help="hkd: FSM on this many random rows only (a deviation from HKDSR: an unbiased estimate)")
    h.add_argument("--psd_feat_weight", type=float, default=PSD_FEATURE_WEIGHT,
                   help="psd: weight λ of the stage-feature MSE (authors' 1e-6)")
    n = parser.add_argument_group("training (this project)")
    n.add_argument("--kd_mode", choices=KD_MODES, default="online",
                   help="online: the paper's per-batch co-training; offline: frozen teacher from --teacher_ckpt; "
                        "none: the student alone (baseline without distillation)")
    n.add_argument("--kd_strategy", choices=_strategy_names(), default="csakd",
                   help="distillation strategy (engine/strategies): what the student learns from the teacher; "
                        "csakd = the paper's response + feature distillation")
    n.add_argument("--teacher_ckpt", type=str, default="", help="teacher weights for --kd_mode offline")
    n.add_argument("--student_init", choices=("random", "teacher"), default="random",
                   help="teacher: start the student from the converged --teacher_ckpt wherever a module matches by "
                        "name and shape (stems, first stream blocks, CSA fuser, head; named in the log), with "
                        "--kd_mode none (inheritance alone) or offline (docs/distillation.md)")
    n.add_argument("--eval_last", action="store_true",
                   help="also validate after the last epoch (official: only when epoch %% eval_step == 0), so that "
                        "best.pth can be the final weights")
    n.add_argument("--student_lr_scheduler", choices=("step", "cosine"), default="step",
                   help="student schedule: step = the official StepLR(step_size, 0.9); cosine = to 1e-10 over the "
                        "epochs, as the teacher's (docs/distillation.md)")
    v = parser.add_argument_group("csakd strategy variants (not official; the defaults are the paper's terms)")
    v.add_argument("--feat_adapter", action="store_true",
                   help="learn a 1×1 conv from the student's fused feature to the teacher's before the feature "
                        "term (trained with the student, saved in state.pth, not in the student's weights)")
    v.add_argument("--feat_norm", choices=("none", *FEATURE_NORMS), default="none",
                   help="feature term: none = official BCE; std = MSE of per-channel standardised features; "
                        "cosine = 1 − per-pixel cosine")
    v.add_argument("--kd_warmup", type=float, default=0.0,
                   help="epochs of a linear warm-up of w_kd and w_feat from 0 (0 = none)")
    v.add_argument("--kd_decay", type=float, default=0.0,
                   help="late decay: w_kd and w_feat fall linearly to 0 over this last fraction of the epochs (the "
                        "last epoch without distillation; 0 = none)")
    v.add_argument("--block_mix", type=float, default=0.0,
                   help="--kd_mode offline: probability per step that the student's stream features continue "
                        "through the frozen teacher's remaining blocks, fuser and head, trained to the GT and the "
                        "teacher (MiPKD-style block mixing; 0 = off)")
    v.add_argument("--block_mix_weight", type=float, default=0.1, help="weight of the block-mixing loss")
    v.add_argument("--w_unlabelled", type=float, default=0.1,
                   help="weight of SmoothL1(S, T) on the --unlabelled pairs (the teacher's labels; GT for none)")
    v.add_argument("--kd_augment", action="store_true",
                   help="invertible-augmentation consistency: a random flip / transpose / sign inversion of the "
                        "student's inputs, undone on its output, matched to the teacher's output on the original "
                        "view (the GT with --kd_mode none: the teacher-free control)")
    v.add_argument("--w_augment", type=float, default=0.1, help="weight of the --kd_augment term")
    v.add_argument("--grad_log_every", type=int, default=0,
                   help="every N steps log to TensorBoard grad/student/<term>: the norm of each weighted term's "
                        "gradient on the student's parameters (one extra backward per term; 0 = off)")
    n.add_argument("--resume", type=str, nargs="?", const="auto", default=None, metavar="STATE",
                   help="continue exactly from a full training state (default <run>/state.pth)")
    n.add_argument("--legacy_state", action="store_true",
                   help="resume a training state of format version 3 or earlier (before plain-data states): trusts "
                        "NumPy's array reconstructor to read its RNG state, and nothing else; for files you wrote")
    n.add_argument("--overwrite", action="store_true", help="start afresh even if the run folder holds a run")
    n.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (bit-exact reruns and resumes on the same machine)")
    n.add_argument("--grad_checkpoint", action="store_true", help="gradient checkpointing (less memory, slower)")
    n.add_argument("--nan_patience", type=int, default=3,
                   help="after this many non-finite steps in a row: restore the last good state, halve the lrs")
    n.add_argument("--val_batch_size", type=int, default=None, help="validation batch size (default --batch_size)")
    n.add_argument("--val_metrics", type=_metric_list, default=list(VAL_METRICS), help="comma-separated")
    n.add_argument("--log_dir", type=str, default="runs", help="TensorBoard parent folder (run in <log_dir>/<prefix>)")
    n.add_argument("--tb_scenes", type=int, default=2, help="validation scenes drawn to TensorBoard (0 = none)")
    n.add_argument("--rgb_bands", type=int, nargs=3, default=None, metavar=("R", "G", "B"),
                   help="band indices of the false-colour composites (default: nearest to 640/550/460 nm)")
    n.add_argument("--no_progress", action="store_true", help="no tqdm progress bar")
    return parser


def add_test_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Flags of ``test_CSAKD.py``: the official ones (docs/csakd.md §6.2) and this project's additions."""
    g = parser.add_argument_group("test")
    g.add_argument("--test_mode", type=int, choices=(1, 2, 3), default=2,
                   help="1: teacher, 2: student, 3: complexity of both (no data or checkpoint)")
    g.add_argument("--checkpoint", type=str, default=None,
                   help="weights (this project's or an official .pth); default <run>/<teacher|student>/best.pth")
    g.add_argument("--split", choices=("test", "val"), default="test", help="split to evaluate")
    g.add_argument("--batch_size", type=int, default=1, help="test batch size (official 1)")
    g.add_argument("--results", type=str, default=None, metavar="DIR",
                   help="write per_image.csv, summary.json and the predictions (.mat) here")
    g.add_argument("--raw_units", action="store_true", help="save predictions de-normalised to the GT's raw units")
    g.add_argument("--metrics", type=_metric_list, default=list(TEST_METRICS), help="comma-separated")
    g.add_argument("--tile", type=int, default=0, help="tiled inference: LR-HSI tile side in LR pixels (0 = off)")
    g.add_argument("--tile_overlap", type=int, default=4, help="overlap of neighbouring tiles in LR pixels")
    g.add_argument("--warmup", type=int, default=2, help="untimed forwards before timing")
    g.add_argument("--snr", type=float, default=0.0, help="AWGN on the test LR-HSI in dB (0 = none, official)")
    g.add_argument("--json", type=str, default=None, help="--test_mode 3: also write the figures to this JSON file")
    g.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="torch: a weight file run by PyTorch; onnxruntime: an exported .onnx --checkpoint")
    g.add_argument("--precision", choices=("fp32", "bf16", "int8"), default=None,
                   help="torch: fp32 (default) or bf16 weights and activations (refused on a CPU without native "
                        "bf16); onnxruntime: must match the file (default: the file's). Not fp32: the fp32 network "
                        "is also run on the same images")
    g.add_argument("--reference", type=str, default=None,
                   help="fp32 network (weight file or .onnx) for the metrics' change; default: the same weights in "
                        "fp32, or the source checkpoint recorded in the .onnx file")
    g.add_argument("--resume_ind", type=int, default=999,
                   help="accepted for compatibility (official: >0 loads the checkpoint); the weights are always loaded")
    for name, kind in (("lr", float), ("step_size", int), ("eval_step", int), ("finetuning_step", int),
                       ("weight_decay", float), ("joint_loss", int)):
        g.add_argument(f"--{name}", type=kind, default=None, help=argparse.SUPPRESS)  # official leftovers, unused
    return parser


def build_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Co-train the CSAKD teacher and student (online distillation).")
    _add_common_args(parser, official_device="cuda:0")
    add_train_args(parser)
    add_model_args(parser, shape_flags=False)
    _add_data_flags(parser)
    return parser


def build_test_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a CSAKD teacher or student, or count its complexity.")
    _add_common_args(parser, official_device="cuda:0")
    parser.set_defaults(prefix="KD_4bn_Band4", workers=0)
    add_test_args(parser)
    # In a shared YAML these keys are training settings (35 dB training noise, the training batch); the
    # test script's flags of the same name (test-time noise, test batch) are set on the command line only.
    parser.yaml_ignored = ("snr", "batch_size")
    add_model_args(parser, shape_flags=False)
    _add_data_flags(parser)
    return parser


# ---------------------------------------------------------------------------------------------------------------------
# YAML and resolution


def _names(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every accepted YAML key (dest and long option names without dashes) → its action."""
    out = {}
    for action in parser._actions:
        if action.dest in ("help", "config"):
            continue
        out[action.dest] = action
        for opt in action.option_strings:
            if opt.startswith("--"):
                out[opt[2:]] = action
    return out


class _Refused(yaml.YAMLError):
    """A YAML file that parses but is refused (a key given twice, too many aliases); the message is one line."""


#: Aliases (``*name``) a config may use. Each alias repeats a whole node, so a few hundred bytes of nested
#: aliases expand to gigabytes (a "billion laughs" file); a config needs few, if any.
MAX_YAML_ALIASES = 16

#: How values read from a file are shown in messages (a long list is cut, never printed whole).
_SHOWN = reprlib.Repr()
_SHOWN.maxlist, _SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother = 8, 3, 60, 60


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys (the last would silently win) and reads integers the
    YAML 1.2 way: YAML 1.1's octal (``0122`` → 82) and sexagesimal (``1:20`` → 80) forms stay strings, so a
    string flag (``student_layers: 0122``) keeps its digits and an int flag reads them in decimal. More than
    :data:`MAX_YAML_ALIASES` aliases are refused as they are met, before anything is expanded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                line = self.peek_event().start_mark.line + 1
                raise _Refused(f"more than {MAX_YAML_ALIASES} aliases (*name; the one on line {line} is number "
                               f"{self._aliases}): each repeats a whole value, so nested aliases can expand to "
                               f"gigabytes; write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key != "<<" and isinstance(key, str | int | float | bool) and key in seen:
                raise _Refused(f"key {key!r} appears twice (lines {seen[key]} and {line}); keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))
_ConfigLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def load_config_file(path: str | os.PathLike) -> dict:
    """Read a YAML config (UTF-8): a mapping of flag names to values, read by :class:`_ConfigLoader`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--config {path}: no such file")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--config {path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          f"save the file as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_ConfigLoader)
    except _Refused as exc:
        raise ConfigError(f"--config {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of flag names to values, found {type(data).__name__}")
    return data


def _convert(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    """Apply a flag's type and choices to a YAML value, as argparse does to a command-line string."""
    def one(v: Any) -> Any:
        v = _yaml_scalar(action, key, v, source)
        if action.type is not None and (isinstance(v, str) or action.type is _metric_list):
            try:
                v = action.type(v)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
                raise ConfigError(f"{source}: key {key!r}: {exc}") from None
        if action.choices is not None and v not in action.choices:
            raise ConfigError(f"{source}: key {key!r} = {_SHOWN.repr(v)}; expected one of {list(action.choices)}")
        return v

    if value is None:
        if action.default is not None:  # null is "unset" only for flags whose default is unset
            raise ConfigError(f"{source}: key {key!r} is null; expected a value like the default {action.default!r} "
                              f"(or leave the key out)")
        return None
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: key {key!r} is a switch; expected true or false, got {_SHOWN.repr(value)}")
        return value
    if isinstance(action.nargs, int) or action.nargs in ("+", "*"):
        values = value if isinstance(value, list) else [value]
        if isinstance(action.nargs, int) and len(values) != action.nargs:
            raise ConfigError(f"{source}: key {key!r} takes {action.nargs} values, got {_SHOWN.repr(values)}")
        return [one(v) for v in values]
    if isinstance(value, list) and action.type is not _metric_list:
        raise ConfigError(f"{source}: key {key!r} takes one value, got the list {_SHOWN.repr(value)}")
    return one(value)


def _yaml_scalar(action: argparse.Action, key: str, v: Any, source: str) -> Any:
    """Check a YAML scalar's type against the flag's: an int flag takes whole numbers only (``epochs: 1.5``
    is refused, not truncated), a float flag takes numbers, a string flag takes strings (digits too)."""
    kind = action.type if action.type in (int, float, str) else (str if action.type is None else None)
    if kind is None or isinstance(v, str):
        return v
    number = isinstance(v, int | float) and not isinstance(v, bool)
    if kind is int and not (number and isinstance(v, int)):
        raise ConfigError(f"{source}: key {key!r} = {_SHOWN.repr(v)}; expected a whole number")
    if kind is float and not number:
        raise ConfigError(f"{source}: key {key!r} = {_SHOWN.repr(v)}; expected a number")
    if kind is str:
        if not (number and isinstance(v, int)):
            raise ConfigError(f"{source}: key {key!r} = {_SHOWN.repr(v)}; expected a string (quote it: {key}: \"{v}\")")
        return str(v)
    return float(v) if kind is float else v


def check_ranges(cfg: dict) -> None:
    """Raise ConfigError for the first value outside :data:`RANGES` and for any non-finite number."""
    for key, value in cfg.items():
        for v in value if isinstance(value, list | tuple) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"--{key}: expected a finite number, got {v}")
            rule = RANGES.get(key)
            if rule is not None and isinstance(v, int | float) and not isinstance(v, bool) and not rule.holds(v):
                raise ConfigError(f"--{key}: expected a number {rule.describe()}, got {v}")


def _beside_config(config: str, values: dict) -> dict:
    """Split-list paths of a YAML file that name a file relative to the YAML file's folder, made relative to
    the working directory (so ``configs/aviris_band4.yaml`` finds ``configs/splits/aviris/*.txt`` from any
    folder). Other values are left as given: the dataset then looks them up as given, then under ``--root``."""
    folder = os.path.dirname(os.path.abspath(config))
    out = {}
    for key in CONFIG_RELATIVE_KEYS:
        value = values.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            candidate = os.path.join(folder, value)
            if os.path.isfile(candidate):
                out[key] = os.path.relpath(candidate)
    return out


def parse_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None,
                 other: argparse.ArgumentParser | None = None, base: dict | None = None,
                 values: Mapping[str, Any] | None = None) -> dict:
    """Resolve defaults ← ``base`` ← ``--config`` YAML ← ``values`` ← command line into one flag dict.

    ``other`` is the sibling script's parser: YAML keys only it defines are accepted and dropped.
    ``base`` (a saved run config, for ``--resume``) replaces the flag defaults for the keys it has.
    ``values`` ({flag name: value}, from Python) are checked and typed as YAML values are (a string as the
    command line's, e.g. ``{"w_feat": "0"}``; a list for a flag of several values; a bool for a switch); unknown
    names are refused.
    Raises ConfigError naming every unknown YAML key with the closest valid one.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    mine = _names(parser)
    theirs = _names(other) if other is not None else {}
    for key in getattr(parser, "yaml_ignored", ()):  # same name, different meaning in this script
        theirs[key] = mine.pop(key)
    overrides = {k: v for k, v in (base or {}).items() if k in mine and k != "config"}
    if known.config:
        file_cfg = load_config_file(known.config)
        unknown = [k for k in file_cfg if k not in mine and k not in theirs]
        if unknown:
            valid = sorted(set(mine) | set(theirs))
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(str(k), valid, n=1, cutoff=0.5)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(f"--config {known.config}: unknown key(s) {', '.join(hints)}; "
                              f"keys are flag names, see --help")
        for key, value in file_cfg.items():
            if key in mine:
                action = mine[key]
                overrides[action.dest] = _convert(action, key, value, f"--config {known.config}")
        overrides.update(_beside_config(known.config, overrides))
    flags = _names(parser)  # all of them: a value given in Python is meant for this script, as on its command line
    for key, value in (values or {}).items():
        if key not in flags:
            close = difflib.get_close_matches(str(key), list(flags), n=1, cutoff=0.5)
            raise ConfigError(f"unknown flag {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        overrides[flags[key].dest] = _convert(flags[key], key, value, f"--{key}")
    parser.set_defaults(**overrides)
    cfg = vars(parser.parse_args(argv))
    cfg["config"] = known.config
    return cfg


def resolve_train_config(config: str | None = None, values: Mapping[str, Any] | None = None) -> dict:
    """The resolved training configuration of YAML file ``config`` (or none) with ``values`` over it, as
    ``train_CSAKD.py --config config --flag value ...`` resolves it (without ``--resume``'s saved base): the
    argument of ``engine.train.train``."""
    return resolve_config(parse_config(build_train_parser(), _config_argv(config), other=build_test_parser(),
                                       values=values))


def resolve_test_config(config: str | None = None, values: Mapping[str, Any] | None = None) -> tuple[dict, set[str]]:
    """(the resolved test configuration, the flags set explicitly) of YAML file ``config`` with ``values`` over
    it, as ``test_CSAKD.py`` resolves them (in a shared YAML, ``snr`` and ``batch_size`` are training settings:
    give the test's in ``values``): the arguments of ``engine.testing.evaluate_run``."""
    cfg = resolve_config(parse_config(build_test_parser(), _config_argv(config), other=build_train_parser(),
                                      values=values))
    return cfg, explicit_keys(build_test_parser(), _config_argv(config)) | set(values or {})


def _config_argv(config: str | None) -> list[str]:
    return ["--config", config] if config else []


def explicit_keys(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> set[str]:
    """The flag names (``dest``) that ``argv`` or its ``--config`` YAML file set, as opposed to defaults.

    ``parser`` is a fresh parser of the script (its defaults are replaced here). Used where a value read
    from a file (a checkpoint's widths) takes the place of a default but must not silently override a flag.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    given = set()
    if known.config:
        names = _names(parser)
        given |= {names[k].dest for k in load_config_file(known.config) if k in names}
    unset = object()  # not a string, so argparse never converts it
    parser.set_defaults(**{a.dest: unset for a in parser._actions if a.dest != "help"})
    given |= {k for k, v in vars(parser.parse_args(argv)).items() if v is not unset}
    given.discard("config")
    return given


def resolve_config(cfg: dict) -> dict:
    """Normalise a parsed flag dict in place (compat-dependent defaults, canonical forms) and check it."""
    resolve_model_config(cfg)
    for key in ("student_layers", "teacher_layers"):
        if key not in cfg:
            continue
        try:
            layers = parse_student_layers(cfg[key], key)
        except ValueError as exc:
            raise ConfigError(f"--{exc}") from None
        cfg[key] = "".join(map(str, layers)) if max(layers) < 10 else ",".join(map(str, layers))
    check_ranges(cfg)
    if cfg.get("kd_mode") == "offline" and not cfg.get("teacher_ckpt"):
        raise ConfigError("--kd_mode offline needs --teacher_ckpt (the frozen teacher's weights)")
    if cfg.get("unlabelled") and (cfg.get("dataset") not in ("synthetic", "realistic")
                                  or cfg.get("kd_mode") == "online"):
        raise ConfigError(f"--unlabelled {cfg['unlabelled']}: extra scenes of --dataset synthetic or realistic, "
                          f"labelled by a frozen teacher (--kd_mode offline) or, for the control, by their GT "
                          f"(--kd_mode none); got --dataset {cfg.get('dataset')} --kd_mode {cfg.get('kd_mode')}")
    if (cfg.get("unlabelled") or cfg.get("kd_augment")) and cfg.get("kd_strategy", "csakd") != "csakd":
        raise ConfigError("--unlabelled / --kd_augment label inputs with the teacher's plain output: they need "
                          f"--kd_strategy csakd, got {cfg.get('kd_strategy')}")
    if cfg.get("block_mix") and (cfg.get("kd_mode") != "offline" or cfg.get("kd_strategy", "csakd") != "csakd"):
        raise ConfigError("--block_mix continues the student through a frozen teacher: it needs --kd_mode offline "
                          "(and --kd_strategy csakd)")
    if cfg.get("student_init") == "teacher" and (cfg.get("kd_mode") == "online" or not cfg.get("teacher_ckpt")):
        raise ConfigError("--student_init teacher copies a converged teacher: it needs --teacher_ckpt and --kd_mode "
                          "none or offline (an online teacher starts untrained)")
    if cfg.get("resume_ind", 0) and "epochs" in cfg and cfg["resume_ind"] >= cfg["epochs"]:
        raise ConfigError(f"--resume_ind {cfg['resume_ind']} must be smaller than --epochs {cfg['epochs']}")
    if cfg.get("tile") and cfg["tile"] <= 2 * cfg.get("tile_overlap", 0):
        raise ConfigError(f"--tile {cfg['tile']} must exceed twice --tile_overlap {cfg['tile_overlap']}")
    if "prefix" in cfg:
        check_run_name(str(cfg["prefix"]))
    return cfg


def check_run_name(prefix: str) -> None:
    """``--prefix`` is one folder name: ``<checkpoint_dir>/<prefix>`` and ``<log_dir>/<prefix>`` are always a child
    of those folders, never the folder itself, a parent, another tree or an absolute path."""
    bad = [c for c in prefix if ord(c) < 32 or ord(c) == 127]
    seps = [s for s in ("/", "\\", os.sep, os.altsep) if s and s in prefix]
    if prefix in ("", ".", "..") or bad or seps:
        why = ("is empty" if not prefix else f"is {prefix!r}, which names no new folder" if prefix in (".", "..")
               else f"holds a path separator {seps[0]!r}" if seps else f"holds the control character {bad[0]!r}")
        raise ConfigError(f"--prefix {prefix!r}: a run name {why}; expected one folder name (the run folder is "
                          f"<checkpoint_dir>/<prefix>; choose the parent with --checkpoint_dir)")


def run_dir(cfg: dict) -> str:
    """The run folder ``<checkpoint_dir>/<prefix>``."""
    return os.path.join(cfg["checkpoint_dir"], cfg["prefix"])


def config_to_yaml(cfg: dict) -> str:
    """The flag dict as YAML (plain types), loadable again with ``--config``; the run-control flags
    (``config``, ``resume``, ``overwrite``, ``legacy_state``) are left out so that the file describes the run,
    not one command."""
    plain = {}
    for key, value in cfg.items():
        if key in ("config", "resume", "overwrite", "legacy_state"):
            continue
        plain[key] = list(value) if isinstance(value, tuple) else value
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=None)
