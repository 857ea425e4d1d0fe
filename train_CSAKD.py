"""Co-train the CSAKD teacher and student (online knowledge distillation), or train with a frozen teacher
(``--kd_mode offline``) or the student alone (``--kd_mode none``).

    python train_CSAKD.py --config configs/quickstart.yaml            # synthetic data, CPU, minutes
    python train_CSAKD.py --config configs/aviris_band4.yaml          # the paper's run
    python train_CSAKD.py --config configs/quickstart.yaml --resume   # continue exactly where it stopped

Flags: official names and meanings (``--help``); a YAML file holds the same names, the command line
overrides it. Checkpoints: ``<checkpoint_dir>/<prefix>/{teacher,student}/{best,last}.pth``, ``state.pth``,
``config.yaml``; TensorBoard: ``<log_dir>/<prefix>``.
"""

from __future__ import annotations

import sys

from utils.interrupts import Interrupted, StartingUp

with StartingUp("train_CSAKD.py"):  # Ctrl-C while torch is imported: one line, not a traceback
    from engine.flags import build_test_parser, build_train_parser, resolve_config
    from engine.run_folder import continue_in_state_folder, find_resume_state
    from engine.state import load_training_state
    from engine.train import PeerLost, TrainingDiverged, train
    from utils.config import explicit_keys, import_plugins, load_plugins, parse_config
    from utils.fileio import WriteError


def load_config(argv: list[str] | None = None) -> dict:
    """Defaults ← (the resumed run's saved config) ← YAML ← command line, resolved and checked; the plugins they
    name imported first."""
    load_plugins(argv)
    cfg = resolve_config(parse_config(build_train_parser(), argv, other=build_test_parser()))
    state = find_resume_state(cfg)
    if state is not None:  # a resumed run keeps its own settings unless the command line changes them
        saved = load_training_state(state, legacy=bool(cfg.get("legacy_state")))["config"]
        import_plugins(saved.get("plugins") or ())  # the resumed run's own strategy or network
        cfg = resolve_config(parse_config(build_train_parser(), argv, other=build_test_parser(), base=saved))
        continue_in_state_folder(cfg, state, "prefix" in explicit_keys(build_train_parser(), argv))
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 finished; 2 bad input, a locked run folder, an OS fault or a lost peer process (one line);
    3 diverged (one line); 130 / 143 stopped by SIGINT / SIGTERM (one line; the state to ``--resume`` from is saved)."""
    try:
        summary = train(load_config(argv))
    except (ValueError, FileNotFoundError, WriteError, PeerLost) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except Interrupted as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # outside the training loop (reading the configuration, starting up)
        print("interrupted by SIGINT before training started: nothing was written", file=sys.stderr)
        return 130
    best = ", ".join(f"{r} SAM {b['sam']:.4f} (epoch {b['epoch']})" for r, b in summary["best"].items())
    print(f"finished: epoch {summary['epoch']}, iteration {summary['iteration']}; best {best}; "
          f"checkpoints in {summary['run_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
