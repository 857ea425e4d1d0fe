"""Export a trained CSAKD network for deployment (ONNX, fp32 or static int8).

    python export_CSAKD.py --checkpoint checkpoints/quickstart/student/best.pth --format onnx --out student.onnx
    python export_CSAKD.py --checkpoint checkpoints/quickstart/student/best.pth --format onnx --out student_int8.onnx \\
        --quantize int8 --calib 32

Any network family exports (``--arch dts`` teacher or student, the ``--arch psd`` student): the graph is the
network's official tuple, taking ``lrhsi`` (B, bands, h, w) and ``hrmsi`` (B, msi_bands, scale·h, scale·w), any B,
h, w, and returning ``hrhsi`` (B, bands, scale·h, scale·w) and ``fused`` (B, nf, scale·h, scale·w), all in the
data's [-1, 1] domain; the privileged PSD teacher, which also takes the GT, is refused. The export is checked with
onnxruntime against PyTorch on random inputs of several sizes and fails (nothing written) if they differ by more
than ``--tol``. The file's metadata holds the family (``arch``), role, bands, MSI bands, scale, the scalar
constructor arguments (for DTS: fusion mode, compat), the whole description and the source checkpoint's SHA-256.
``--quantize int8`` calibrates on ``--calib`` training patches of the checkpoint's own data configuration
(engine/deploy.py).
Run with ``test_CSAKD.py --backend onnxruntime --checkpoint FILE.onnx``. Needs requirements-deploy.txt.
"""

from __future__ import annotations

import argparse
import sys

from utils.interrupts import StartingUp, StopAtOnce, interrupt_in

with StartingUp("export_CSAKD.py"):  # Ctrl-C while torch is imported: one line, not a traceback
    from engine.deploy import EXPORTERS, PARITY_TOL, export_checkpoint
    from utils.config import PLUGINS, add_options, import_plugins
    from utils.fileio import WriteError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Export a CSAKD weight file to ONNX (fp32 or static int8).")
    p.add_argument("--checkpoint", required=True, help="weight file (teacher or student; this project's or official)")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="output format")
    p.add_argument("--out", required=True, help="the .onnx file to write (atomically)")
    p.add_argument("--quantize", choices=("none", "int8"), default="none",
                   help="int8: static onnxruntime QDQ quantisation of the convolutions")
    p.add_argument("--calib", type=int, default=32, help="training patches that calibrate --quantize int8")
    p.add_argument("--exporter", choices=EXPORTERS, default="dynamo",
                   help="torch.onnx exporter: dynamo (torch.export, the default) or torchscript (tracing, faster)")
    p.add_argument("--tol", type=float, default=PARITY_TOL,
                   help="largest accepted |ONNX fp32 − PyTorch| on the [-1, 1] outputs")
    return add_options(p, [PLUGINS])


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 written; 2 bad input or an OS fault (one line); 130 / 143 stopped by SIGINT / SIGTERM (one
    line; no file and no temporary left)."""
    args = build_parser().parse_args(argv)
    if not args.out.endswith(".onnx"):
        print(f"error: --out {args.out}: expected a file name ending in .onnx", file=sys.stderr)
        return 2
    try:
        with StopAtOnce(f"nothing was written ({args.out} appears whole or not at all)"):
            import_plugins(args.plugins or ())  # a network family of one's own
            done = export_checkpoint(args.checkpoint, args.out, args.quantize, args.calib, args.exporter, args.tol)
    except (ValueError, FileNotFoundError, WriteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a stop on a signal, possibly wrapped by the exporter
        stop = interrupt_in(exc)
        if stop is None:
            raise
        print(stop, file=sys.stderr)
        return stop.exit_code
    print(f"wrote {done['out']}: {done['role']}, {done['precision']}; onnxruntime fp32 vs PyTorch max |Δ| "
          f"{done['max_abs_diff']:.2e} (accepted {args.tol:g})")
    if done["precision"] == "int8":
        print(f"int8 calibrated on {done['calibration_patches']} training patches; int8 vs PyTorch fp32 on random "
              f"inputs max |Δ| {done['int8_max_abs_diff']:.3f} (test-set change: test_CSAKD.py --backend onnxruntime)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
