"""Teacher weight inheritance, ``--student_init teacher`` (no official counterpart; issue 18, method b).

The student starts from a converged teacher (``--teacher_ckpt``) wherever the two networks have the same part:
a module (the owner of a group of tensors, e.g. ``mhfeat.0.MFB1.conv1``) is copied when the teacher has every
one of its tensors under the same name with the same shape — for the DTS pair with equal widths: the four
stems, the first CLRA blocks of the Z_mh and Z_m streams, the CSA fuser and the head. A module with any tensor
of another shape (the student's grouped Z_h stream) keeps its own initialisation entirely, so no layer is half
inherited. What was copied and what was kept are written to the run log.

Why: initialising a depth-truncated student from its teacher, with plain fidelity losses and no distillation term,
reproduces published distilled students in super-resolution (docs/distillation.md); the arms
``none:student_init=teacher`` (inheritance alone) and ``csakd:kd_mode=offline,student_init=teacher`` (inheritance
+ response KD) separate the head start from the distillation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def _owner(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else ""


def _short(module: str) -> str:
    """``mhfeat.0.MFB1.conv1`` → ``mhfeat.0`` (a stream's block), ``fuse_att.query_conv`` → ``fuse_att``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and parts[1].isdigit() else parts[0]


def inheritable(student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor]) -> list[str]:
    """The student's tensor names (state-dict keys, in its order) that inheritance copies: those of every module
    whose tensors the teacher all has, by name, with the same shapes."""
    modules: dict[str, list[str]] = {}
    for key in student:
        modules.setdefault(_owner(key), []).append(key)
    ok = {m for m, keys in modules.items()
          if all(k in teacher and tuple(teacher[k].shape) == tuple(student[k].shape) for k in keys)}
    return [k for k in student if _owner(k) in ok]


def inherit_from_teacher(student: nn.Module, teacher: nn.Module) -> dict[str, list[str]]:
    """Copy :func:`inheritable` tensors of ``teacher`` into ``student`` in place (values only; no graph).

    Returns {"copied": tensor names, "kept": tensor names left as initialised, "copied_parts" / "kept_parts":
    the same as short module names (``mhfeat.0``, ``fuse_att``), in order}."""
    mine, theirs = student.state_dict(), teacher.state_dict()
    copied = inheritable(mine, theirs)
    with torch.no_grad():
        for key in copied:
            mine[key].copy_(theirs[key])
    kept = [k for k in mine if k not in set(copied)]
    return {"copied": copied, "kept": kept, "copied_parts": list(dict.fromkeys(_short(_owner(k)) for k in copied)),
            "kept_parts": list(dict.fromkeys(_short(_owner(k)) for k in kept))}


def describe(result: Mapping[str, list[str]], source: str) -> str:
    """The run-log line of an inheritance."""
    kept = ", ".join(result["kept_parts"]) or "nothing"
    return (f"--student_init teacher: copied {len(result['copied'])} tensors from {source}: "
            f"{', '.join(result['copied_parts'])}; kept the student's own initialisation ({len(result['kept'])} "
            f"tensors, another shape): {kept}")
