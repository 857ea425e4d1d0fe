"""Which network a weight file holds (:func:`network_from_file`, the one answer): read from this project's files,
inferred from official state_dicts; :func:`build_from_checkpoint` builds and loads it.

An official ``.pth`` (official: ``torch.save(model.state_dict(), ...)`` in ``train_CSAKD*.py``) is a bare
state_dict; nothing but its keys and shapes says which network it is. They say everything the constructor
needs except ``scale`` (convolutions do not depend on it):

==================  ================================================================================
constructor arg     read from
==================  ================================================================================
``bands``           ``hconv1.weight`` (nf, bands, 3, 3)
``msi_bands``       ``mconv1.weight`` (nf, msi_bands, 3, 3)
``num_base_chs``    ``hconv1.weight`` dim 0
``num_agg_feat``    the first conv of any CLRA block, ``<stream>feat.0.MFB1.conv1.weight`` dim 0
``groups``          the head conv ``fuse.weight`` (bands, nf / groups, 3, 3)
role                the student's Z_h stream is grouped (``hfeat.*.conv1`` sees nf / (nf // 2) = 2 channels
                    per group); the teacher's is not. A teacher with (8, 8, 6, 6) blocks is Teacher-Large
layers              the number of CLRA blocks ``<stream>feat.<i>`` per stream (Z_hm, Z_mh, Z_h, Z_m);
                    a student without ``hmfeat.*`` (this project's files) gets 1 there (it has no effect)
``adaptive_fuse``   which ``fuse_att.*`` keys exist: none → 0, ``weights`` → 1, ``attention_conv`` → 4,
                    ``query_conv`` → 2, plus ``attention_weights`` → 3
``compat``          modes 2, 3 only: the corrected attention has a ``temperature``, the official one not
``residual``        not in the weights (the global skip has no parameters): False for official files and for
                    this project's files saved before ``--residual`` existed
==================  ================================================================================
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from utils.checkpoint import _strip_prefixes, load_weights, read_checkpoint

from .dts import TEACHER_LARGE_LAYERS, TEACHER_LAYERS, parse_student_layers
from .family import network_class, rebuild
from .network import NOT_CONSTRUCTOR_KEYS, FusionNetwork

STREAMS = ("hmfeat", "mhfeat", "hfeat", "mfeat")  # Z_hm, Z_mh, Z_h, Z_m
LAYER_KEYS = {"teacher": "teacher_layers", "student": "student_layers"}


def _depth(state: Mapping[str, Any], stream: str) -> int:
    pattern = re.compile(rf"{stream}\.(\d+)\.")
    indices = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def _fusion_mode(state: Mapping[str, Any]) -> int:
    if "fuse_att.attention_conv.weight" in state:
        return 4
    if "fuse_att.query_conv.weight" in state:
        return 3 if "fuse_att.attention_weights.weight" in state else 2
    return 1 if "fuse_att.weights" in state else 0


def infer_model_config(state: Mapping[str, Any], name: str = "state_dict") -> dict[str, Any]:
    """The constructor arguments (and ``role``) of the DTS network whose weights ``state`` holds.

    Args:
        state: a state_dict, official (prefixed keys) or this project's.
        name: the file, for messages.

    Returns:
        ``{"role": "teacher" | "student", "bands", "msi_bands", "num_base_chs", "num_agg_feat", "groups",
        "adaptive_fuse", "teacher_layers" | "student_layers": [4 ints], "compat" (modes 2, 3 only)}``;
        ``"large": True`` is added for the official Teacher-Large.

    Raises:
        ValueError: the keys are not those of a CSAKD network.
    """
    s = {_strip_prefixes(k)[0]: v for k, v in state.items()}
    needed = ("hconv1.weight", "mconv1.weight", "fuse.weight")
    missing = [k for k in needed if k not in s or getattr(s[k], "dim", lambda: 0)() != 4]
    if missing:
        raise ValueError(f"checkpoint {name}: not a CSAKD network (no 4-D {', '.join(missing)}); "
                         f"expected the keys of an official or this project's teacher or student")
    nf, bands = (int(v) for v in s["hconv1.weight"].shape[:2])
    layers = [_depth(s, stream) for stream in STREAMS]
    first_convs = [s[f"{st}.0.MFB1.conv1.weight"] for st in STREAMS if f"{st}.0.MFB1.conv1.weight" in s]
    gc = int(first_convs[0].shape[0]) if first_convs else None
    h_conv = s.get("hfeat.0.MFB1.conv1.weight")
    grouped_h = h_conv is not None and int(h_conv.shape[1]) != nf
    role = "student" if grouped_h or tuple(layers) not in (TEACHER_LAYERS, TEACHER_LARGE_LAYERS) else "teacher"
    if role == "student" and layers[0] == 0:
        layers[0] = 1  # this project's students keep no Z_hm blocks; the count has no effect
    out: dict[str, Any] = {
        "role": role, "bands": bands, "msi_bands": int(s["mconv1.weight"].shape[1]), "num_base_chs": nf,
        "groups": nf // int(s["fuse.weight"].shape[1]), "adaptive_fuse": _fusion_mode(s), LAYER_KEYS[role]: layers,
        "residual": False,  # the official networks have no global skip
    }
    if gc is not None:
        out["num_agg_feat"] = gc
    if out["adaptive_fuse"] in (2, 3):
        out["compat"] = None if "fuse_att.temperature" in s else "official"
    if role == "teacher" and tuple(layers) == TEACHER_LARGE_LAYERS:
        out["large"] = True
    return out


def checkpoint_model_config(ckpt: Mapping[str, Any], name: str = "checkpoint") -> dict[str, Any]:
    """The network a loaded checkpoint holds: this project's saved constructor arguments (``ckpt["model"]``)
    when present, else :func:`infer_model_config` of its weights."""
    saved = ckpt.get("model")
    if isinstance(saved, Mapping) and saved:
        desc = dict(saved)
        if desc.get("arch", "dts") == "dts":
            desc = {"residual": False, **desc}  # files from before --residual: no global skip
    else:
        state = ckpt["state_dict"] if isinstance(ckpt.get("state_dict"), Mapping) else ckpt
        desc = infer_model_config(state, name)
    # official files and files written before --arch / --hkd_heads existed hold DTS networks without heads
    return {"arch": "dts", **({"hkd_heads": 0} if desc.get("arch", "dts") == "dts" else {}), **desc}


def _same(key: str, a: Any, b: Any) -> bool:
    if key in LAYER_KEYS.values():
        a, b = parse_student_layers(a, key), parse_student_layers(b, key)
        return a[1:] == b[1:] if key == "student_layers" else a == b  # the student's Z_hm count has no effect
    return a == b


class HeldNetwork(NamedTuple):
    """Which network a weight file holds (:func:`network_from_file`).

    Attributes:
        arch: the family (``--arch``): ``"dts"`` for official files and files from before families existed.
        role: ``"teacher"`` or ``"student"``.
        kwargs: the constructor arguments the file states (an official file states all but ``scale``, and
            ``compat`` for fusion modes other than 2 and 3: its weights fit both forms).
        path: the file.
    """

    arch: str
    role: str
    kwargs: dict[str, Any]
    path: str

    def description(self) -> dict[str, Any]:
        """``{"arch", "role", **kwargs}``: :meth:`models.network.FusionNetwork.model_config` with the family stated."""
        return {"arch": self.arch, "role": self.role, **self.kwargs}


def network_from_file(path: str | os.PathLike, role: str | None = None, ckpt: Mapping[str, Any] | None = None
                      ) -> HeldNetwork:
    """The one answer to "which network does this weight file hold": this project's files by the constructor
    arguments saved with their weights, files from before that by today's rule (``residual``, ``hkd_heads`` and
    ``arch`` at their old values), official ``.pth`` files by their keys and shapes (:func:`infer_model_config`).

    The file is read weights-only and verified (:func:`utils.checkpoint.read_checkpoint`), unless the caller
    passes what it already read as ``ckpt``. ``role``: the role needed here, or None for whichever it holds.

    Raises:
        ValueError: one line naming the file, what it holds and what was expected: another role, an
            unknown family, or keys that are no fusion network's.
    """
    name = os.fspath(path)
    desc = checkpoint_model_config(read_checkpoint(path) if ckpt is None else ckpt, name)
    held = HeldNetwork(desc.get("arch", "dts"), desc.get("role", role), {k: v for k, v in desc.items()
                       if k not in NOT_CONSTRUCTOR_KEYS}, name)
    if role is not None and held.role != role:
        raise ValueError(f"checkpoint {name}: holds a {held.role} network, but a {role} is needed here "
                         f"(test_CSAKD.py: --test_mode 1 tests the teacher, 2 the student)")
    network_class(held.arch, held.role, f"checkpoint {name}")  # an unknown family: one line, before any build
    return held


def network_config(cfg: Mapping[str, Any], held: HeldNetwork, given: set[str]) -> dict[str, Any]:
    """The constructor arguments of the network a file holds: the file's (``held``), completed from the flag dict
    ``cfg`` where the file is silent (an official file's ``scale``), e.g. ``{"bands": 172, ..., "scale": 4}``.

    Raises:
        ValueError: a flag in ``given`` (set on the command line or in the YAML file) contradicts the file; the
            message names both values.
    """
    saved = held.description()
    # compat decides how a file loads only for the attention modes (2, 3); elsewhere the weights fit both forms
    checked = {k: v for k, v in saved.items() if k != "compat" or saved.get("adaptive_fuse") in (2, 3)}
    clashes = [f"--{k} {cfg[k]} (the file holds {k}={v})" for k, v in checked.items()
               if k in given and k in cfg and not _same(k, cfg[k], v)]
    if clashes:
        raise ValueError(f"checkpoint {held.path}: contradicts " + "; ".join(clashes) +
                         "; leave the flag out (the network is read from the file) or choose the matching file")
    accepted = inspect.signature(network_class(held.arch, held.role)).parameters
    return {**{k: cfg[k] for k in accepted if k in cfg and cfg[k] is not None}, **held.kwargs}


def build_from_checkpoint(cfg: Mapping[str, Any], role: str, path: str | os.PathLike,
                          given: set[str] | frozenset[str] = frozenset(), ckpt: Mapping[str, Any] | None = None
                          ) -> tuple[FusionNetwork, dict[str, Any]]:
    """The ``role`` network a weight file holds (:func:`network_from_file`), built as the file describes it and
    loaded; the file is read (and verified) once, or not at all when the caller passes what it already read as
    ``ckpt``.

    Returns ``(model, info)``: ``info`` is :func:`utils.checkpoint.load_weights`'s record plus ``"network"``,
    the constructor arguments that built the model. Raises ``ValueError`` as :func:`network_from_file`,
    :func:`network_config` and ``load_weights`` do.
    """
    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    held = network_from_file(path, role, ckpt)
    kwargs = network_config(cfg, held, set(given))
    model = rebuild({"arch": held.arch, "role": held.role, **kwargs}, f"checkpoint {held.path}")
    return model, {**load_weights(model, ckpt, name=held.path), "network": kwargs}
