"""Run fingerprints: what a run computes, as one hash of its resolved options.

- :func:`fingerprint`: SHA-256 of the canonical JSON (sorted keys, no spaces) of ``{"version", "options"}``, the
  options being every resolved option that affects the result of *this* run (``engine.run_keys``): not where or
  how it ran (device, workers, paths, logging), not the teacher-only options of a run without a teacher, not the
  options only another strategy or network family reads. A frozen teacher file (``--teacher_ckpt``, read with
  ``--kd_mode offline`` or ``--student_init teacher``) counts by its weights when they are known
  (:func:`teacher_digest`: the tensors and the network description, ``utils.checkpoint.weights_digest``; not the
  file's bytes, which hold the teacher run's paths), so a copied or moved teacher, or a run folder reading it, keeps
  the fingerprint; records written before counted it by the file's SHA-256 (``teacher_by="file"``).
- :func:`recipe_fingerprint`: the same without what the teacher brings and the seeds (``run_keys.recipe_free``):
  a distilled run and the student alone it is compared with have the same recipe.

Upgrade rule (version 1): the options are read from a resolved config with every option it lacks at its current
default (resolved in the config's ``--compat`` mode). A flag added by a newer version keeps, at its default, the
previous behaviour, so a config saved before the flag existed computes what the same config computes now; a key
the current code has no flag for (a removed flag) is hashed as it is and never matches a current config. A stored
fingerprint is therefore not compared as it is: it is recomputed from the stored config (:func:`same_result`).
Bumping :data:`VERSION` changes every fingerprint; do it only when the canonical form changes.

Stored in ``config.yaml`` (a header comment, :func:`yaml_header`), the training state and weight files (key
``"fingerprints"``), test ``summary.json`` files (the weight file's) and ``benchmarks.kd`` records.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from utils.checkpoint import weights_digest
from utils.fileio import sha256_of

from .run_keys import affects_result, arch_only, recipe_free, strategy_only, teacher_only

VERSION = 1
KEY = "fingerprints"  # the key in state.pth, weight files, summary.json and bench records


def _plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` as JSON values (tuples as lists, other objects as their ``str``)."""
    return json.loads(json.dumps(dict(cfg), default=str))


@functools.lru_cache(maxsize=4)
def _defaults(compat: str | None) -> str:
    from engine.flags import build_train_parser, resolve_config
    from utils.config import parse_config

    argv = ["--compat", compat] if compat else []
    return json.dumps(_plain(resolve_config(parse_config(build_train_parser(), argv))))


def flag_defaults(compat: str | None = None) -> dict[str, Any]:
    """Every training flag's resolved default (JSON values) in the given ``--compat`` mode."""
    return json.loads(_defaults(compat))


def reads_teacher_file(cfg: Mapping[str, Any]) -> bool:
    """The run reads ``--teacher_ckpt``: a frozen teacher (offline) or a student initialised from one."""
    return cfg.get("kd_mode") == "offline" or cfg.get("student_init") == "teacher"


def _relevant(key: str, cfg: Mapping[str, Any]) -> bool:
    """Whether ``key`` changes what the run of ``cfg`` (complete: defaults filled in) computes."""
    if not affects_result(key):
        return False
    if key == "teacher_ckpt":
        return reads_teacher_file(cfg)
    if key == "resume_ckpt":  # the weights of a warm start; a --resume reads its state instead
        return bool(cfg.get("resume_ind"))
    teacher = cfg.get("kd_mode") != "none"
    if teacher_only(key) and not teacher:
        return False
    owner, family = strategy_only(key), arch_only(key)
    return (owner is None or owner == cfg.get("kd_strategy")) and (family is None or family == cfg.get("arch"))


#: How a known frozen teacher stands for its path in the options, by what its digest hashes: ``"weights"`` (now,
#: :func:`teacher_digest`) or ``"file"`` (the file's bytes: ``benchmarks.kd`` records written before, their
#: ``teacher_sha256``). The tags differ, so the two never match one another.
TEACHER_BY = {"weights": "weights-sha256", "file": "sha256"}


def result_options(cfg: Mapping[str, Any], teacher_digest: str | None = None,
                   teacher_by: str = "weights") -> dict[str, Any]:
    """The options of ``cfg`` that its result depends on, absent ones at their defaults (the upgrade rule);
    ``teacher_digest``: the digest of the teacher file it reads (of kind ``teacher_by``, :data:`TEACHER_BY`),
    which then stands for its path."""
    full = {**flag_defaults(cfg.get("compat")), **_plain(cfg)}
    options = {k: v for k, v in full.items() if _relevant(k, full)}
    if "teacher_ckpt" in options and teacher_digest:
        options["teacher_ckpt"] = f"{TEACHER_BY[teacher_by]}:{teacher_digest}"
    return options


def _digest(options: Mapping[str, Any]) -> str:
    text = json.dumps({"version": VERSION, "options": options}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(cfg: Mapping[str, Any], teacher_digest: str | None = None, teacher_by: str = "weights") -> str:
    """The run fingerprint of ``cfg`` (64 hex digits); the teacher as in :func:`result_options`."""
    return _digest(result_options(cfg, teacher_digest, teacher_by))


def recipe_fingerprint(cfg: Mapping[str, Any]) -> str:
    """The recipe fingerprint of ``cfg``: :func:`fingerprint` without the recipe-free options."""
    return _digest({k: v for k, v in result_options(cfg).items() if not recipe_free(k)})


def fingerprints(cfg: Mapping[str, Any], teacher_digest: str | None = None) -> dict[str, Any]:
    """``{"version", "run", "recipe"}``: what files and records store under :data:`KEY`."""
    return {"version": VERSION, "run": fingerprint(cfg, teacher_digest), "recipe": recipe_fingerprint(cfg)}


def same_result(stored: Mapping[str, Any], current: Mapping[str, Any], stored_teacher: str | None = None,
                current_teacher: str | None = None) -> bool:
    """Whether a saved config (of any earlier version) computes what ``current`` asks for (the upgrade rule)."""
    return fingerprint(stored, stored_teacher) == fingerprint(current, current_teacher)


def changed_options(stored: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (stored value, current value)}`` of every option whose change changes the result between two
    configs (absent options at their defaults; an option one of them does not depend on counts as None there)."""
    old, new = result_options(stored), result_options(current)
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def file_digest(path: str | os.PathLike) -> str | None:
    """SHA-256 of a file's bytes (None when it cannot be read)."""
    try:
        return sha256_of(path)
    except OSError:
        return None


def teacher_digest(cfg: Mapping[str, Any]) -> str | None:
    """The identity of the teacher the run of ``cfg`` reads: ``utils.checkpoint.weights_digest`` of
    ``--teacher_ckpt`` (its tensors and network description, not its stored paths), or None (none read, or no
    readable weight file there yet: the run then counts it by its path, and its training says what is wrong)."""
    if not (reads_teacher_file(cfg) and cfg.get("teacher_ckpt")):
        return None
    try:
        return weights_digest(cfg["teacher_ckpt"])
    except (OSError, ValueError):
        return None


def run_fingerprints(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`fingerprints` of a run about to train, its teacher file (if it reads one) by content."""
    return fingerprints(cfg, teacher_digest(cfg))


def yaml_header(prints: Mapping[str, Any]) -> str:
    """The comment lines that open a saved ``config.yaml`` (YAML ignores them; the config loads as before)."""
    return (f"# run fingerprint v{prints['version']}: {prints['run']}\n"
            f"# recipe fingerprint v{prints['version']}: {prints['recipe']}\n"
            f"# (engine.fingerprint: the options that affect the result; docs/training.md \"Run fingerprints\")\n")


__all__ = ["KEY", "TEACHER_BY", "VERSION", "changed_options", "file_digest", "fingerprint", "fingerprints",
           "flag_defaults", "reads_teacher_file", "recipe_fingerprint", "result_options", "run_fingerprints",
           "same_result", "teacher_digest", "yaml_header"]
