"""Evaluate a CSAKD network, or count the networks' complexity.

    python test_CSAKD.py --config configs/quickstart.yaml --test_mode 2 --results results/quickstart
    python test_CSAKD.py --test_mode 1 --checkpoint teacher_checkpoint/KD_QRCODE_band4/best.pth --compat official \\
        --root ../../Fusion_data --test_file configs/splits/aviris/test.txt
    python test_CSAKD.py --test_mode 3 [--msi_bands 6] [--json results/complexity.json]
    python test_CSAKD.py --score FUSED --reference REF --sensor WV3 [--dim_cut 21] [--json OUT]

``--test_mode`` 1 tests the teacher, 2 the student (default), 3 prints parameters and operations of both
at the configured shapes (no dataset or checkpoint needed; ``--arch psd`` / ``--hkd_heads K`` for the related
methods' networks). A privileged network (the PSD teacher) is given the test GT as its stage-2 input
(``engine.evaluate.predict``): its scores measure a GT-fed network, not a fusion method. The checkpoint is
``--checkpoint`` (this project's weight file or an official ``.pth``), by default
``<checkpoint_dir>/<prefix>/<role>/best.pth``. Prints a per-image metrics table and the mean next to the
bicubic baseline (pansharpening data: the toolbox indices in DN next to the EXP baseline, docs/pansharpening.md);
``--results DIR`` writes ``per_image.csv``, ``summary.json`` and the predictions
``pred/<name>.mat``. The folder is built whole beside ``DIR`` and then swapped in
(``utils.fileio.staged_folder``): it always holds one evaluation's outputs, never a mix with an earlier one,
and a failed run leaves the earlier results as they were. A ``DIR`` holding anything else than these outputs
is refused rather than replaced.

The work is the library call ``engine.testing.evaluate_run(cfg)`` (docs/training.md, "Training and testing from
Python"); this script parses the flags and YAML into ``cfg``.

``--score`` scores pansharpened images made by anything against a PanCollection file with the toolbox metrics, no
network involved (``engine.score``; its own flags, ``--score X --help``; docs/pansharpening.md).
"""

from __future__ import annotations

import sys

from utils.interrupts import Interrupted, StartingUp, StopAtOnce

with StartingUp("test_CSAKD.py"):  # Ctrl-C while torch is imported: one line, not a traceback
    from engine.flags import build_test_parser, build_train_parser, resolve_config
    from engine.score import run_score
    from engine.testing import evaluate_run
    from utils.config import explicit_keys, load_plugins, parse_config
    from utils.fileio import WriteError


def build_parser():
    return build_test_parser()


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done; 2 bad input or an OS fault (one line); 130 / 143 stopped by SIGINT / SIGTERM (one
    line; a --results folder is only ever written whole)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        with StopAtOnce("no results were written (a --results folder appears whole or not at all)"):
            if "--score" in argv or any(a.startswith("--score=") for a in argv):
                return run_score(argv)
            load_plugins(argv)
            cfg = resolve_config(parse_config(build_test_parser(), argv, other=build_train_parser()))
            evaluate_run(cfg, frozenset(explicit_keys(build_test_parser(), argv)))
            return 0
    except (ValueError, FileNotFoundError, WriteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
