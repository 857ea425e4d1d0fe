"""``python -m benchmarks.kd``: what distillation adds, measured — strategies × seeds, selected on validation,
tested once on the test split, with paired differences against the student trained alone.

    python -m benchmarks.kd --config configs/quickstart.yaml --strategies none csakd csakd:w_feat=0 \\
        --seeds 1 2 3 --json results/kd_quickstart.json

A spec is ``name[:flag=value,...]``: ``none`` is the student alone (``--kd_mode none``); any other name is the
``--kd_strategy`` value (``csakd``, the default strategy; ``hkd``; ``psd``, which implies ``--arch psd``); the
flags are training flags (``w_feat=0``, ``kd_mode=offline,teacher_ckpt=PATH``, ``epochs=40``); a switch takes
``true``/``false``. ``{seed}`` in a value is replaced by each run's seed, so that a frozen teacher can be the one
trained on the same seed's data: ``kd_mode=offline,teacher_ckpt=results/t/seed{seed}/teacher/best.pth``.

For every (spec, seed) the bench trains through the stable entry points (``train_CSAKD.load_config`` +
``engine.train.train``) into its own run folder ``<out>/checkpoints/<run>``, then tests with ``test_CSAKD.main``
the student's ``best.pth`` — the checkpoint training selected by the lowest *validation* SAM; the test split is
never used for any choice — and, for online/offline runs, the teacher (the co-trained ``best.pth``, or the
frozen ``--teacher_ckpt``). The bicubic row is the LR-HSI upsampled ×scale, from the same test.

Outputs: ``--json`` ``{"runs", "summary": {row: {metric: {mean, std, per_seed}}}, "paired_vs_none": {spec:
{metric: {mean, std, per_seed}}}, "paired_with": {spec: student-alone spec}}`` (std: sample standard deviation over
seeds, null for one seed; paired differences are spec − the student alone on the same seed, hence the same data:
``none``, or the ``none:…`` spec trained with the same recipe, :func:`paired_with`), a Markdown table
(``.md``) and a plot (``.png``) next to it. Re-running skips every finished run: one whose test summaries exist
and whose resolved training configuration computes the same as the one the command asks for (:func:`same_run`;
a spec written differently, e.g. ``csakd:w_feat=0.1`` once the default has changed, reuses the finished run of
the old spelling and says so in its record's ``reused_from``). Note that ``--seed`` also
draws the built-in synthetic and realistic scenes, so each seed is a different dataset: compare rows through
the paired differences.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import math
import os
import re
import shlex
import signal
import sys
import textwrap

from tqdm import tqdm

from utils.config import TEST_METRICS, build_test_parser, build_train_parser
from utils.cpu import describe as describe_cpu
from utils.fileio import FolderLock, WriteError, atomic_write_json, atomic_write_text, make_parent
from utils.interrupts import Interrupted, StopAtOnce, signal_name

BASELINE = "none"
#: Flags the bench sets for every run itself; a spec may not override them.
RESERVED_FLAGS = ("config", "seed", "prefix", "checkpoint_dir", "log_dir", "resume", "resume_ind", "resume_ckpt",
                  "overwrite", "no_progress")
#: Keys of a resolved training config that control one command, not what the run computes.
RUN_CONTROL_KEYS = ("config", "resume", "overwrite", "no_progress", "allow_emulated_precision")
#: Flags that cannot change a run without a teacher (``--kd_mode none``): not compared for such runs.
LOCK_FILE = "bench.lock"  # in --out while a bench uses it: one bench per --out
TEACHER_ONLY_FLAGS = ("w_kd", "w_feat", "feat_adapter", "feat_norm", "kd_warmup", "teacher_layers", "teacher_ckpt",
                      "lr_scheduler")
#: Flags only the ``csakd`` strategy reads (engine/strategies/csakd.py): not compared for runs of another strategy.
CSAKD_ONLY_FLAGS = ("w_kd", "w_feat", "feat_adapter", "feat_norm", "kd_warmup")
#: What may differ between a distilled run and the student-alone run it is paired with (the same recipe otherwise).
PAIRING_FREE_KEYS = (*TEACHER_ONLY_FLAGS, "kd_mode", "kd_strategy", "prefix", "seed")
#: Written in a spec's value, stands for each run's seed (e.g. a per-seed ``teacher_ckpt``).
SEED_FIELD = "{seed}"
#: Exit codes of the scripts stopped by SIGINT / SIGTERM (utils.interrupts).
STOP_CODES = (128 + signal.SIGINT, 128 + signal.SIGTERM)
DEFAULT_METRICS = ("psnr", "sam", "ergas", "rmse", "ssim", "uiqi", "cc")
DIGITS = {"psnr": 2, "sam": 2, "ergas": 2, "rmse": 4, "ssim": 3, "uiqi": 3, "cc": 4}


class SpecError(ValueError):
    """A ``--strategies`` entry that cannot be run; the message names the entry and what was expected."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """One ``--strategies`` entry: ``text`` as given (the row name), ``name`` (``none`` or a strategy) and its
    training flags ``((flag, argv tokens), ...)`` in the given order, e.g. ``("w_feat", ("--w_feat", "0"))``;
    a switch set to false has no tokens."""

    text: str
    name: str
    flags: tuple[tuple[str, tuple[str, ...]], ...]

    def train_argv(self, has_strategy_flag: bool, seed: int | None = None) -> list[str]:
        """The training flags of this spec (``none`` → ``--kd_mode none``; a strategy → ``--kd_strategy``), with
        :data:`SEED_FIELD` replaced by ``seed`` (left as written when ``seed`` is None)."""
        argv = ["--kd_mode", "none"] if self.name == BASELINE else []
        if self.name != BASELINE and has_strategy_flag:
            argv += ["--kd_strategy", self.name]
        return argv + [token for _, tokens in self.flags for token in with_seed(tokens, seed)]


def with_seed(tokens: tuple[str, ...], seed: int | None) -> list[str]:
    """``tokens`` with every :data:`SEED_FIELD` replaced by ``seed`` (unchanged when ``seed`` is None)."""
    return list(tokens) if seed is None else [t.replace(SEED_FIELD, str(seed)) for t in tokens]


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.dest != "help"}


def parse_spec(text: str, train_parser: argparse.ArgumentParser | None = None) -> Spec:
    """Parse ``name[:flag=value,...]`` against the training flags; raise one SpecError naming the problem."""
    parser = train_parser or build_train_parser()
    actions = _actions(parser)
    where = f"--strategies {text!r}"
    name, _, rest = text.partition(":")
    # Until --kd_strategy exists, the one strategy is CSAKD's; a flag without choices is checked by the training.
    strategy = actions.get("kd_strategy")
    strategies = ("csakd",) if strategy is None else strategy.choices
    if name != BASELINE and strategies is not None and name not in strategies:
        raise SpecError(f"{where}: unknown strategy {name!r}; expected {BASELINE!r} (the student alone) or one of "
                        f"{sorted(strategies)}")
    flags = []
    for item in rest.split(",") if rest else []:
        flag, eq, value = item.partition("=")
        flag = flag.strip().lstrip("-")
        if not eq or not flag or not value.strip():
            raise SpecError(f"{where}: {item!r} is not flag=value (a spec is name[:flag=value,...])")
        if flag not in actions:
            close = difflib.get_close_matches(flag, list(actions), n=1)
            raise SpecError(f"{where}: unknown training flag {flag!r}" + (f" (did you mean {close[0]!r}?)" if close
                                                                          else ""))
        if flag in RESERVED_FLAGS or (name == BASELINE and flag in ("kd_mode", "kd_strategy")):
            raise SpecError(f"{where}: flag {flag!r} is set by the bench itself (or by the spec name); leave it out")
        flags.append((flag, _check_value(actions[flag], flag, value.strip(), where)))
    if len({f for f, _ in flags}) != len(flags):
        raise SpecError(f"{where}: a flag is given twice")
    return Spec(text, name, tuple(flags))


def _check_value(action: argparse.Action, flag: str, value: str, where: str) -> tuple[str, ...]:
    """The command-line tokens of ``flag=value``, checked with the flag's own type and choices (a value with
    spaces gives several values, for flags taking more than one)."""
    if isinstance(action, argparse._StoreTrueAction):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise SpecError(f"{where}: flag {flag!r} is a switch; expected true or false, got {value!r}")
        return (f"--{flag}",) if value.lower() in ("true", "1", "yes") else ()
    for token in value.split():
        token = token.replace(SEED_FIELD, "1")  # a typed flag must accept any seed in its place
        try:
            converted = action.type(token) if action.type is not None else token
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            raise SpecError(f"{where}: flag {flag!r}: invalid value {token!r} ({exc})") from None
        if action.choices is not None and converted not in action.choices:
            raise SpecError(f"{where}: flag {flag!r} = {token!r}; expected one of {list(action.choices)}")
    return (f"--{flag}", *value.split())


def parse_specs(texts: list[str]) -> list[Spec]:
    """All ``--strategies`` entries, checked, in the given order; duplicates are an error."""
    parser = build_train_parser()
    specs = [parse_spec(t, parser) for t in texts]
    seen = [s.text for s in specs]
    if len(set(seen)) != len(seen):
        raise SpecError(f"--strategies: {sorted({t for t in seen if seen.count(t) > 1})} given more than once")
    return specs


def run_name(spec: Spec, seed: int) -> str:
    """A folder name for (spec, seed): the spec with every character outside [A-Za-z0-9._=-] replaced."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", spec.text) + f"_seed{seed}"


# ---------------------------------------------------------------------------------------------------------------------
# One run


@dataclasses.dataclass(frozen=True)
class Bench:
    """Where and how the runs are made: the YAML config, the output folder and the test metrics."""

    config: str
    out: str
    metrics: tuple[str, ...]

    def paths(self, name: str) -> dict[str, str]:
        return {"checkpoint_dir": os.path.join(self.out, "checkpoints"), "log_dir": os.path.join(self.out, "runs"),
                "results": os.path.join(self.out, "results", name),
                "record": os.path.join(self.out, "records", f"{name}.json")}

    def train_argv(self, spec: Spec, seed: int) -> list[str]:
        name, p = run_name(spec, seed), self.paths(run_name(spec, seed))
        has_strategy = "kd_strategy" in _actions(build_train_parser())
        return ["--config", self.config, "--seed", str(seed), "--prefix", name, "--checkpoint_dir",
                p["checkpoint_dir"], "--log_dir", p["log_dir"], "--no_progress", *spec.train_argv(has_strategy, seed)]

    def test_argv(self, spec: Spec, seed: int, role: str, cfg: dict) -> list[str]:
        """``test_CSAKD.py`` flags testing ``role`` of run (spec, seed) on the test split."""
        name, p = run_name(spec, seed), self.paths(run_name(spec, seed))
        test = build_test_parser()
        known, ignored = _actions(test), set(getattr(test, "yaml_ignored", ()))
        argv = ["--config", self.config, "--seed", str(seed), "--prefix", name, "--checkpoint_dir",
                p["checkpoint_dir"], "--split", "test", "--test_mode", "1" if role == "teacher" else "2",
                "--results", os.path.join(p["results"], role), "--metrics", ",".join(self.metrics)]
        for flag, tokens in spec.flags:  # data and network flags the test shares with training
            if flag in known and flag not in ignored and not isinstance(known[flag], argparse._StoreTrueAction):
                argv += with_seed(tokens, seed)
        if role == "teacher" and cfg["kd_mode"] == "offline":
            argv += ["--checkpoint", cfg["teacher_ckpt"]]
        return argv


def comparable(cfg: dict) -> dict:
    """A resolved training config as plain JSON values, without the keys that only steer one command."""
    return json.loads(json.dumps({k: v for k, v in cfg.items() if k not in RUN_CONTROL_KEYS}, default=str))


@functools.lru_cache(maxsize=4)
def _flag_defaults(compat: str | None) -> dict:
    from utils.config import parse_config, resolve_config

    argv = ["--compat", compat] if compat else []
    return comparable(resolve_config(parse_config(build_train_parser(), argv)))


def flag_defaults(compat: str | None = None) -> dict:
    """Every training flag's resolved default (:func:`comparable` form) in the given ``--compat`` mode."""
    return dict(_flag_defaults(compat))


def same_run(stored: dict, current: dict, ignore: tuple[str, ...] = ()) -> bool:
    """Whether a finished run's stored config (``comparable`` form) computes what ``current`` asks for.

    The rule: every key of either config must have equal values, except that a key the stored config lacks
    matches when the current value is that flag's default (resolved in the current ``--compat`` mode). Such
    a key was added by a newer version of the code, and a flag added at its default computes what the code
    computed before the flag existed (the rule every new flag of this project follows: its default keeps
    the previous behaviour). A key only the stored config has (a removed flag) never matches. Keys in
    ``ignore`` (e.g. ``prefix``, the run's name) are not compared.
    """
    defaults = flag_defaults(current.get("compat"))
    for key in (set(stored) | set(current)) - set(ignore):
        if key in stored:
            if key not in current or stored[key] != current[key]:
                return False
        elif key not in defaults or current[key] != defaults[key]:
            return False
    return True


def roles_of(cfg: dict) -> tuple[str, ...]:
    """The networks a run tests: the student, and the teacher unless it is the student alone."""
    return ("student",) if cfg["kd_mode"] == "none" else ("student", "teacher")


def _load_record(path: str) -> dict | None:
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _ignored(cfg: dict, ignore: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The keys that do not change a run of ``cfg``: ``ignore``, plus the teacher's or csakd's own flags where
    the run has no teacher or another strategy."""
    if cfg.get("kd_mode") == "none":
        return (*ignore, *TEACHER_ONLY_FLAGS)
    if cfg.get("kd_strategy", "csakd") != "csakd":
        return (*ignore, *CSAKD_ONLY_FLAGS)
    return ignore


def _complete(bench: Bench, record: dict | None, cfg: dict, ignore: tuple[str, ...] = ()) -> bool:
    """``record`` is finished (test summaries present) with the same metrics and a config computing ``cfg``."""
    if record is None or record.get("metrics_requested") != list(bench.metrics):
        return False
    if not isinstance(record.get("config"), dict) or not same_run(record["config"], comparable(cfg),
                                                                  _ignored(cfg, ignore)):
        return False
    results = bench.paths(str(record.get("run")))["results"]
    return all(os.path.isfile(os.path.join(results, role, "summary.json")) for role in roles_of(cfg))


def finished_record(bench: Bench, spec: Spec, seed: int, cfg: dict) -> dict | None:
    """The saved record of (spec, seed) if that run is finished with a configuration that computes the same
    (:func:`same_run`), else None. Failing that, a finished run of another spec of the bench whose config differs
    only by its name computes the same: its record is returned under this spec, with ``reused_from``. Runs without a
    teacher ignore :data:`TEACHER_ONLY_FLAGS` (e.g. a change of the ``--w_feat`` default), runs of another strategy
    than ``csakd`` its :data:`CSAKD_ONLY_FLAGS`."""
    name = run_name(spec, seed)
    record = _load_record(bench.paths(name)["record"])
    if _complete(bench, record, cfg):
        return record
    folder = os.path.dirname(bench.paths(name)["record"])
    others = sorted(f for f in os.listdir(folder) if f.endswith(".json")) if os.path.isdir(folder) else []
    for file in others:
        other = _load_record(os.path.join(folder, file))
        if other is not None and other.get("seed") == seed and _complete(bench, other, cfg, ignore=("prefix",)):
            return {**other, "spec": spec.text, "reused_from": other.get("reused_from", other["run"])}
    return None


def _read_summary(folder: str) -> dict:
    with open(os.path.join(folder, "summary.json")) as f:
        return json.load(f)


def run_one(bench: Bench, spec: Spec, seed: int, cfg: dict) -> dict:
    """Train (spec, seed) afresh, test its networks' best checkpoints on the test split, save and return the
    record ``{"spec", "seed", "run", "config", "student", "teacher", "bicubic", "best_epoch", "best_val_sam",
    "bicubic_val", ...}`` (the last two: validation, the split the checkpoints were selected on)."""
    import test_CSAKD  # the stable entry points (scripts at the repository root)
    import train_CSAKD
    from engine.train import train

    name, p = run_name(spec, seed), bench.paths(run_name(spec, seed))
    summary = train(train_CSAKD.load_config([*bench.train_argv(spec, seed), "--overwrite"]))
    results = {}
    for role in roles_of(cfg):
        argv = bench.test_argv(spec, seed, role, cfg)
        code = test_CSAKD.main(argv)
        if code in STOP_CODES:  # the test script stopped on a signal (its one line is printed)
            raise Interrupted(code - 128, f"testing the {role} of run {name} stopped")
        if code != 0:
            raise RuntimeError(f"testing the {role} of run {name} failed: test_CSAKD.py {shlex.join(argv)}")
        results[role] = _read_summary(os.path.join(p["results"], role))
    student = results["student"]
    record = {"spec": spec.text, "seed": seed, "run": name, "run_dir": summary["run_dir"],
              "config": comparable(cfg), "metrics_requested": list(bench.metrics),
              "best_epoch": {r: b["epoch"] for r, b in summary["best"].items()},
              "best_val_sam": {r: b["sam"] for r, b in summary["best"].items()},
              "bicubic_val": summary.get("bicubic_val"),
              "student": student["metrics"], "teacher": results["teacher"]["metrics"] if "teacher" in results else None,
              "bicubic": student["baselines"]["bicubic"], "test_images": student["images"],
              "selection": "best.pth: lowest validation SAM during training; the test split is evaluated once",
              "cpu": describe_cpu()}  # the host it trained on: a re-run reuses records from other hosts
    atomic_write_json(p["record"], record)
    return record


# ---------------------------------------------------------------------------------------------------------------------
# Statistics and reports


def mean_std(values: list[float]) -> dict[str, float | None]:
    """{"mean", "std"} of ``values``; std is the sample standard deviation (n − 1), None for fewer than 2."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std}


def row_values(runs: list[dict]) -> dict[str, dict[int, dict[str, float]]]:
    """{row: {seed: metrics}}: the students (one row per spec, in run order), then the ``teacher (<spec>)`` rows,
    then ``bicubic`` (identical for every spec of a seed: taken from the first run of that seed)."""
    students: dict[str, dict[int, dict[str, float]]] = {}
    teachers: dict[str, dict[int, dict[str, float]]] = {}
    bicubic: dict[int, dict[str, float]] = {}
    for r in runs:
        students.setdefault(r["spec"], {})[r["seed"]] = r["student"]
        if r.get("teacher") is not None:
            teachers.setdefault(f"teacher ({r['spec']})", {})[r["seed"]] = r["teacher"]
        bicubic.setdefault(r["seed"], r["bicubic"])
    return {**students, **teachers, "bicubic": bicubic}


def summarise(runs: list[dict], metrics: list[str]) -> dict:
    """{row: {metric: {"mean", "std", "per_seed": {seed: value}}}} over the seeds of each row."""
    out = {}
    for row, by_seed in row_values(runs).items():
        out[row] = {}
        for m in metrics:
            per_seed = {str(s): v[m] for s, v in sorted(by_seed.items()) if m in v}
            if per_seed:
                out[row][m] = {**mean_std(list(per_seed.values())), "per_seed": per_seed}
    return out


def _recipe(record: dict) -> dict | None:
    """The record's settings but :data:`PAIRING_FREE_KEYS`; a flag its config lacks (added later) at its default,
    as :func:`same_run` counts it."""
    config = record.get("config")
    if config is None:
        return None
    full = {**flag_defaults(config.get("compat")), **config}
    return {k: v for k, v in full.items() if k not in PAIRING_FREE_KEYS}


def paired_with(runs: list[dict]) -> dict[str, str]:
    """{spec: the student-alone spec it is paired with}: the ``none…`` spec (``--kd_mode none``) whose runs have
    the same recipe — every resolved setting but :data:`PAIRING_FREE_KEYS` equal (e.g.
    ``csakd:w_feat=0,student_lr_scheduler=cosine`` → ``none:student_lr_scheduler=cosine``) — else ``none`` itself.
    Specs without a partner are left out."""
    first: dict[str, dict] = {}
    for r in runs:
        first.setdefault(r["spec"], r)
    alone = [s for s, r in first.items() if s == BASELINE or (r.get("config") or {}).get("kd_mode") == "none"]
    recipes = {s: _recipe(r) for s, r in first.items()}
    out = {}
    for spec in first:
        if spec in alone:
            continue
        same = [s for s in alone if recipes[spec] is not None and recipes[s] == recipes[spec]]
        partner = same[0] if len(same) == 1 else BASELINE if BASELINE in first else None
        if partner is not None:
            out[spec] = partner
    return out


def paired_vs_none(runs: list[dict], metrics: list[str]) -> dict:
    """{spec: {metric: {"mean", "std", "per_seed"}}} of the per-seed differences spec − its student alone
    (:func:`paired_with`: ``none``, or the ``none…`` spec of the same recipe; students, on the seeds both have);
    empty without a student-alone spec."""
    students = {row: v for row, v in row_values(runs).items() if not row.startswith("teacher (") and row != "bicubic"}
    out = {}
    for spec, partner in paired_with(runs).items():
        by_seed, base = students[spec], students[partner]
        seeds = sorted(set(by_seed) & set(base))
        out[spec] = {}
        for m in metrics:
            diffs = {str(s): by_seed[s][m] - base[s][m] for s in seeds if m in by_seed[s] and m in base[s]}
            if diffs:
                out[spec][m] = {**mean_std(list(diffs.values())), "per_seed": diffs}
    return out


def _fmt(stat: dict | None, metric: str, signed: bool = False) -> str:
    if not stat:
        return ""
    d = DIGITS.get(metric, 3)
    mean = f"{stat['mean']:+.{d}f}" if signed else f"{stat['mean']:.{d}f}"
    return mean if stat["std"] is None else f"{mean} ± {stat['std']:.{d}f}"


def markdown_table(report: dict) -> str:
    """The summary (mean ± std over seeds) and the paired differences vs the student alone as one Markdown table
    (the last column names the student-alone row of each difference)."""
    metrics = report["metrics"]
    paired, partners = report["paired_vs_none"], report.get("paired_with", {})
    delta = [m for m in ("psnr", "sam") if m in metrics]
    head = ["row", "seeds", *[m.upper() for m in metrics], *[f"Δ{m.upper()} vs alone" for m in delta], "paired with"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, stats in report["summary"].items():
        n = len(next(iter(stats.values()))["per_seed"]) if stats else 0
        cells = [row, str(n), *[_fmt(stats.get(m), m) for m in metrics],
                 *[_fmt(paired.get(row, {}).get(m), m, signed=True) for m in delta], partners.get(row, "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n`{report['command']}`\n\nhosts: {hosts_line(report['runs'])}\n"


def hosts_line(runs: list[dict]) -> str:
    """The CPUs the runs trained on, with their counts ("not recorded" for records written before hosts were)."""
    counts: dict[str, int] = {}
    for r in runs:
        host = r.get("cpu") or "not recorded"
        counts[host] = counts.get(host, 0) + 1
    return "; ".join(f"{host} ({n} run{'s' * (n != 1)})" for host, n in counts.items())


def plot(report: dict, path: str) -> None:
    """PSNR and SAM per row: each seed as a dot, the mean ± std as a bar (PNG, matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in ("psnr", "sam") if m in report["metrics"]] or report["metrics"][:1]
    rows = list(report["summary"])
    fig, axes = plt.subplots(1, len(shown), figsize=(4 + 1.1 * len(rows) * len(shown), 4), squeeze=False)
    for ax, m in zip(axes[0], shown, strict=True):
        for i, row in enumerate(rows):
            stat = report["summary"][row].get(m)
            if not stat:
                continue
            values = list(stat["per_seed"].values())
            ax.scatter([i] * len(values), values, s=14, color="0.4", zorder=3)
            ax.errorbar([i], [stat["mean"]], yerr=[stat["std"] or 0.0], fmt="o", color="C0", capsize=4, zorder=4)
        ax.set_xticks(range(len(rows)), [textwrap.fill(r, 28) for r in rows], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel({"psnr": "PSNR (dB) ↑", "sam": "SAM (°) ↓"}.get(m, m))
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{os.path.basename(report['config'])}: test split, mean ± std over seeds", fontsize=9)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # long spec names: grow the canvas instead of squeezing axes
    plt.close(fig)


def build_report(bench: Bench, runs: list[dict], command: str) -> dict:
    metrics = list(bench.metrics)
    return {"config": bench.config, "command": command, "cpu": describe_cpu(), "metrics": metrics, "runs": runs,
            "summary": summarise(runs, metrics), "paired_vs_none": paired_vs_none(runs, metrics),
            "paired_with": paired_with(runs),
            "selection": "each network's best.pth (lowest validation SAM); the test split is used for nothing else",
            "std": "sample standard deviation over seeds (n − 1); null for a single seed"}


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.kd", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", required=True, help="YAML config of every run (flags as in train_CSAKD.py)")
    p.add_argument("--strategies", nargs="+", default=[BASELINE, "csakd"], metavar="SPEC",
                   help="name[:flag=value,...]; none = the student alone")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="seeds (≥ 3 for a claim)")
    p.add_argument("--json", required=True, help="report (JSON); the .md table and .png plot are written next to it")
    p.add_argument("--out", default=None, help="run folders (default results/kd_bench/<config name>)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help=f"comma-separated test metrics, of {','.join(TEST_METRICS)} (UIQI needs ≥ 32×32 images)")
    return p


def prepare_runs(bench: Bench, specs: list[Spec], seeds: list[int]) -> list[tuple[Spec, int, dict]]:
    """Every (spec, seed) with its resolved training config, all checked before anything is trained."""
    import train_CSAKD

    runs = []
    for spec in specs:
        for seed in seeds:
            try:
                cfg = train_CSAKD.load_config(bench.train_argv(spec, seed))
            except SystemExit:  # argparse has printed its message
                raise SpecError(f"--strategies {spec.text!r}: the training flags were rejected (see above)") from None
            except ValueError as exc:
                raise SpecError(f"--strategies {spec.text!r}: {exc}") from None
            runs.append((spec, seed, cfg))
    return runs


def _differences(stored: dict, current: dict, ignore: tuple[str, ...]) -> str:
    keys = sorted(k for k in (set(stored) | set(current)) - set(ignore) if stored.get(k) != current.get(k))
    return ", ".join(f"{k} {stored.get(k)!r} there, {current.get(k)!r} here" for k in keys[:3]) + \
        (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def refuse_foreign_run(bench: Bench, spec: Spec, seed: int, cfg: dict) -> None:
    """Before (spec, seed) is trained afresh into ``--out``: its record, if any, and its run folder's
    ``config.yaml``, if any, must be of this configuration (an unfinished run of it); a finished run of another
    configuration, or a user's own run of that name, is never replaced (one line naming it)."""
    from utils.config import ConfigError, load_config_file

    name, p = run_name(spec, seed), bench.paths(run_name(spec, seed))
    record = _load_record(p["record"])
    found = [(p["record"], record.get("config"))] if record is not None else []
    saved = os.path.join(p["checkpoint_dir"], name, "config.yaml")
    if os.path.isfile(saved):
        try:
            found.append((saved, comparable(load_config_file(saved))))
        except (ConfigError, OSError) as exc:
            raise SpecError(f"--out {bench.out} holds run {name} whose {saved} cannot be read ({exc}); use another "
                            f"--out") from None
    ignore = _ignored(cfg, ("prefix", "checkpoint_dir", "log_dir"))
    for where, stored in found:
        if not isinstance(stored, dict) or not same_run(stored, comparable(cfg), ignore):
            what = _differences(stored, comparable(cfg), ignore) if isinstance(stored, dict) else "no config"
            raise SpecError(f"--out {bench.out} holds run {name} of another configuration ({where}: {what}); it is "
                            f"not replaced: use another --out, or remove that run yourself")


def _finished_or_run(bench: Bench, spec: Spec, seed: int, cfg: dict) -> tuple[dict, bool]:
    """(record, skipped): the finished record of (spec, seed), or a new one from training and testing it."""
    record = finished_record(bench, spec, seed, cfg)
    if record is not None:
        return record, True
    refuse_foreign_run(bench, spec, seed, cfg)
    try:
        return run_one(bench, spec, seed, cfg), False
    except (ValueError, OSError, RuntimeError) as exc:  # finished runs stay; a re-run continues
        raise SpecError(f"--strategies {spec.text!r}, seed {seed}: {exc}") from None


def run_bench(bench: Bench, specs: list[Spec], seeds: list[int], command: str) -> dict:
    """Train and test every unfinished (spec, seed), then build the report. Once every spec is checked, ``--out``
    is locked for the whole bench (``<out>/bench.lock``): a second bench on it is refused, naming this one."""
    todo = prepare_runs(bench, specs, seeds)
    records, skipped = [], 0
    make_parent(os.path.join(bench.out, LOCK_FILE))
    with FolderLock(os.path.join(bench.out, LOCK_FILE), f"--out {bench.out}", kind="bench",
                    way_out="give another --out"), \
            tqdm(todo, desc="kd bench", unit="run", dynamic_ncols=True) as progress:
        for spec, seed, cfg in progress:
            record, was_finished = _finished_or_run(bench, spec, seed, cfg)
            records.append(record)
            skipped += was_finished
            progress.set_postfix_str(f"done {run_name(spec, seed)} (skipped {skipped})")
    return build_report(bench, records, command)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python -m benchmarks.kd " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
        unknown = [m for m in metrics if m not in TEST_METRICS]
        if unknown or not metrics:
            raise SpecError(f"--metrics: unknown {unknown}; expected some of {','.join(TEST_METRICS)}")
        if not os.path.isfile(args.config):
            raise FileNotFoundError(f"--config {args.config}: no such file")
        if len(set(args.seeds)) != len(args.seeds):
            raise SpecError(f"--seeds {args.seeds}: a seed is given twice")
        specs = parse_specs(args.strategies)
        out = args.out or os.path.join("results", "kd_bench", os.path.splitext(os.path.basename(args.config))[0])
        bench = Bench(args.config, out, metrics)
        make_parent(args.json)  # an unwritable report folder fails now, not after hours of runs
        with StopAtOnce("stopped"):  # between runs and while testing; training stops itself at its next step
            report = run_bench(bench, specs, args.seeds, command)
    except (ValueError, FileNotFoundError, WriteError) as exc:
        print(f"benchmarks.kd: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"benchmarks.kd: {signal_name(exc.signum)} received: stopped; finished runs are kept and the same "
              f"command continues with the others (an unfinished run restarts from scratch)", file=sys.stderr)
        return exc.exit_code
    stem = os.path.splitext(args.json)[0]
    atomic_write_json(args.json, report)
    table = markdown_table(report)
    atomic_write_text(stem + ".md", table)
    plot(report, stem + ".png")
    print(table)
    print(f"wrote {args.json}, {stem}.md, {stem}.png; runs in {bench.out}")
    return 0


__all__ = ["Spec", "SpecError", "markdown_table", "mean_std", "paired_vs_none", "parse_spec", "parse_specs",
           "run_bench", "summarise"]

if __name__ == "__main__":
    sys.exit(main())
