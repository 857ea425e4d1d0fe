"""Shipping a trained network: ONNX export, onnxruntime inference, int8 quantisation, bf16 in PyTorch.

The official code has no counterpart (it runs only inside PyTorch, in fp32).

- :func:`export_onnx` writes a fusion network (any family of the :mod:`models.network` protocol that takes no
  GT) as an ONNX graph of its official tuple with dynamic batch and spatial sizes (the HR-MSI side is tied to
  ``scale`` × the LR-HSI side), its description in the file's metadata, and checks it with onnxruntime
  against PyTorch (:func:`check_parity`) before the file appears.
- :func:`quantize_int8` turns an fp32 ONNX file into a static int8 one (onnxruntime QDQ: per-channel int8
  weights, uint8 activations, float32 head, calibrated on training patches, :func:`calibration_patches`).
- :class:`OnnxNetwork` runs an ONNX file through onnxruntime behind the networks' call signature
  ``(lrhsi, hrmsi) -> (hrhsi, fused)``, so that ``engine.evaluate`` and ``utils.tiling`` take it unchanged.
- :func:`to_bf16` makes a PyTorch network compute in bfloat16 (weights and activations, channels-last).

Tensors: LR-HSI (B, bands, h, w), HR-MSI (B, msi_bands, s·h, s·w), outputs (B, bands, s·h, s·w) and
(B, nf, s·h, s·w), float32, the data's [-1, 1] domain. onnx and onnxruntime are optional
(``requirements-deploy.txt``); they are imported when first needed.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from models.clra import concatenating_dense_blocks
from models.network import FusionNetwork
from utils.fileio import WriteError, make_parent, publish, remove_stale_temps, sha256_of, temp_name_prefix

INPUTS = ("lrhsi", "hrmsi")
OUTPUTS = ("hrhsi", "fused")
PARITY_TOL = 1e-4  # max |ONNX − PyTorch| on the [-1, 1] outputs accepted at export (float32 rounding is ~1e-6)
PARITY_SIZES = ((1, 8, 8), (2, 6, 10), (1, 12, 16))  # (batch, LR h, LR w) of the export check
EXPORTERS = ("dynamo", "torchscript")
PRECISIONS = ("fp32", "bf16", "int8")
OPSET = 18
FLOAT_MODULES_KEY = "float_modules"  # metadata: the network's output_modules, kept float32 by quantize_int8
LEGACY_FLOAT_MODULES = "fuse,last"  # files exported before FLOAT_MODULES_KEY hold DTS networks, whose head this is
_MAX_SIDE = 1 << 14  # upper bound of the dynamic LR side (the exporter needs one)


def require(module: str) -> Any:
    """Import an optional deployment package, or raise a ``ValueError`` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"{module} is not installed; it is needed for ONNX export and onnxruntime inference "
                         f"(pip install -r requirements-deploy.txt)") from None


def random_inputs(model: nn.Module, batch: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform [-1, 1] LR-HSI (batch, bands, h, w) and HR-MSI (batch, msi_bands, s·h, s·w) for ``model``."""
    g = torch.Generator().manual_seed(seed)
    s = model.scale
    return (torch.rand(batch, model.bands, h, w, generator=g) * 2 - 1,
            torch.rand(batch, model.msi_bands, s * h, s * w, generator=g) * 2 - 1)


def network_metadata(model: FusionNetwork, checkpoint: str | os.PathLike | None = None) -> dict[str, str]:
    """The description stored in an exported file: the family (``arch``), role, bands, MSI bands, scale, every
    scalar constructor argument (e.g. a DTS network's ``adaptive_fuse`` and ``compat``; None as ``"none"``), the
    whole description :meth:`~models.network.FusionNetwork.model_config` (JSON) and, given the source
    ``checkpoint``, its path and SHA-256."""
    desc = model.model_config()
    scalars = {k: "none" if v is None else v for k, v in desc.items() if v is None or isinstance(v, int | float | str)}
    meta = {"format": "csakd-onnx", **scalars, "arch": model.arch, "role": model.role, "bands": model.bands,
            "msi_bands": model.msi_bands, "scale": model.scale, "model_config": json.dumps(desc), "precision": "fp32",
            FLOAT_MODULES_KEY: ",".join(model.output_modules)}
    if checkpoint is not None:
        meta.update(checkpoint=os.path.abspath(checkpoint), checkpoint_sha256=sha256_of(checkpoint))
    return {k: str(v) for k, v in meta.items()}


WEIGHTS_DIGEST_KEY = "graph_sha256"  # metadata: SHA-256 of the serialised graph (its weights and operators)


def graph_sha256(proto: Any) -> str:
    """SHA-256 of an ONNX model's serialised graph: every weight (initializer, constant) and operator. The
    metadata lives outside the graph, so the file can carry the digest of its own weights."""
    return hashlib.sha256(proto.graph.SerializeToString()).hexdigest()


def _write_metadata(path: str, metadata: dict[str, str]) -> None:
    """Set ``metadata`` (and the graph's digest, :data:`WEIGHTS_DIGEST_KEY`) in the ONNX file ``path``."""
    onnx = require("onnx")
    proto = onnx.load(path)
    metadata = {**metadata, WEIGHTS_DIGEST_KEY: graph_sha256(proto)}
    kept = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, path)


def verify_graph(path: str, metadata: dict[str, str]) -> None:
    """Refuse (ValueError, one line) an ONNX file whose graph does not match the digest written at export: bytes
    of its weights changed since (a damaged copy or a tampered file would otherwise compute wrong images)."""
    stored = metadata.get(WEIGHTS_DIGEST_KEY)
    if stored is None:
        raise ValueError(f"{path}: carries no digest of its weights ({WEIGHTS_DIGEST_KEY}; exported by an older "
                         f"version), so they cannot be verified; export it again with export_CSAKD.py")
    found = graph_sha256(require("onnx").load(path))
    if found != stored:
        raise ValueError(f"{path}: corrupt: its graph (weights) does not match the SHA-256 stored at export "
                         f"({found[:16]}… vs {stored[:16]}…); restore or export it again")


def _trace(model: nn.Module, path: str, exporter: str) -> None:
    """Write ``model``'s ONNX graph to ``path`` with dynamic batch and LR side; HR side = scale × LR side."""
    example = random_inputs(model, 1, 8, 8)
    with torch.no_grad(), concatenating_dense_blocks(), warnings.catch_warnings():
        # concatenating_dense_blocks: the custom autograd Function does not trace. Warnings: torch's exporters
        # warn about their own internals (deprecations) and the tracer about the input checks of ``forward``,
        # constant for valid inputs (OnnxNetwork checks the shapes before running the graph).
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=_MAX_SIDE)
            h, w = (torch.export.Dim(n, min=2, max=_MAX_SIDE) for n in ("h", "w"))
            shapes = {"lrhsi": {0: batch, 2: h, 3: w}, "hrmsi": {0: batch, 2: model.scale * h, 3: model.scale * w}}
            torch.onnx.export(model, example, path, input_names=list(INPUTS), output_names=list(OUTPUTS),
                              dynamic_shapes=shapes, opset_version=OPSET, dynamo=True, external_data=False,
                              verbose=False)
        elif exporter == "torchscript":
            axes = {"lrhsi": {0: "batch", 2: "h", 3: "w"}, "hrmsi": {0: "batch", 2: "H", 3: "W"},
                    "hrhsi": {0: "batch", 2: "H", 3: "W"}, "fused": {0: "batch", 2: "H", 3: "W"}}
            torch.onnx.export(model, example, path, input_names=list(INPUTS), output_names=list(OUTPUTS),
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        else:
            raise ValueError(f"--exporter: expected one of {list(EXPORTERS)}, got {exporter!r}")


def export_onnx(model: nn.Module, path: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                exporter: str = "dynamo", sizes: Sequence[tuple[int, int, int]] = PARITY_SIZES,
                tol: float = PARITY_TOL) -> float:
    """Export ``model`` (a fusion network, any device; exported from the CPU) to ``path`` and verify it.

    The file appears only once onnxruntime reproduces PyTorch within ``tol`` on random inputs of every
    (batch, LR h, LR w) in ``sizes``; otherwise nothing is written and a ``ValueError`` gives the difference.

    Returns:
        The largest |ONNX − PyTorch| over the outputs and sizes checked.
    """
    model = model.to("cpu").eval()
    path = os.fspath(path)
    tmp = _temporary(path)
    try:
        _trace(model, tmp, exporter)
        _write_metadata(tmp, {**network_metadata(model, checkpoint), "exporter": exporter})
        diff = check_parity(model, OnnxNetwork(tmp), sizes)
        if not diff <= tol:
            raise ValueError(f"{path}: the exported graph differs from PyTorch by {diff:.3g} on random inputs "
                             f"(accepted: {tol:g}); nothing written")
        publish(tmp, path)
        return diff
    except OSError as exc:
        raise exc if isinstance(exc, WriteError) else WriteError(path, exc) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _temporary(path: str) -> str:
    """A new empty temporary file beside ``path`` (named by the rule of ``utils.fileio``: a killed export's is
    removed by the next export to ``path``), once ``path`` is checked to be writable as a file."""
    if os.path.isdir(path):
        raise ValueError(f"--out {path}: is a folder; expected the name of the .onnx file to write")
    make_parent(path)
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale_temps(folder, of=path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_name_prefix(path), suffix=".onnx", dir=folder)
    except OSError as exc:
        raise WriteError(path, exc) from None
    os.close(fd)
    return tmp


def check_parity(model: nn.Module, network: OnnxNetwork, sizes: Iterable[tuple[int, int, int]]) -> float:
    """Largest |onnxruntime − PyTorch| over both outputs, on seeded random inputs of each (batch, h, w)."""
    worst = 0.0
    for i, (batch, h, w) in enumerate(sizes):
        lr, msi = random_inputs(model, batch, h, w, seed=i)
        with torch.no_grad():
            ref = model(lr, msi)
        got = network(lr, msi)
        worst = max(worst, *((a - b).abs().max().item() for a, b in zip(got, ref, strict=True)))
    return worst


class OnnxNetwork:
    """An exported fusion network run by onnxruntime, called like the PyTorch network; its graph is first checked
    against the digest of its weights in the metadata (:func:`verify_graph`).

    ``network(lrhsi, hrmsi) -> (hrhsi, fused)`` takes and returns float32 tensors (CPU; outputs on the inputs'
    device). ``bands``, ``msi_bands``, ``scale``, ``role``, ``precision`` and ``metadata`` come from the
    file. ``threads`` pins onnxruntime's intra-op threads (default: ``torch.get_num_threads()``).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        ort = require("onnxruntime")
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such ONNX file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for foreign or corrupt files
            raise ValueError(f"{path}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from None
        self.path = path
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if self.metadata.get("format") != "csakd-onnx":
            raise ValueError(f"{path}: no CSAKD metadata (format={self.metadata.get('format')!r}); export it with "
                             f"export_CSAKD.py")
        verify_graph(path, self.metadata)
        self.role = self.metadata["role"]
        self.bands, self.msi_bands, self.scale = (int(self.metadata[k]) for k in ("bands", "msi_bands", "scale"))
        self.precision = self.metadata.get("precision", "fp32")

    def eval(self) -> OnnxNetwork:
        """No-op (the graph is inference-only); present so that callers treat it like a module."""
        return self

    def __call__(self, lrhsi: torch.Tensor, hrmsi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.scale
        if lrhsi.shape[1] != self.bands or hrmsi.shape[1] != self.msi_bands or \
                tuple(hrmsi.shape[-2:]) != (s * lrhsi.shape[-2], s * lrhsi.shape[-1]):
            raise ValueError(f"{self.path}: takes LR-HSI (B, {self.bands}, h, w) and HR-MSI (B, {self.msi_bands}, "
                             f"{s}h, {s}w), got {tuple(lrhsi.shape)} and {tuple(hrmsi.shape)}")
        feeds = {name: x.detach().float().cpu().contiguous().numpy() for name, x in zip(INPUTS, (lrhsi, hrmsi),
                                                                                       strict=True)}
        try:
            outs = self.session.run(list(OUTPUTS), feeds)
        except Exception as exc:  # onnxruntime's own types, e.g. a graph that contradicts its metadata
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{self.path}: onnxruntime refused LR-HSI {tuple(lrhsi.shape)} and HR-MSI "
                             f"{tuple(hrmsi.shape)}, the shapes its metadata promises ({first[:300]}); export the "
                             f"file again") from None
        return tuple(torch.from_numpy(o).to(lrhsi.device) for o in outs)  # type: ignore[return-value]


def calibration_patches(cfg: dict, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``n`` training patches (LR-HSI, HR-MSI; one per sample, batch 1) of the data configuration ``cfg``
    (the checkpoint's own), as onnxruntime feeds. Training crops with the training augmentation."""
    from data import build_dataset

    if n < 1:
        raise ValueError(f"--calib: expected at least 1 calibration patch, got {n}")
    dataset = build_dataset({**cfg, "seed": int(cfg.get("seed", 0)) + seed}, "train")
    if len(dataset) == 0:
        raise ValueError("--calib: the checkpoint's training split is empty; no calibration patches")
    patches = []
    for i in range(n):  # a dataset shorter than n is walked again: each pass draws new crops and flips
        sample = dataset[i % len(dataset)]
        patches.append({k: sample[k][None].float().numpy() for k in INPUTS})
    return patches


def _patch_reader(patches: Sequence[dict[str, np.ndarray]]) -> Any:
    quantization = require("onnxruntime.quantization")

    class PatchReader(quantization.CalibrationDataReader):
        """Feeds the calibration patches to onnxruntime's calibrator, one at a time."""

        def __init__(self) -> None:
            self.items = iter(patches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    return PatchReader()


def _nodes_of(path: str | os.PathLike, modules: Sequence[str]) -> list[str]:
    """Names of the graph nodes that read a parameter of one of ``modules`` (e.g. ``"last"``): the exporters
    keep the parameter names (``last.weight``), whatever they call the nodes."""
    graph = require("onnx").load(os.fspath(path)).graph
    prefixes = tuple(f"{m}." for m in modules)
    return [n.name for n in graph.node if any(i.startswith(prefixes) for i in n.input)]


def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike,
                  patches: Sequence[dict[str, np.ndarray]], per_channel: bool = True,
                  op_types: Sequence[str] | None = None, float_modules: Sequence[str] | None = None) -> None:
    """Static int8 quantisation (onnxruntime QDQ) of an exported fp32 file, written atomically.

    Every operator onnxruntime can quantise (``op_types`` None; e.g. ``("Conv",)`` for convolutions only) gets
    uint8 activations with MinMax ranges from ``patches`` and int8 weights (per output channel with
    ``per_channel``), so that consecutive convolutions, LeakyReLUs, concatenations and additions stay in int8
    between them; the nodes reading parameters of ``float_modules`` stay float32 (default: the network's
    ``output_modules`` recorded at export, e.g. the DTS head ``fuse``, ``last``: their rounding reaches the output
    directly).
    Measured on the quick-start student (docs/deployment.md): convolutions only −0.24 dB test PSNR
    and slower than fp32 (a quantise/dequantise pair around every convolution); every op −0.29 dB; every op with
    a float head −0.17 dB (the default) and faster than onnxruntime fp32. The metadata is carried over with
    ``precision=int8`` and the calibration count.
    """
    quantization = require("onnxruntime.quantization")
    out_path = os.fspath(out_path)
    meta = OnnxNetwork(fp32_path).metadata
    if float_modules is None:
        float_modules = [m for m in meta.get(FLOAT_MODULES_KEY, LEGACY_FLOAT_MODULES).split(",") if m]
    tmp = _temporary(out_path)
    try:
        quantization.quantize_static(
            os.fspath(fp32_path), tmp, _patch_reader(patches), quant_format=quantization.QuantFormat.QDQ,
            op_types_to_quantize=list(op_types) if op_types else None, per_channel=per_channel,
            nodes_to_exclude=_nodes_of(fp32_path, float_modules),
            activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax)
        _write_metadata(tmp, {**meta, "precision": "int8", "calibration_patches": str(len(patches)),
                              "quantized_ops": ",".join(op_types) if op_types else "all",
                              "per_channel": str(per_channel)})
        publish(tmp, out_path)
    except OSError as exc:
        raise exc if isinstance(exc, WriteError) else WriteError(out_path, exc) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class Bf16Network(nn.Module):
    """A fusion network computing in bfloat16: weights cast once, inputs cast on the way in, outputs returned as
    float32. ``forward`` as the wrapped network's."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.to(torch.bfloat16)
        for key in ("role", "bands", "msi_bands", "scale"):
            setattr(self, key, getattr(model, key))

    def forward(self, lrhsi: torch.Tensor, hrmsi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, fused = self.model(lrhsi.to(torch.bfloat16), hrmsi.to(torch.bfloat16))
        return out.float(), fused.float()


def to_bf16(model: nn.Module) -> Bf16Network:
    """``model`` (prepared by ``engine.inference.prepare``: eval, frozen, channels-last) computing in bfloat16."""
    return Bf16Network(model)


# ---------------------------------------------------------------------------------------------------------------------
# checkpoints → deployable files (export_CSAKD.py) and deployable networks (test_CSAKD.py --backend/--precision)


def network_from_checkpoint(path: str | os.PathLike) -> tuple[FusionNetwork, dict]:
    """The network a weight file holds (:func:`models.describe.network_from_file`), with its weights, in eval mode;
    and the run's config ({} for official files)."""
    from models.describe import build_from_checkpoint, network_from_file
    from utils.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    model, _ = build_from_checkpoint({}, network_from_file(path, ckpt=ckpt).role, path, ckpt=ckpt)
    return model.eval(), dict(ckpt.get("config") or {})


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, quantize: str = "none",
                      calib: int = 32, exporter: str = "dynamo", tol: float = PARITY_TOL) -> dict[str, Any]:
    """Export a weight file to ONNX at ``out`` (fp32, or int8 with ``quantize="int8"`` calibrated on ``calib``
    training patches of the checkpoint's own data configuration). Returns what was done, for the log."""
    model, cfg = network_from_checkpoint(checkpoint)
    if model.privileged:
        raise ValueError(f"checkpoint {checkpoint}: holds the privileged --arch {model.arch} {model.role}, which takes "
                         f"the ground truth as a third input; ONNX export takes networks of (lrhsi, hrmsi) only "
                         f"(export the student)")
    if quantize == "none":
        diff = export_onnx(model, out, checkpoint, exporter, tol=tol)
        return {"out": os.fspath(out), "role": model.role, "precision": "fp32", "max_abs_diff": diff}
    if quantize != "int8":
        raise ValueError(f"--quantize: expected none or int8, got {quantize!r}")
    if not cfg:
        raise ValueError(f"checkpoint {checkpoint}: holds no run configuration, so there is no training data to "
                         f"calibrate int8 on")
    patches = calibration_patches(cfg, calib)
    make_parent(out)
    with tempfile.TemporaryDirectory(prefix=temp_name_prefix(out), dir=os.path.dirname(os.path.abspath(out))) as tmp:
        fp32 = os.path.join(tmp, "fp32.onnx")
        diff = export_onnx(model, fp32, checkpoint, exporter, tol=tol)
        quantize_int8(fp32, out, patches)
        drift = check_parity(model, OnnxNetwork(out), PARITY_SIZES)
    return {"out": os.fspath(out), "role": model.role, "precision": "int8", "max_abs_diff": diff,
            "calibration_patches": len(patches), "int8_max_abs_diff": drift}


def deployed_network(cfg: dict, role: str, load_torch: Any) -> tuple[Any, str, str]:
    """The network ``test_CSAKD.py`` evaluates for ``--backend`` and ``--precision``.

    Args:
        cfg: the test configuration ("backend", "precision", "checkpoint", "bands", "msi_bands", "scale").
        role: "teacher" or "student".
        load_torch: ``(path or None) -> (prepared fp32 PyTorch network, source description)``; None loads
            ``cfg["checkpoint"]`` (or the run's default checkpoint).

    Returns:
        (network, source, precision); the network is called like the PyTorch one.
    """
    backend, precision = cfg.get("backend") or "torch", cfg.get("precision")
    if backend == "onnxruntime":
        path = cfg.get("checkpoint")
        if not path or not str(path).endswith(".onnx"):
            raise ValueError(f"--backend onnxruntime: --checkpoint must be an exported .onnx file "
                             f"(export_CSAKD.py), got {path!r}")
        net = OnnxNetwork(path)
        if precision not in (None, net.precision):
            raise ValueError(f"--precision {precision}: {path} holds an {net.precision} graph (export_CSAKD.py "
                             f"--quantize int8 writes int8 files)")
        if net.role != role:
            raise ValueError(f"{path}: holds a {net.role} network, but --test_mode tests the {role}")
        if net.scale != cfg["scale"]:
            raise ValueError(f"{path}: the network takes scale={net.scale}, but --scale is {cfg['scale']}")
        cfg["bands"], cfg["msi_bands"] = net.bands, net.msi_bands  # as for weight files: the data must fit the file
        return net, f"{path} (onnxruntime {net.precision})", net.precision
    if backend != "torch":
        raise ValueError(f"--backend: expected torch or onnxruntime, got {backend!r}")
    if str(cfg.get("checkpoint") or "").endswith(".onnx"):
        raise ValueError(f"--checkpoint {cfg['checkpoint']}: an ONNX file runs with --backend onnxruntime")
    if precision == "int8":
        raise ValueError("--precision int8: int8 runs in onnxruntime: export with export_CSAKD.py --quantize int8 "
                         "and test the .onnx file with --backend onnxruntime")
    model, source = load_torch(None)
    if precision == "bf16":
        return to_bf16(model), f"{source} (bf16)", "bf16"
    return model, source, "fp32"


def fp32_reference(cfg: dict, network: Any, load_torch: Any) -> Any | None:
    """The fp32 network to compare a lower-precision one with on the same images, or None when ``network`` is
    fp32 or no fp32 source is known. For an ONNX file: ``--reference`` (an fp32 .onnx or weight file), else the
    source checkpoint recorded in its metadata when that file still has the recorded SHA-256."""
    precision = getattr(network, "precision", "bf16" if isinstance(network, Bf16Network) else "fp32")
    if precision == "fp32":
        return None
    path = cfg.get("reference")
    if not path and isinstance(network, OnnxNetwork):
        recorded = network.metadata.get("checkpoint")
        if not recorded or not os.path.isfile(recorded) or sha256_of(recorded) != network.metadata.get(
                "checkpoint_sha256"):
            return None
        path = recorded
    if path and str(path).endswith(".onnx"):
        return OnnxNetwork(path)
    return load_torch(path or None)[0]


def compare_with_fp32(cfg: dict, network: Any, precision: str, metrics: dict[str, float], load_torch: Any,
                      loader: Any, device: torch.device) -> dict[str, Any]:
    """What ``test_CSAKD.py`` records about the deployed network: {"backend", "precision", "fp32_metrics",
    "change_vs_fp32"}. Below fp32, the fp32 network (:func:`fp32_reference`) is scored on the same images
    (``loader``) and ``change_vs_fp32`` = ``metrics`` − its metrics; both None for fp32 or without a reference."""
    from engine.evaluate import evaluate

    out = {"backend": cfg.get("backend") or "torch", "precision": precision, "fp32_metrics": None,
           "change_vs_fp32": None}
    reference = fp32_reference(cfg, network, load_torch)
    if reference is not None:
        fp32 = evaluate(reference, loader, {**cfg, "warmup": 0}, device, metrics=cfg.get("metrics"))["metrics"]
        out.update(fp32_metrics=fp32, change_vs_fp32=metric_changes(metrics, fp32))
    return out


def describe_change(record: dict[str, Any]) -> str:
    """One line for the log from :func:`compare_with_fp32`'s record."""
    head = f"backend {record['backend']}, precision {record['precision']}"
    if record["change_vs_fp32"] is not None:
        return f"{head} against fp32 on the same images: " + ", ".join(
            f"{k} {v:+.4f}" for k, v in record["change_vs_fp32"].items())
    if record["precision"] == "fp32":
        return f"{head}"
    return f"{head}: no fp32 network to compare with (give --reference)"


def metric_changes(metrics: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """Per metric, ``metrics − reference`` (e.g. PSNR dB lost by int8 against fp32 on the same images)."""
    return {k: float(v - reference[k]) for k, v in metrics.items() if k in reference}
