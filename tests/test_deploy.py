"""ONNX export, onnxruntime inference, int8 and bf16 (engine/deploy.py, export_CSAKD.py, test_CSAKD.py flags).

Tiny networks (8 bands, nf 8): the tracing exporter takes under a second for the student (a few for the
teacher's 20 CLRA blocks); the default (dynamo) exporter, about 10 s, runs once, through the command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx", reason="ONNX export needs requirements-deploy.txt (onnx)")
pytest.importorskip("onnxruntime", reason="onnxruntime inference needs requirements-deploy.txt (onnxruntime)")

from test_train_run import tiny, tiny_test

import export_CSAKD
import test_CSAKD
import train_CSAKD
from engine import deploy
from engine.deploy import (
    OnnxNetwork,
    calibration_patches,
    check_parity,
    export_onnx,
    network_from_checkpoint,
    quantize_int8,
    random_inputs,
    to_bf16,
)
from engine.inference import prepare
from models import build_model
from utils.checkpoint import save_weights

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_NET = {"bands": 8, "msi_bands": 2, "num_base_chs": 8, "num_agg_feat": 4, "student_layers": "1111",
            "adaptive_fuse": 3, "scale": 4}
# Sizes beyond the export's own check (engine.deploy.PARITY_SIZES): odd, non-square, batch 3.
EXTRA_SIZES = ((3, 5, 7), (1, 16, 4))


def tiny_net(role: str, compat: str | None = None, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model({**TINY_NET, "compat": compat}, role).eval()


@pytest.mark.parametrize("role", ["teacher", "student"])
@pytest.mark.parametrize("compat", [None, "official"])
def test_export_round_trip_parity(tmp_path: Path, role: str, compat: str | None) -> None:
    """Both networks, both attention forms: the ONNX graph reproduces PyTorch at several batch and LR sizes
    (the HR size follows as scale × LR), within float32 rounding; the metadata describes the network."""
    model = tiny_net(role, compat)
    path = tmp_path / f"{role}.onnx"
    diff = export_onnx(model, path, exporter="torchscript")
    assert diff < 1e-5  # float32 rounding only; the export itself refuses anything above PARITY_TOL
    net = OnnxNetwork(path)
    assert check_parity(model, net, EXTRA_SIZES) < 1e-5
    assert (net.role, net.bands, net.msi_bands, net.scale, net.precision) == (role, 8, 2, 4, "fp32")
    assert net.metadata["compat"] == (compat or "none") and net.metadata["adaptive_fuse"] == "3"
    assert json.loads(net.metadata["model_config"]) == model.model_config()


def test_export_refuses_a_graph_that_differs(tmp_path: Path, monkeypatch) -> None:
    """An export whose onnxruntime check finds a difference above the tolerance writes nothing and says so."""
    monkeypatch.setattr(deploy, "check_parity", lambda *args: 3e-4)
    with pytest.raises(ValueError, match=r"differs from PyTorch by 0.0003 .*accepted: 0.0001.*nothing written"):
        export_onnx(tiny_net("student"), tmp_path / "s.onnx", exporter="torchscript")
    assert list(tmp_path.iterdir()) == []


def test_int8_within_tolerance_of_fp32(tmp_path: Path) -> None:
    """Static int8 (QDQ, per-channel weights, float head) calibrated on synthetic training patches stays within
    35 dB PSNR of fp32 on held-out test scenes.

    Tolerance reasoning: uint8 activations round each quantised tensor to 1/255 of its calibrated range
    (noise ≈ range/255/√12, about −59 dB of the range); the student's ~80 quantised tensors in sequence add
    their noise in power (≈ −40 dB) and ranges exceed the typical value, so 35 dB on held-out scenes leaves a
    margin while a real fault (a wrong scale or zero point, mixed-up channels) lands far below (< 20 dB).
    Measured on the trained quick-start student: −0.17 dB test PSNR against fp32 (docs/deployment.md).
    """
    model = tiny_net("student")
    data = {"dataset": "synthetic", "bands": 8, "msi_bands": 2, "scale": 4, "image_size": 32, "crop_size": 16,
            "synthetic_scenes": [4, 1, 2], "seed": 3}
    export_onnx(model, tmp_path / "fp32.onnx", exporter="torchscript")
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", calibration_patches(data, 8))
    net = OnnxNetwork(tmp_path / "int8.onnx")
    assert net.precision == "int8" and net.metadata["calibration_patches"] == "8"
    graph = pytest.importorskip("onnx").load(tmp_path / "int8.onnx").graph
    dtypes = {t.name: t.data_type for t in graph.initializer}
    assert dtypes["last.weight"] == 1 and dtypes["hconv1.weight_quantized"] == 3  # head float32, body int8
    from data import build_dataset

    test = build_dataset(data, "test")
    for sample in (test[i] for i in range(len(test))):
        lr, msi = sample["lrhsi"][None], sample["hrmsi"][None]
        with torch.no_grad():
            ref = model(lr, msi)[0]
        err = (net(lr, msi)[0] - ref).square().mean().item()
        assert 10 * torch.log10(torch.tensor(4.0 / err)).item() > 35.0, sample["name"]


def test_bf16_network_close_to_fp32() -> None:
    """bf16 weights and activations (8-bit mantissa, relative rounding 2^-9) stay within 40 dB of fp32."""
    model = tiny_net("student")
    lr, msi = random_inputs(model, 1, 8, 8)
    with torch.no_grad():
        ref = model(lr, msi)[0]
    with torch.inference_mode():
        out = to_bf16(prepare(tiny_net("student")))(lr, msi)[0]
    assert out.dtype == torch.float32
    assert 10 * torch.log10(4.0 / (out - ref).square().mean()).item() > 40.0


def assert_dynamic_sizes(path: Path) -> None:
    """The default exporter (torch.export) leaves batch and LR side symbolic and ties the HR side to 4 × LR."""
    graph = pytest.importorskip("onnx").load(path).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*graph.input, *graph.output)}
    assert dims == {"lrhsi": ["batch", 8, "h", "w"], "hrmsi": ["batch", 2, "4*h", "4*w"],
                    "hrhsi": ["batch", 8, "4*h", "4*w"], "fused": ["batch", 8, "4*h", "4*w"]}


def test_cli_export_and_test_end_to_end(tmp_path: Path, capsys) -> None:
    """export_CSAKD.py (fp32 with the default dynamo exporter: dynamic sizes, parity at more sizes; and int8), then
    test_CSAKD.py --backend onnxruntime:
    the summary records backend, precision and the metrics' change against fp32 on the same images."""
    cfg = train_CSAKD.load_config(tiny(tmp_path))
    torch.manual_seed(0)
    ckpt = tmp_path / "student.pth"
    save_weights(ckpt, build_model(cfg, "student"), cfg)
    fp32, int8 = tmp_path / "s.onnx", tmp_path / "s_int8.onnx"
    assert export_CSAKD.main(["--checkpoint", str(ckpt), "--format", "onnx", "--out", str(fp32)]) == 0
    assert_dynamic_sizes(fp32)
    assert check_parity(network_from_checkpoint(ckpt)[0], OnnxNetwork(fp32), EXTRA_SIZES) < 1e-5
    assert export_CSAKD.main(["--checkpoint", str(ckpt), "--out", str(int8), "--quantize", "int8", "--calib", "4",
                              "--exporter", "torchscript"]) == 0
    results = {}
    for name, extra in (("torch", ["--checkpoint", str(ckpt)]),
                        ("ort", ["--backend", "onnxruntime", "--checkpoint", str(fp32)]),
                        ("int8", ["--backend", "onnxruntime", "--checkpoint", str(int8), "--precision", "int8"]),
                        ("bf16", ["--checkpoint", str(ckpt), "--precision", "bf16", "--allow_emulated_precision"])):
        argv = tiny_test(tmp_path, *extra, "--metrics", "psnr,sam,rmse", "--results", str(tmp_path / name))
        assert test_CSAKD.main(argv) == 0
        results[name] = json.loads((tmp_path / name / "summary.json").read_text())
    assert (results["ort"]["backend"], results["ort"]["precision"]) == ("onnxruntime", "fp32")
    assert results["ort"]["change_vs_fp32"] is None
    for k, v in results["torch"]["metrics"].items():
        assert results["ort"]["metrics"][k] == pytest.approx(v, rel=1e-4, abs=1e-4), k
    for name in ("int8", "bf16"):
        s = results[name]
        assert s["precision"] == name
        assert s["fp32_metrics"]["psnr"] == pytest.approx(results["torch"]["metrics"]["psnr"])
        assert s["change_vs_fp32"]["psnr"] == pytest.approx(s["metrics"]["psnr"] - s["fp32_metrics"]["psnr"])
    assert "against fp32 on the same images" in capsys.readouterr().out
    assert test_CSAKD.main(tiny_test(tmp_path, "--backend", "onnxruntime", "--checkpoint", str(int8),
                                      "--precision", "fp32")) == 2
    assert "holds an int8 graph" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--precision", "int8"], "int8 runs in onnxruntime"),
    (["--backend", "onnxruntime"], "must be an exported .onnx file"),
])
def test_cli_refuses_unsupported_combinations(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    cfg = train_CSAKD.load_config(tiny(tmp_path))
    save_weights(tmp_path / "s.pth", build_model(cfg, "student"), cfg)
    assert test_CSAKD.main(tiny_test(tmp_path, "--checkpoint", str(tmp_path / "s.pth"), *extra)) == 2
    assert message in capsys.readouterr().err


TINY_PSD = {"arch": "psd", "bands": 8, "msi_bands": 2, "num_base_chs": 8, "scale": 4}


@pytest.mark.parametrize("net_cfg, role", [(TINY_PSD, "student"), (TINY_NET, "teacher")], ids=["psd-student",
                                                                                            "dts-teacher"])
def test_cli_exports_both_families(tmp_path: Path, capsys, net_cfg: dict, role: str) -> None:
    """export_CSAKD.py exports a PSD student and a DTS teacher from their weight files alone (no flags): the
    onnxruntime outputs equal PyTorch's within float32 rounding at sizes beyond the export's own check, and the
    metadata names the family and holds the file's description."""
    torch.manual_seed(0)
    model = build_model(net_cfg, role).eval()
    ckpt, out = tmp_path / f"{role}.pth", tmp_path / f"{role}.onnx"
    save_weights(ckpt, model)
    assert export_CSAKD.main(["--checkpoint", str(ckpt), "--out", str(out), "--exporter", "torchscript"]) == 0
    assert f"wrote {out}: {role}, fp32" in capsys.readouterr().out
    net = OnnxNetwork(out)
    assert check_parity(network_from_checkpoint(ckpt)[0], net, EXTRA_SIZES) < 1e-5
    assert (net.metadata["arch"], net.role) == (net_cfg.get("arch", "dts"), role)
    assert json.loads(net.metadata["model_config"]) == model.model_config()


# The pansharpening shapes: 8 MS bands (WV3) as LR-HSI, a PAN of one band as HR-MSI.
PAN_PSD, PAN_DTS = {**TINY_PSD, "msi_bands": 1}, {**TINY_NET, "msi_bands": 1}


@pytest.mark.parametrize("net_cfg", [PAN_PSD, PAN_DTS], ids=["psd-student", "dts-student"])
def test_cli_exports_pansharpening_students(tmp_path: Path, capsys, net_cfg: dict) -> None:
    """A PSD and a DTS student taking 8 MS bands and a one-band PAN export from their weight files, and the graph
    reproduces PyTorch at sizes beyond the export's own check."""
    torch.manual_seed(0)
    model = build_model(net_cfg, "student").eval()
    ckpt, out = tmp_path / "student.pth", tmp_path / "student.onnx"
    save_weights(ckpt, model)
    assert export_CSAKD.main(["--checkpoint", str(ckpt), "--out", str(out), "--exporter", "torchscript"]) == 0
    net = OnnxNetwork(out)
    assert check_parity(model, net, EXTRA_SIZES) < 1e-5
    assert (net.bands, net.msi_bands, net.metadata["arch"]) == (8, 1, net_cfg.get("arch", "dts"))
    assert json.loads(net.metadata["model_config"]) == model.model_config()


def test_cli_refuses_the_privileged_teacher(tmp_path: Path, capsys) -> None:
    """The privileged PSD teacher takes the GT as a third input, which an ONNX fusion graph has not: one line, no
    file written."""
    save_weights(tmp_path / "t.pth", build_model(TINY_PSD, "teacher"))
    assert export_CSAKD.main(["--checkpoint", str(tmp_path / "t.pth"), "--out", str(tmp_path / "t.onnx")]) == 2
    assert "holds the privileged --arch psd teacher" in capsys.readouterr().err
    assert not (tmp_path / "t.onnx").exists()
