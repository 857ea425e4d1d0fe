"""The CPU this process runs on: its model, PyTorch's kernel capability, and whether it computes bf16 and fp16
natively; and the refusal of a low precision that the CPU would only emulate.

Bottom floor: imports no project code. :func:`probe` is the one place that asks the hardware (tests replace it);
:func:`describe` is the one line every log and benchmark record states the CPU with.

Why refuse: without native bf16 (x86: AVX512-BF16 or AMX; aarch64: the ``bf16`` feature) or fp16 (x86: AMX-FP16
or AVX512-FP16; aarch64: ``fphp``/``asimdhp``) the kernels emulate the format around fp32 arithmetic, so the lower
precision costs time instead of saving it (:data:`EMULATED_BF16_EVIDENCE`, :data:`EMULATED_FP16_EVIDENCE`).
CUDA devices are never refused.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

import torch

CPUINFO = "/proc/cpuinfo"
LOW_PRECISIONS = ("bf16", "fp16")
#: What emulation costs, with the host it was measured on (bf16: issue 17, paper-size student, batch 1, 64² → 256²,
#: 2 threads; fp16: one convolution timed with torch 2.13 on the host named).
EMULATED_BF16_EVIDENCE = ("the paper-size student's bf16 inference, batch 1, measured 7.5x slower than fp32 on an "
                          "AVX2-only AMD EPYC: 33.19 s vs 4.44 s, onnxruntime int8 3.31 s")
EMULATED_FP16_EVIDENCE = ("one 3x3 convolution, 86 to 43 channels at 128x128, 1 thread, under fp16 autocast measured "
                          "195x slower than fp32 on an AMD EPYC with AVX-512 and AVX512-BF16 but no AVX512-FP16")
OVERRIDE_FLAG = "--allow_emulated_precision"
#: cpuinfo flags that mean native arithmetic, per architecture family and precision (the fallback of the probes).
NATIVE_FLAGS = {
    "x86": {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")},
    "arm": {"bf16": ("bf16",), "fp16": ("fphp", "asimdhp")},
}
#: oneDNN (PyTorch's CPU convolutions) can be capped below the hardware with ONEDNN_MAX_CPU_ISA; these caps leave
#: it without bf16 / fp16 arithmetic (measured, 3 runs on a shared machine: a bf16 3x3 convolution, 86 to 43
#: channels at 128x128, 1 thread, under ONEDNN_MAX_CPU_ISA=AVX2 took 3.5-6.5x its fp32 time on the AVX-512 BF16
#: AMD EPYC, and 0.4-0.7x uncapped). ATEN_CPU_CAPABILITY does not reach oneDNN (the bf16 convolution stayed faster
#: than fp32 under ATEN_CPU_CAPABILITY=avx2 there).
ONEDNN_ISA_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
ISA_CAPS_WITHOUT = {
    "bf16": ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"),
    "fp16": ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
             "AVX512_CORE_BF16", "AVX512_CORE_AMX"),
}
#: PyTorch's private probes (hardware, via cpuinfo) where this torch has them: x86 only.
TORCH_PROBES = {"bf16": ("_is_avx512_bf16_supported", "_is_amx_tile_supported"), "fp16": ("_is_amx_fp16_supported",)}


@dataclass(frozen=True)
class CpuInfo:
    """model: the CPU's name; capability: ``torch.backends.cpu.get_cpu_capability()`` (e.g. "AVX2", "AVX512");
    machine: ``platform.machine()``; bf16, fp16: computed natively; onednn_cap: ONEDNN_MAX_CPU_ISA where set."""

    model: str
    capability: str
    machine: str
    bf16: bool
    fp16: bool
    onednn_cap: str | None = None

    def native(self, precision: str) -> bool:
        """Whether ``precision`` ("bf16" or "fp16") is native here; "fp32" always is."""
        return precision == "fp32" or bool(getattr(self, precision))


def read_cpuinfo(path: str = CPUINFO) -> str:
    """The text of ``/proc/cpuinfo``, or "" where there is none (not Linux)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _field(text: str, name: str) -> str | None:
    """The value of the first ``name : value`` line of a cpuinfo text."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


def cpu_model(text: str) -> str:
    """The cpuinfo "model name" (x86), else ``platform.processor()``, else ``platform.machine()``."""
    return _field(text, "model name") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags(text: str) -> set[str]:
    """The feature flags of a cpuinfo text: "flags" (x86) or "Features" (aarch64)."""
    return set((_field(text, "flags") or _field(text, "features") or "").split())


def _family(machine: str) -> str | None:
    m = machine.lower()
    if m in ("x86_64", "amd64", "i386", "i686"):
        return "x86"
    if m.startswith(("aarch64", "arm")):
        return "arm"
    return None


def _torch_probe(precision: str) -> bool | None:
    """PyTorch's hardware probe for ``precision`` (any of its functions true), or None where it has none."""
    found = None
    for name in TORCH_PROBES[precision]:
        fn = getattr(torch.cpu, name, None)
        if fn is None:
            continue
        try:
            found = bool(found) or bool(fn())
        except Exception:  # a private function: any failure means "unknown", the cpuinfo flags decide
            continue
    return found


def onednn_cap() -> str | None:
    """oneDNN's ISA cap from the environment (upper case), or None where none is set."""
    value = next((os.environ[v] for v in ONEDNN_ISA_VARS if os.environ.get(v)), None)
    return value.strip().upper() if value else None


def native_precisions(text: str, machine: str, torch_probes: bool = True, cap: str | None = None) -> dict[str, bool]:
    """{"bf16", "fp16"}: native on this CPU. x86: PyTorch's probes where present, or the cpuinfo flags; aarch64
    and others: the cpuinfo flags (``NATIVE_FLAGS``); a oneDNN ISA ``cap`` (:data:`ISA_CAPS_WITHOUT`) can take
    them away."""
    family, flags = _family(machine), cpu_flags(text)
    out = {}
    for precision in LOW_PRECISIONS:
        by_flags = family is not None and any(f in flags for f in NATIVE_FLAGS[family][precision])
        by_torch = _torch_probe(precision) if torch_probes and family == "x86" else None
        out[precision] = (by_flags or bool(by_torch)) and cap not in ISA_CAPS_WITHOUT[precision]
    return out


def probe(text: str | None = None, machine: str | None = None) -> CpuInfo:
    """This CPU (or the one a cpuinfo ``text`` and ``machine`` describe; then PyTorch's probes, which ask this
    machine's hardware, are not used)."""
    given = text is not None
    text = read_cpuinfo() if text is None else text
    machine = machine or platform.machine()
    cap = onednn_cap()
    native = native_precisions(text, machine, torch_probes=not given, cap=cap)
    return CpuInfo(model=cpu_model(text), capability=torch.backends.cpu.get_cpu_capability(), machine=machine,
                   bf16=native["bf16"], fp16=native["fp16"], onednn_cap=cap)


def describe(info: CpuInfo | None = None) -> str:
    """One line for logs and records, e.g. "AMD EPYC, capability AVX512, native bf16: yes, fp16: no"."""
    info = probe() if info is None else info
    yes = {True: "yes", False: "no"}
    cap = f", ONEDNN_MAX_CPU_ISA={info.onednn_cap}" if info.onednn_cap else ""
    return (f"{info.model}, capability {info.capability}{cap}, native bf16: {yes[info.bf16]}, "
            f"fp16: {yes[info.fp16]}")


def emulation_cost(precision: str) -> str:
    """Why an emulated ``precision`` is refused: the measured cost (bf16) or what emulation does (fp16)."""
    if precision == "bf16":
        return EMULATED_BF16_EVIDENCE
    return EMULATED_FP16_EVIDENCE


def emulated(precision: str) -> str | None:
    """Why ``precision`` ("bf16", "fp16") would be emulated on this CPU (one clause naming the CPU, its
    capability and the cost), or None where it is native."""
    info = probe()
    if info.native(precision):
        return None
    return (f"this CPU has no native {precision} ({describe(info)}), so {precision} would be emulated "
            f"({emulation_cost(precision)})")


def refuse_emulated(flag: str, precision: str, device: torch.device, instead: str, allow: bool = False) -> None:
    """Raise ``ValueError`` (one line) when ``precision`` on the CPU ``device`` would be emulated (:func:`emulated`).

    Args:
        flag: the flag as the user wrote it, e.g. "--precision bf16".
        precision: "bf16" or "fp16" ("fp32" always passes).
        device: where the run computes; CUDA and other non-CPU devices always pass.
        instead: what to use instead, e.g. "--amp off".
        allow: ``--allow_emulated_precision`` (kept for testing the path on any CPU).
    """
    if allow or device.type != "cpu":
        return
    reason = emulated(precision)
    if reason:
        raise ValueError(f"{flag}: {reason}; use {instead}, or {OVERRIDE_FLAG} to run it anyway (for testing)")
