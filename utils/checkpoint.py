"""Network weights on disk: this project's checkpoints and the official CSAKD ``.pth`` files.

This project's weight file (docs/decisions.md #13) is a dict::

    {"format": "csakd-weights", "format_version": 2, "role": "teacher" | "student",
     "model": {constructor arguments, see DTS.model_config}, "config": {the run's resolved config},
     "state_dict": {un-prefixed parameter names → tensors},
     "fingerprints": {"version", "run", "recipe"} of the run that trained it (engine.fingerprint; absent in
                     files written before, or outside a run),
     "tensor_sha256": hex digest of the state_dict's tensors (version 2; see tensor_digest)}

Integrity (every load, :func:`verify_archive` and :func:`tensor_digest`): ``torch.load`` does not check
the CRC-32 that the zip archive of a ``.pth`` file keeps for every record, so a flipped byte inside a
tensor loads as a wrong number. Every file is first checked against those CRCs (all files, official
and version 1 included; about 0.03 s per 100 MB once the file is in the page cache), and a version 2
file is then checked against the digest stored at save time (computed from the tensors in memory, so
it also covers the serialisation itself). Non-finite weights are refused: no prediction made with
them means anything.

Official files are bare state_dicts whose keys carry ``decoder.`` (the wrapper attribute) and, when
saved from a compiled model, ``_orig_mod.``. Both load through :func:`load_weights`.

No file runs code (:func:`safe_load`): every ``.pth`` is read by PyTorch's weights-only unpickler, which
builds tensors and plain containers and numbers only; a file that asks for anything else (a pickled
``os.system`` call, a class to instantiate) is refused in one line, before any of it runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .fileio import atomic_torch_save

log = logging.getLogger(__name__)

FORMAT = "csakd-weights"
FORMAT_VERSION = 2  # 2 added "tensor_sha256"; version 1 files still load (CRC-checked only)
DIGEST_KEY = "tensor_sha256"
TRAIN_STATE_FORMAT = "csakd-train-state"  # engine.state's format tag; named here so that tests can recognise it
_PREFIXES = ("_orig_mod.", "module.", "decoder.")  # torch.compile, DataParallel, the official wrapper
_ATTENTION_MODES = (2, 3)  # fusion modes whose attention differs between compat settings
_MAX_LISTED = 25


def save_weights(path: str | os.PathLike, model: nn.Module, config: Mapping[str, Any] | None = None,
                 fingerprints: Mapping[str, Any] | None = None) -> None:
    """Write ``model``'s weights, its constructor arguments, the run ``config`` and the run's ``fingerprints``
    (plain strings and numbers, which the weights-only loader reads) atomically to ``path``."""
    model = getattr(model, "_orig_mod", model)  # a compiled model saves like the plain one
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "role": getattr(model, "role", None),
            "model": model.model_config() if hasattr(model, "model_config") else {},
            "config": dict(config or {}),
            **({"fingerprints": dict(fingerprints)} if fingerprints else {}),
            "state_dict": state,
            DIGEST_KEY: tensor_digest(state),
        },
        path,
    )


def _tensors(obj: Any, key: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a nest of dicts, lists and tuples, with its key path, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        yield key, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _tensors(v, f"{key}/{k}")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{key}/{i}")


def tensor_digest(obj: Any) -> str:
    """SHA-256 over every tensor in ``obj`` (key path, dtype, shape and raw bytes), as a hex string."""
    h = hashlib.sha256()
    for key, t in _tensors(obj):
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def verify_archive(path: str | os.PathLike, what: str = "checkpoint") -> bool:
    """Check every record of the zip archive ``path`` (a ``torch.save`` file) against its stored CRC-32.

    Raises ValueError naming the file and the damaged record. Returns False for a file that is no zip
    archive (the legacy pre-1.6 format carries no checksum, or no PyTorch file at all: ``torch.load`` says
    which); the caller warns with :func:`warn_unverified` once such a file has loaded.
    """
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{what} {path}: damaged archive ({exc}); the file is corrupt, restore or re-create it") \
            from None
    if bad is not None:
        raise ValueError(f"{what} {path}: corrupt: record {bad!r} fails its CRC check (bytes changed after "
                         f"saving); restore or re-create the file")
    return True


def _refusal(exc: Exception) -> str | None:
    """The global (a function or class, e.g. ``posix.system``) that PyTorch's weights-only unpickler refused to
    import, or None for another error (a truncated or foreign file)."""
    text = str(exc)
    if not isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" not in text:
        return None
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    return found.group(1) if found else None


def safe_load(path: str | os.PathLike, what: str, verified: bool, trusted: Sequence[Any] = ()) -> Any:
    """``torch.load`` with the weights-only unpickler (tensors, plain containers and numbers; plus the
    ``trusted`` globals, e.g. NumPy's array reconstructor for old training states), on the CPU.

    A file that asks for anything else is refused in one line naming the file and what it asked for; nothing
    in it runs. Any other unreadable file is one line too (:func:`unreadable`)."""
    try:
        with torch.serialization.safe_globals(list(trusted)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        refused = _refusal(exc)
        if refused is not None:
            raise UnsafeFile(f"{what} {path}: refused: it asks to load {refused}, which is code or an object, not "
                             f"weights; such a file is never unpickled (this program reads tensors, numbers and "
                             f"plain containers only)", refused) from None
        raise ValueError(f"{what} {path}: cannot be read as a PyTorch file ({unreadable(verified, exc)})") from None


class UnsafeFile(ValueError):
    """A file the weights-only loader refused: reading it fully could run code (the message is one line;
    ``asked``: the global it asked for, e.g. ``posix.system``)."""

    def __init__(self, message: str, asked: str) -> None:
        super().__init__(message)
        self.asked = asked


def unreadable(archive: bool, exc: Exception) -> str:
    """Why ``torch.load`` failed, for a message: its own words for a sound archive, else the likely cause."""
    if archive:
        text = str(exc).strip()
        inner = re.search(r"WeightsUnpickler error: ([^\n]+)", text)  # not PyTorch's advice around it
        first = inner.group(1).split(". ")[0] if inner else (text.splitlines()[0] if text else "")
        return f"{type(exc).__name__}: {first}"
    return "truncated, or not written by torch.save: no zip archive and no legacy PyTorch pickle"


def warn_unverified(path: str | os.PathLike, what: str = "checkpoint") -> None:
    log.warning("%s %s: legacy (non-zip) PyTorch file; its integrity cannot be verified", what, path)


def verify_digest(obj: Mapping[str, Any], payload: Any, path: str | os.PathLike, what: str) -> None:
    """Compare ``payload``'s :func:`tensor_digest` with the one stored under ``DIGEST_KEY`` (if any)."""
    stored = obj.get(DIGEST_KEY)
    if stored is not None and stored != tensor_digest(payload):
        raise ValueError(f"{what} {path}: corrupt: the tensors do not match the checksum stored when the file "
                         f"was saved; restore or re-create the file")


def nonfinite_tensors(state: Mapping[str, Any]) -> list[str]:
    """Keys of the floating-point tensors in ``state`` that hold NaN or ±Inf."""
    return [k for k, v in _tensors(state) if isinstance(v, torch.Tensor) and v.is_floating_point()
            and not bool(torch.isfinite(v).all())]


def refuse_nonfinite(state: Mapping[str, Any], name: str, what: str = "checkpoint") -> None:
    """Raise ValueError naming ``name`` and the first offending keys if any weight is NaN or ±Inf."""
    bad = nonfinite_tensors(state)
    if bad:
        shown = ", ".join(k.lstrip("/") for k in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(f"{what} {name}: {len(bad)} weight tensor(s) hold NaN or Inf ({shown}); the training "
                         f"that wrote it diverged; use an earlier checkpoint")


def _is_training_state(path: Path) -> bool:
    # Recognised by the format tag in its pickle record, without unpickling anything.
    try:
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
            return pkl is not None and TRAIN_STATE_FORMAT.encode() in z.read(pkl)
    except (zipfile.BadZipFile, OSError):
        return False


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file on the CPU, with a clear error for a missing or unreadable file."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint {path}: is a folder; expected a weight file such as "
                         f"{path / 'student' / 'best.pth'}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    verified = verify_archive(path)
    if _is_training_state(path):
        run = path.parent
        raise ValueError(f"checkpoint {path} is a training state (for --resume), not network weights; test its "
                         f"weights with {run / 'student' / 'best.pth'} (or {run / 'teacher' / 'best.pth'})")
    obj = safe_load(path, "checkpoint", verified)
    if not verified:
        warn_unverified(path)
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint {path}: expected a dict of weights, found {type(obj).__name__}")
    verify_digest(obj, obj.get("state_dict"), path, "checkpoint")
    return dict(obj)


def weights_digest(path: str | os.PathLike) -> str:
    """The identity of the network a weight file holds: SHA-256 of the canonical JSON of its tensors' digest
    (:data:`DIGEST_KEY`, stored since version 2, else computed) and its saved network description (``"model"``,
    the constructor arguments; absent in official files, whose keys and shapes say it). The run config, paths
    included, is left out, so a copied or moved file keeps its identity and a file whose tensors differ does not.

    Raises:
        FileNotFoundError / ValueError: as :func:`read_checkpoint` (missing, unreadable or corrupt file).
    """
    ckpt = read_checkpoint(path)  # verified: a stored digest is the one of the tensors it holds
    state = ckpt["state_dict"] if isinstance(ckpt.get("state_dict"), Mapping) else ckpt
    tensors = ckpt.get(DIGEST_KEY) or tensor_digest(state)
    text = json.dumps({"tensor_sha256": tensors, "model": ckpt.get("model")}, sort_keys=True, separators=(",", ":"),
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


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


def load_weights(model: nn.Module, source: str | os.PathLike | Mapping[str, Any], name: str | None = None) -> dict:
    """Load weights into ``model`` from a path or an in-memory checkpoint/state_dict (``name``: what messages
    call an in-memory one, e.g. the file it was read from; default "state_dict").

    Accepts this project's weight files, official ``.pth`` files, and any dict that keeps the weights
    under ``"state_dict"``. Unused official student tensors
    (``hmfeat.*``, built but never run by the official code) are dropped with a one-line note.

    Raises:
        FileNotFoundError / ValueError: unreadable or corrupt file (see the module docstring); NaN or
            Inf weights; keys or shapes that do not match (every
            offending key is listed with both shapes); an official attention checkpoint (fusion modes
            2, 3) loaded into a model with corrected attention, or the reverse.

    Returns:
        ``{"source": "official" | "csakd", "dropped": [keys], "config": saved run config or {}}``, and
        ``"fingerprints"``: the training run's (``engine.fingerprint``), for files that hold them.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else (name or "state_dict")
    ckpt = read_checkpoint(source) if isinstance(source, (str, os.PathLike)) else dict(source)
    target = getattr(model, "_orig_mod", model)

    # This project's files and many others keep the weights under "state_dict"; official files are bare.
    state = ckpt["state_dict"] if isinstance(ckpt.get("state_dict"), Mapping) else ckpt
    refuse_nonfinite(state, name)
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
    prints = {"fingerprints": ckpt["fingerprints"]} if ckpt.get("fingerprints") else {}
    return {"source": "official" if official else "csakd", "dropped": dropped, "config": ckpt.get("config", {}),
            **prints}
