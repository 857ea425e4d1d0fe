"""Network weights on disk: this project's checkpoints and the official CSAKD ``.pth`` files.

This project's weight file (docs/decisions.md #13) is a dict::

    {"format": "csakd-weights", "format_version": 1, "role": "teacher" | "student",
     "model": {constructor arguments, see DTS.model_config}, "config": {the run's resolved config},
     "state_dict": {un-prefixed parameter names → tensors}}

Official files are bare state_dicts whose keys carry ``decoder.`` (the wrapper attribute) and, when
saved from a compiled model, ``_orig_mod.``. Both load through :func:`load_weights`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .fileio import atomic_torch_save

log = logging.getLogger(__name__)

FORMAT = "csakd-weights"
FORMAT_VERSION = 1
_PREFIXES = ("_orig_mod.", "module.", "decoder.")  # torch.compile, DataParallel, the official wrapper
_ATTENTION_MODES = (2, 3)  # fusion modes whose attention differs between compat settings
_MAX_LISTED = 25


def save_weights(path: str | os.PathLike, model: nn.Module, config: Mapping[str, Any] | None = None) -> None:
    """Write ``model``'s weights, its constructor arguments and the run ``config`` atomically to ``path``."""
    model = getattr(model, "_orig_mod", model)  # a compiled model saves like the plain one
    atomic_torch_save(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "role": getattr(model, "role", None),
            "model": model.model_config() if hasattr(model, "model_config") else {},
            "config": dict(config or {}),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        },
        path,
    )


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file on the CPU, with a clear error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise ValueError(f"checkpoint {path}: cannot be read as a PyTorch file ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint {path}: expected a dict of weights, found {type(obj).__name__}")
    return dict(obj)


def _strip_prefixes(key: str) -> tuple[str, bool]:
    official = False
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
                official |= prefix != "module."
    return key, official


def _describe(t: Any) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def load_weights(model: nn.Module, source: str | os.PathLike | Mapping[str, Any]) -> dict:
    """Load weights into ``model`` from a path or an in-memory checkpoint/state_dict.

    Accepts this project's weight files, official ``.pth`` files, and any dict that keeps the weights
    under ``"state_dict"``. Unused official student tensors
    (``hmfeat.*``, built but never run by the official code) are dropped with a one-line note.

    Raises:
        FileNotFoundError / ValueError: unreadable file; keys or shapes that do not match (every
            offending key is listed with both shapes); an official attention checkpoint (fusion modes
            2, 3) loaded into a model with corrected attention, or the reverse.

    Returns:
        ``{"source": "official" | "csakd", "dropped": [keys], "config": saved run config or {}}``.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else "state_dict"
    ckpt = read_checkpoint(source) if isinstance(source, (str, os.PathLike)) else dict(source)
    target = getattr(model, "_orig_mod", model)

    # This project's files and many others keep the weights under "state_dict"; official files are bare.
    state = ckpt["state_dict"] if isinstance(ckpt.get("state_dict"), Mapping) else ckpt
    stripped: dict[str, Any] = {}
    official = False
    for key, value in state.items():
        new_key, was_official = _strip_prefixes(key)
        official |= was_official
        stripped[new_key] = value

    # Attention weights say which form they were trained with: only the corrected form has a temperature.
    fuse_mode = getattr(target, "adaptive_fuse", None)
    if fuse_mode in _ATTENTION_MODES and "fuse_att.query_conv.weight" in stripped:
        saved_official = "fuse_att.temperature" not in stripped
        if saved_official and getattr(target, "compat", None) != "official":
            raise ValueError(
                f"checkpoint {name}: holds the official attention (adaptive_fuse={fuse_mode}), which computes "
                f"differently from this model's corrected attention; build the model with compat='official' "
                f"(flag --compat official) to load it"
            )
        if not saved_official and getattr(target, "compat", None) == "official":
            raise ValueError(
                f"checkpoint {name}: holds the corrected attention (adaptive_fuse={fuse_mode}), but the model "
                f"was built with compat='official'; build it without --compat official to load it"
            )

    expected = target.state_dict()
    dropped = []
    if getattr(target, "run_hm_stack", True) is False:
        dropped = sorted(k for k in stripped if k.startswith("hmfeat.") and k not in expected)
        for k in dropped:
            del stripped[k]
        if dropped:
            log.info("checkpoint %s: dropped %d unused Z_hm stack tensors (hmfeat.*), which the "
                     "official student builds but never runs", name, len(dropped))

    problems = []
    for k in expected:
        if k not in stripped:
            problems.append(f"  missing in checkpoint: {k} (model {_describe(expected[k])})")
        elif (found := _describe(stripped[k])) != (wanted := _describe(expected[k])):
            problems.append(f"  shape mismatch: {k}: checkpoint {found}, model {wanted}")
    problems += [f"  unexpected in checkpoint: {k} {_describe(v)}" for k, v in stripped.items() if k not in expected]
    if problems:
        listed = problems[:_MAX_LISTED]
        if len(problems) > _MAX_LISTED:
            listed.append(f"  ... and {len(problems) - _MAX_LISTED} more")
        arch = target.extra_repr() if hasattr(target, "extra_repr") else type(target).__name__
        raise ValueError(
            f"checkpoint {name} does not match the model ({type(target).__name__}: {arch}): "
            f"{len(problems)} problem(s)\n" + "\n".join(listed)
        )
    target.load_state_dict(stripped, strict=True)
    return {"source": "official" if official else "csakd", "dropped": dropped, "config": ckpt.get("config", {})}
