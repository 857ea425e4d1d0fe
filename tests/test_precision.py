"""Low precision only where the CPU has it (utils/cpu.py): the CPU description from cpuinfo texts, and the refusal
of ``--precision bf16`` / ``--amp bf16|fp16`` on a CPU that would emulate them, with the capability probe
replaced both ways (``utils.cpu.probe``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train_run import tiny, tiny_test

import benchmarks.deploy
import benchmarks.kd
import test_CSAKD
import train_CSAKD
from engine.runtime import check_precision
from models import build_model
from utils import cpu
from utils.checkpoint import save_weights

X86_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
flags\t\t: fpu sse sse2 avx avx2 fma f16c
"""
X86_BF16 = """processor\t: 0
model name\t: AMD EPYC 9B14 96-Core Processor
flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni avx512_bf16
"""
X86_SPR = """model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile
"""
ARM = """processor\t: 0
BogoMIPS\t: 2000.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid bf16 i8mm
CPU implementer\t: 0x41
"""
ARM_OLD = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32\n"

EMULATING = cpu.CpuInfo(model="Fake AVX2 CPU", capability="AVX2", machine="x86_64", bf16=False, fp16=False)
NATIVE = cpu.CpuInfo(model="Fake AMX CPU", capability="AVX512", machine="x86_64", bf16=True, fp16=True)


@pytest.fixture(autouse=True)
def no_onednn_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cpuinfo texts decide, whatever oneDNN cap the environment running the tests sets."""
    for var in cpu.ONEDNN_ISA_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def emulating(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "probe", lambda *a, **k: EMULATING)


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "probe", lambda *a, **k: NATIVE)


@pytest.mark.parametrize("text, machine, model, bf16, fp16", [
    (X86_AVX2, "x86_64", "AMD EPYC 7B13 64-Core Processor", False, False),
    (X86_BF16, "x86_64", "AMD EPYC 9B14 96-Core Processor", True, False),
    (X86_SPR, "x86_64", "Intel(R) Xeon(R) Platinum 8488C", True, True),
    (ARM, "aarch64", "ARM Neoverse", True, True),
    (ARM_OLD, "aarch64", "ARM Neoverse", False, False),
    (X86_BF16, "ppc64le", "AMD EPYC 9B14 96-Core Processor", False, False),  # flags of another family mean nothing
])
def test_description_from_cpuinfo_text(monkeypatch: pytest.MonkeyPatch, text: str, machine: str, model: str,
                                        bf16: bool, fp16: bool) -> None:
    """A given cpuinfo text decides from its flags alone (PyTorch's probes ask this machine, not that one);
    without a "model name" line the name is ``platform.processor()``."""
    monkeypatch.setattr(cpu.platform, "processor", lambda: "ARM Neoverse")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "FAKECAP")
    info = cpu.probe(text, machine)
    assert (info.model, info.capability, info.machine, info.bf16, info.fp16) == (model, "FAKECAP", machine, bf16, fp16)
    yes = {True: "yes", False: "no"}
    assert cpu.describe(info) == f"{model}, capability FAKECAP, native bf16: {yes[bf16]}, fp16: {yes[fp16]}"


@pytest.mark.parametrize("cap, bf16, fp16", [("AVX2", False, False), ("avx512_core_bf16", True, False),
                                             ("AVX512_CORE_AMX_FP16", True, True)])
def test_onednn_isa_cap_takes_native_arithmetic_away(monkeypatch: pytest.MonkeyPatch, cap: str, bf16: bool,
                                                     fp16: bool) -> None:
    """oneDNN runs PyTorch's CPU convolutions: capped below AVX512-BF16 / -FP16 it emulates them."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    info = cpu.probe(X86_SPR, "x86_64")
    assert (info.bf16, info.fp16) == (bf16, fp16)
    assert f"ONEDNN_MAX_CPU_ISA={cap.upper()}, native bf16: {'yes' if bf16 else 'no'}" in cpu.describe(info)


def test_description_of_this_cpu_names_model_and_capability() -> None:
    line = cpu.describe()
    assert line.startswith(cpu.cpu_model(cpu.read_cpuinfo()) + ", ")
    assert f"capability {torch.backends.cpu.get_cpu_capability()}" in line and "native bf16: " in line


def test_torch_probes_decide_where_present_and_flags_where_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """On x86 PyTorch's private probes are asked (either true is enough); where this torch lacks them or they fail,
    the cpuinfo flags decide."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_fp16_supported", lambda: False, raising=False)
    assert cpu.native_precisions(X86_AVX2, "x86_64") == {"bf16": True, "fp16": False}
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: 1 / 0)
    assert cpu.native_precisions(X86_AVX2, "x86_64") == {"bf16": False, "fp16": False}
    assert cpu.native_precisions(X86_SPR, "x86_64") == {"bf16": True, "fp16": True}


@pytest.mark.usefixtures("emulating")
def test_test_script_refuses_emulated_bf16_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Refused before any checkpoint is read (there is none here): the flag, the CPU, its capability, the
    measured cost, fp32 and onnxruntime int8, and the override are named."""
    assert test_CSAKD.main(tiny_test(tmp_path, "--precision", "bf16", "--device", "cpu")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --precision bf16: ")
    for part in ("Fake AVX2 CPU", "capability AVX2", "native bf16: no", "emulated", "7.5x slower than fp32",
                 "AVX2-only AMD EPYC", "fp32", "--backend onnxruntime --precision int8", "--allow_emulated_precision"):
        assert part in err, part
    assert test_CSAKD.main(tiny_test(tmp_path, "--amp", "bf16", "--device", "cpu")) == 2
    assert "--amp bf16: " in capsys.readouterr().err


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
@pytest.mark.usefixtures("emulating")
def test_training_refuses_emulated_amp_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      amp: str) -> None:
    assert train_CSAKD.main(tiny(tmp_path, "--amp", amp, epochs=1)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --amp {amp}: this CPU has no native {amp} ")
    for part in ("Fake AVX2 CPU", "capability AVX2", "emulated", "--amp off", "--allow_emulated_precision"):
        assert part in err, part
    assert not (tmp_path / "ck").exists() and not (tmp_path / "runs").exists()


def _student(tmp_path: Path) -> Path:
    cfg = train_CSAKD.load_config(tiny(tmp_path))
    torch.manual_seed(0)
    save_weights(tmp_path / "s.pth", build_model(cfg, "student"), cfg)
    return tmp_path / "s.pth"


@pytest.mark.usefixtures("emulating")
def test_override_keeps_emulated_bf16(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = _student(tmp_path)
    argv = tiny_test(tmp_path, "--checkpoint", str(ckpt), "--precision", "bf16", "--allow_emulated_precision",
                     "--results", str(tmp_path / "out"))
    assert test_CSAKD.main(argv) == 0
    assert "backend torch, precision bf16" in capsys.readouterr().out
    assert train_CSAKD.main(tiny(tmp_path, "--amp", "bf16", "--allow_emulated_precision", epochs=1)) == 0
    assert (tmp_path / "ck" / "tiny" / "student" / "best.pth").is_file()


@pytest.mark.usefixtures("native")
def test_native_bf16_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = _student(tmp_path)
    assert test_CSAKD.main(tiny_test(tmp_path, "--checkpoint", str(ckpt), "--precision", "bf16")) == 0
    assert "backend torch, precision bf16" in capsys.readouterr().out
    check_precision({"amp": "fp16"}, torch.device("cpu"))


@pytest.mark.usefixtures("emulating")
def test_what_is_never_refused() -> None:
    """CUDA devices, fp32, onnxruntime (its own kernels) and ``--amp off`` pass on an emulating CPU."""
    check_precision({"amp": "bf16", "precision": "bf16"}, torch.device("cuda"))  # no CUDA needed to check
    check_precision({"amp": "off", "precision": "fp32"}, torch.device("cpu"))
    check_precision({"amp": "bf16", "precision": "bf16", "backend": "onnxruntime"}, torch.device("cpu"))
    with pytest.raises(ValueError, match="--precision bf16"):
        check_precision({"amp": "off", "precision": "bf16", "backend": "torch"}, torch.device("cpu"))


def test_deploy_benchmark_skips_bf16_rows_where_emulated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "probe", lambda *a, **k: EMULATING)
    keep, note = benchmarks.deploy.bf16_rows(allow=False)
    assert not keep and "PyTorch bf16 rows skipped" in note and "Fake AVX2 CPU, capability AVX2" in note
    assert benchmarks.deploy.bf16_rows(allow=True) == (True, None)
    monkeypatch.setattr(cpu, "probe", lambda *a, **k: NATIVE)
    assert benchmarks.deploy.bf16_rows(allow=False) == (True, None)


def test_kd_markdown_names_the_hosts_of_its_runs() -> None:
    runs = [{"spec": "none", "seed": s, "student": {"psnr": 30.0 + s}, "teacher": None, "bicubic": {"psnr": 20.0},
             **({"cpu": cpu.describe(EMULATING)} if s < 3 else {})} for s in (1, 2, 3)]
    table = benchmarks.kd.markdown_table(benchmarks.kd.build_report(benchmarks.kd.Bench("c.yaml", "out", ("psnr",)),
                                                                    runs, "cmd"))
    assert "hosts: Fake AVX2 CPU, capability AVX2, native bf16: no, fp16: no (2 runs); not recorded (1 run)" in table
