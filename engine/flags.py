"""The command line of ``train_CSAKD.py`` and ``test_CSAKD.py``: gathers every component's options (the run, training
and evaluation in :mod:`engine.options`, the strategies, network families and dataset kinds from their registries)
into the two parsers (``utils.config.add_options``), and resolves a parsed flag dict (the rules between components).

``--compat official`` switches every documented deviation back to the official behaviour (docs/decisions.md): the
defaults of the options with an ``official`` value (``--adaptive_fuse``, ``--w_feat``), the refusal of
``--residual`` and the validation subset (every 5th batch instead of the whole set).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from data.options import DATA, DATA_OPTIONS, DATASETS, DEGRADATION, DEGRADATION_OPTIONS
from data.pansharpening import PANSHARPENING
from models import NETWORKS, parse_student_layers
from models.family import NETWORK, SHARED_OPTIONS
from utils.config import (
    ConfigError,
    Option,
    add_options,
    check_ranges,
    check_run_name,
    explicit_keys,
    import_plugins,
    load_plugins,
    parse_config,
    plugin_name,
)

from . import options as own
from .strategies import STRATEGIES

TRAIN_GROUPS = (own.RUN, own.TRAINING, own.WEIGHTS, own.RELATED, own.PROJECT, own.VARIANTS, NETWORK, DATA,
                DEGRADATION, PANSHARPENING)
TEST_GROUPS = (own.RUN, own.TEST, NETWORK, DATA, DEGRADATION, PANSHARPENING)


def _components() -> list[Option]:
    """The options of the networks and the data, in ``--help`` order (read when called: plugins register late)."""
    return [*SHARED_OPTIONS, *NETWORKS.options(), *DATA_OPTIONS, *DATASETS.options(), *DEGRADATION_OPTIONS]


def _script_options(script: str) -> list[Option]:
    """Every option of ``script`` in ``--help`` order."""
    if script == "test":
        return [*own.TEST_RUN_OPTIONS, *own.TEST_OPTIONS, *_components()]
    if script != "train":
        raise ValueError(f"script: expected 'train' or 'test', got {script!r}")
    # the --kd_strategy choices: the strategies registered by now
    training = [dataclasses.replace(o, choices=STRATEGIES) if o.name == "kd_strategy" else o
                for o in own.TRAIN_OPTIONS]
    return [*own.RUN_OPTIONS, *training, *STRATEGIES.options(), *_components()]


def registered() -> tuple[int, int, int]:
    """How many strategies, network families and dataset kinds are registered (a plugin may add more)."""
    return len(STRATEGIES), len(NETWORKS), len(DATASETS)


def option_table(script: str = "train") -> dict[str, Option]:
    """{name: declaration} of every option of ``script`` (``"train"`` or ``"test"``), in ``--help`` order: the one
    source of the run metadata (``affects_result``, ``resume``, ``control``, ``teacher_only``, ``strategy``,
    ``official``, ``range``). Read when called, so that plugins' options are in it."""
    table: dict[str, Option] = {}
    for opt in _script_options(script):
        if opt.name in table:
            raise ValueError(f"option --{opt.name} is declared twice ({table[opt.name].group!r}, {opt.group!r})")
        table[opt.name] = opt
    return table


def keys_where(predicate: Callable[[Option], bool] | None = None, script: str = "train", **fields) -> tuple[str, ...]:
    """The names of ``script``'s options whose fields equal ``fields`` (and for which ``predicate`` holds), in
    declaration order, e.g. ``keys_where(affects_result=False)`` or ``keys_where(teacher_only=True)``."""
    return tuple(name for name, opt in option_table(script).items()
                 if all(getattr(opt, k) == v for k, v in fields.items()) and (predicate is None or predicate(opt)))


def build_train_parser() -> argparse.ArgumentParser:
    """The parser of ``train_CSAKD.py``."""
    parser = argparse.ArgumentParser(description="Co-train the CSAKD teacher and student (online distillation).")
    return add_options(parser, option_table("train").values(), TRAIN_GROUPS)


def build_test_parser() -> argparse.ArgumentParser:
    """The parser of ``test_CSAKD.py``."""
    parser = argparse.ArgumentParser(description="Evaluate a CSAKD teacher or student, or count its complexity.")
    return add_options(parser, option_table("test").values(), TEST_GROUPS)


def resolve_train_config(config: str | None = None, values: Mapping[str, Any] | None = None) -> dict:
    """The resolved training configuration of YAML file ``config`` (or none) with ``values`` over it, as
    ``train_CSAKD.py --config config --flag value ...`` resolves it (without ``--resume``'s saved base): the
    argument of ``engine.train.train``. The plugins the file or ``values`` name are imported first."""
    _import_plugins(config, values)
    return resolve_config(parse_config(build_train_parser(), _config_argv(config), other=build_test_parser(),
                                       values=values))


def resolve_test_config(config: str | None = None, values: Mapping[str, Any] | None = None) -> tuple[dict, set[str]]:
    """(the resolved test configuration, the flags set explicitly) of YAML file ``config`` with ``values`` over
    it, as ``test_CSAKD.py`` resolves them (in a shared YAML, ``snr`` and ``batch_size`` are training settings:
    give the test's in ``values``): the arguments of ``engine.testing.evaluate_run``. The plugins the file or
    ``values`` name are imported first."""
    _import_plugins(config, values)
    cfg = resolve_config(parse_config(build_test_parser(), _config_argv(config), other=build_train_parser(),
                                      values=values))
    return cfg, explicit_keys(build_test_parser(), _config_argv(config)) | set(values or {})


def _config_argv(config: str | None) -> list[str]:
    return ["--config", config] if config else []


def _import_plugins(config: str | None, values: Mapping[str, Any] | None) -> None:
    given = (values or {}).get("plugins")
    import_plugins([plugin_name(p) for p in ([given] if isinstance(given, str) else given or [])])
    load_plugins(_config_argv(config))


# ---------------------------------------------------------------------------------------------------------------------
# Resolution: the rules between components


def resolve_model_config(cfg: dict, table: dict[str, Option] | None = None) -> dict:
    """Fill the compat-dependent defaults (the options with an ``official`` value) and the strategy-dependent ones
    of a flag dict in place and return it.

    One rule each: ``--kd_strategy psd`` implies ``--arch psd`` (any other strategy: ``dts``); ``--kd_strategy
    hkd`` on DTS networks implies ``--hkd_heads 2`` (otherwise 0). A contradicting explicit value is an error.
    """
    for name, opt in (table or option_table()).items():
        if opt.compat_dependent and name in cfg and cfg[name] is None:
            cfg[name] = opt.compat_default(cfg.get("compat"))
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


def resolve_config(cfg: dict) -> dict:
    """Normalise a parsed flag dict in place (compat-dependent defaults, canonical forms) and check it."""
    table = {**option_table("test"), **option_table("train")}  # ranges: a key either script has
    resolve_model_config(cfg, table)
    for key in ("student_layers", "teacher_layers"):
        if key not in cfg:
            continue
        try:
            layers = parse_student_layers(cfg[key], key)
        except ValueError as exc:
            raise ConfigError(f"--{exc}") from None
        cfg[key] = "".join(map(str, layers)) if max(layers) < 10 else ",".join(map(str, layers))
    check_ranges(cfg, table)
    _check_combinations(cfg)
    if "prefix" in cfg:
        check_run_name(str(cfg["prefix"]))
    return cfg


def unlabelled_flag(cfg: dict) -> str | None:
    """The flag of ``cfg`` that asks for unlabelled input pairs (``--unlabelled N`` or ``--unlabelled_file``;
    None without)."""
    return next((f for f in ("unlabelled", "unlabelled_file") if cfg.get(f)), None)


def _check_unlabelled(cfg: dict) -> None:
    """Unlabelled pairs come from the flag the dataset kind reads (``FusionDataset.unlabelled_flag``) and are
    labelled by a frozen teacher or, for the control, by their GT: never by a teacher that is still training."""
    given = unlabelled_flag(cfg)
    if given is None:
        return
    what = f"--{given} {cfg[given]}"
    if cfg.get("unlabelled") and cfg.get("unlabelled_file"):
        raise ConfigError(f"--unlabelled {cfg['unlabelled']} and --unlabelled_file {cfg['unlabelled_file']}: give "
                          f"one (extra built-in scenes, or a list of own input pairs)")
    kind = cfg.get("dataset")
    wanted = getattr(DATASETS[kind], "unlabelled_flag", None) if kind in DATASETS else None
    if given != wanted:
        takes = f"takes them from --{wanted}" if wanted else "has no unlabelled pairs"
        raise ConfigError(f"{what}: --dataset {kind} {takes} (--unlabelled N: extra scenes of the built-in "
                          f"synthetic and realistic datasets; --unlabelled_file LIST: own data, aviris and cube)")
    if cfg.get("kd_mode") == "online":
        raise ConfigError(f"{what}: unlabelled pairs are labelled by a frozen teacher (--kd_mode offline) or, for "
                          f"the control, by their GT (--kd_mode none); got --kd_mode online")


def _check_combinations(cfg: dict) -> None:
    """Refuse flag combinations that cannot run (one ConfigError naming them)."""
    if cfg.get("kd_mode") == "offline" and not cfg.get("teacher_ckpt"):
        raise ConfigError("--kd_mode offline needs --teacher_ckpt (the frozen teacher's weights)")
    _check_unlabelled(cfg)
    if (unlabelled_flag(cfg) or cfg.get("kd_augment")) and cfg.get("kd_strategy", "csakd") != "csakd":
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
