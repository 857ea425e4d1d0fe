"""``python -m benchmarks.kd``: what distillation adds, measured — strategies × seeds, selected on validation,
tested once on the test split, with paired differences against the student trained alone.

    python -m benchmarks.kd --config configs/quickstart.yaml --strategies none csakd csakd:w_feat=0 \\
        --seeds 1 2 3 --json results/kd_quickstart.json

A spec is ``name[:flag=value,...]``: ``none`` is the student alone (``--kd_mode none``); any other name is the
``--kd_strategy`` value (``csakd``, the default strategy; ``hkd``; ``psd``, which implies ``--arch psd``); the
flags are training flags (``w_feat=0``, ``kd_mode=offline,teacher_ckpt=PATH``, ``epochs=40``); a switch takes
``true``/``false``. ``{seed}`` in a value is replaced by each run's seed, so that a frozen teacher can be the one
trained on the same seed's data: ``kd_mode=offline,teacher_ckpt=results/t/seed{seed}/teacher/best.pth``.

For every (spec, seed) the bench trains with library calls (``engine.flags.resolve_train_config`` +
``engine.train.train``; no command line is built, no script imported) into its own run folder
``<out>/checkpoints/<run>``, then tests with ``engine.testing.evaluate_run``
the student's ``best.pth`` — the checkpoint training selected by the lowest *validation* SAM; the test split is
never used for any choice — and, for online/offline runs, the teacher (the co-trained ``best.pth``, or the
frozen ``--teacher_ckpt``). The bicubic row is the LR-HSI upsampled ×scale, from the same test (pansharpening data:
the EXP row, the 23-tap interpolated MS, ``engine.evaluate.PansharpeningScoring``).

Pansharpening data (the config's dataset kind has ``task = "pansharpening"``, :data:`PANSHARPENING`): the test
metrics are the toolbox's reduced-resolution indices (default all of ``q2n sam ergas scc q_avg psnr``), every
student is tested a second time on the full-resolution split (``--resolution full``, no GT: ``d_lambda d_s qnr
d_lambda_k hqnr``; rows ``<spec> (full resolution)``, paired with its student alone's), a teacher fed the GT is the
row ``teacher (<spec>, privileged)``, and the report states which way each index is better
(``engine.pansharpening_metrics.direction``). HSI reports are as before (docs/pansharpening.md).

Outputs: ``--json`` ``{"command", "runs", "summary": {row: {metric: {mean, std, per_seed}}}, "paired_vs_none":
{spec: {metric: {mean, std, per_seed, n, ci95, n_positive, gap, gap_fraction}}}, "paired_with": {spec: student-alone
spec}, "paired_sigma": {spec: std of ΔPSNR}, "teacher_runs"}`` (std: sample standard deviation over seeds, null for
one seed; paired differences are spec − the student alone on the same seed, hence the same data and — since the
networks are initialised from their own streams — the same initial student weights, batches, crops and input noise:
``none``, or the ``none:…`` spec trained with the same recipe, :func:`paired_with`; ``ci95`` the t-based 95 %
interval of their mean; ``n_positive`` the seeds with a difference > 0; ``gap`` the teacher − the student alone per
seed and ``gap_fraction`` the mean difference / the mean gap), a Markdown table (``.md``) and a plot of the paired
differences per seed with their CI (``.png``) next to it. Re-running skips every finished run: one whose test
summaries exist and whose run fingerprint (``engine.fingerprint``, recomputed from the record's stored config, so
records written before fingerprints existed count alike; docs/training.md "Run fingerprints") is the one the
command asks for (a spec written differently, e.g. ``csakd:w_feat=0.1`` once the default has changed, reuses the
finished run of the old spelling and says so in its record's ``reused_from``; a new default of an option only
``hkd`` reads leaves every other strategy's runs finished). Pairing with the student alone is by recipe
fingerprint. Every record stores its ``fingerprints``.

Seeds: ``--seeds`` are initialisation seeds; ``--data_seeds`` (each run's ``--data_seed``) draw the built-in
scenes, so one bench can span several data draws (rows are then keyed ``"data_seed/seed"``). Without
``--data_seeds`` every ``--seed`` also draws its own scenes (the bench's meaning before the flag existed).

Shared frozen teacher: a spec with ``kd_mode=offline`` (or ``student_init=teacher``) and no ``teacher_ckpt``
distils from the teacher ``best.pth`` of one online run of ``--teacher_spec`` (default ``csakd``) at
``--teacher_seed`` on the same data seed, trained the first time a spec needs it and reused by every init seed and
every such spec (so each costs a student-only run); without ``--data_seeds`` each init seed's data has its own.
A distilled record remembers its frozen teacher by its weights (``teacher_weights_sha256``:
``utils.checkpoint.weights_digest``, the tensors and the network description, not the file's stored paths): a
teacher copied or moved into another ``--out`` reuses the students distilled from it, a teacher whose tensors differ
(retrained) retrains them. Records written before hold the file's SHA-256 (``teacher_sha256``) instead: they are
reused while the teacher file has those very bytes, else retrained.

Runs made before the networks had their own initialisation streams (records without ``init_streams``) do not pair
by initialisation: their distilled students started from other weights than their students alone. Their distilled
records are never reused (student-alone runs compute what they always did and are); use a fresh ``--out`` for a
new bench all the same.
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
import sys
import textwrap
from collections.abc import Callable

from tqdm import tqdm

from engine.fingerprint import KEY as FINGERPRINTS
from engine.fingerprint import (
    changed_options,
    file_digest,
    fingerprint,
    fingerprints,
    flag_defaults,
    reads_teacher_file,
    recipe_fingerprint,
    same_result,
    teacher_digest,
)
from engine.flags import build_test_parser, build_train_parser
from engine.options import TEST_METRICS
from engine.pansharpening_metrics import FR_METRICS, RR_METRICS, direction
from engine.run_keys import run_control
from utils.config import PLUGINS, add_options, cli_only, load_plugins
from utils.cpu import describe as describe_cpu
from utils.fileio import FolderLock, WriteError, atomic_write_json, atomic_write_text, make_parent
from utils.interrupts import Interrupted, StopAtOnce, signal_name

BASELINE = "none"
#: Flags the bench sets for every run itself; a spec may not override them.
RESERVED_FLAGS = ("config", "seed", "prefix", "checkpoint_dir", "log_dir", "resume", "resume_ind", "resume_ckpt",
                  "overwrite", "no_progress", "resolution")
LOCK_FILE = "bench.lock"  # in --out while a bench uses it: one bench per --out
#: Written in a spec's value, stands for each run's seed (e.g. a per-seed ``teacher_ckpt``).
SEED_FIELD = "{seed}"
#: Written in every record since the networks of a run are initialised from their own streams (common random
#: numbers: a distilled student starts from its student alone's weights). A distilled record without it was made
#: before and is never reused; student-alone runs compute what they always computed.
INIT_STREAMS = "per-role"
#: The spec whose co-trained teacher becomes the shared frozen teacher of a data seed (``--teacher_spec``).
TEACHER_SPEC = "csakd"
#: A distilled record's frozen teacher, by its weights (``engine.fingerprint.teacher_digest``); records written
#: before hold :data:`LEGACY_TEACHER_KEY`, the SHA-256 of the file's bytes (stored paths included).
TEACHER_KEY = "teacher_weights_sha256"
LEGACY_TEACHER_KEY = "teacher_sha256"
DEFAULT_METRICS = ("psnr", "sam", "ergas", "rmse", "ssim", "uiqi", "cc")
DIGITS = {"psnr": 2, "sam": 2, "ergas": 2, "rmse": 4, "ssim": 3, "uiqi": 3, "cc": 4, "q2n": 4, "scc": 4, "q_avg": 4,
          "d_lambda": 4, "d_s": 4, "qnr": 4, "d_lambda_k": 4, "hqnr": 4}
#: Suffix of the rows of the full-resolution test (pansharpening: the students and EXP on the acquired pairs).
FULL = " (full resolution)"
#: Results folder of a student's full-resolution test, beside ``student`` and ``teacher``.
STUDENT_FULL = "student_full"
ARROWS = {"higher": "↑", "lower": "↓"}
AXIS_NAMES = {"psnr": "PSNR (dB)", "sam": "SAM (°)", "ergas": "ERGAS", "q2n": "Q2n", "scc": "SCC", "q_avg": "Q_avg",
              "d_lambda": "D_λ", "d_s": "D_s", "qnr": "QNR", "d_lambda_k": "D_λ^K", "hqnr": "HQNR"}
PRIVILEGED_NOTE = ("A teacher row marked privileged is a network fed the ground truth (the PSD teacher, at its "
                   "stage-2 input): its reduced-resolution numbers are no fusion result, and it cannot run at full "
                   "resolution.")
FULL_NOTE = ("Rows marked (full resolution): each student and the EXP baseline on the acquired pairs of the same test "
             "scenes (--resolution full, no ground truth; no-reference indices); the teachers are not tested there.")


@dataclasses.dataclass(frozen=True)
class Task:
    """What a bench of one task (the dataset kind's ``task``) tests and reports.

    ``metrics``: the default ``--metrics`` (test split; at reduced resolution for pansharpening); ``headline``: the
    metrics of the Δ columns (the first two), the paired table (the first names the teacher-gap column) and the plot;
    ``baseline``: the network-free row, taken from the student's test summary (``baselines``); ``full_metrics`` and
    ``full_headline``: the same for a second test of every student on the full-resolution split (``--resolution
    full``, no GT), none when empty."""

    name: str
    metrics: tuple[str, ...]
    headline: tuple[str, ...]
    baseline: str
    full_metrics: tuple[str, ...] = ()
    full_headline: tuple[str, ...] = ()
    allowed: tuple[str, ...] = TEST_METRICS

    @property
    def full(self) -> bool:
        return bool(self.full_metrics)


FUSION = Task("fusion", DEFAULT_METRICS, ("psnr", "sam", "ergas"), "bicubic")
PANSHARPENING = Task("pansharpening", RR_METRICS, ("q2n", "sam", "ergas"), "exp", FR_METRICS,
                     ("hqnr", "d_lambda", "d_s"), allowed=RR_METRICS)
TASKS = {t.name: t for t in (FUSION, PANSHARPENING)}


def task_of(cfg: dict) -> Task:
    """The :class:`Task` of a resolved training config: its dataset kind's ``task`` class attribute
    (``data.sample.FusionDataset``: "fusion"; the pansharpening kinds: "pansharpening")."""
    from data.options import DATASETS

    name = getattr(DATASETS.lookup(cfg["dataset"]), "task", FUSION.name)
    if name not in TASKS:
        raise SpecError(f"--dataset {cfg['dataset']}: task {name!r}; the bench reports {sorted(TASKS)}")
    return TASKS[name]


class SpecError(ValueError):
    """A ``--strategies`` entry that cannot be run; the message names the entry and what was expected."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """One ``--strategies`` entry: ``text`` as given (the row name), ``name`` (``none`` or a strategy) and its
    training flags ``((flag, value), ...)`` in the given order, each value as the command line would give it: a
    string (``("w_feat", "0")``), a list of strings for a flag of several values, a bool for a switch."""

    text: str
    name: str
    flags: tuple[tuple[str, Value], ...]

    @property
    def shared_teacher(self) -> bool:
        """``kd_mode=offline`` or ``student_init=teacher`` without ``teacher_ckpt``: the bench's frozen teacher of the
        run's data seed."""
        flags = dict(self.flags)
        wants = flags.get("kd_mode") == "offline" or flags.get("student_init") == "teacher"
        return wants and "teacher_ckpt" not in flags

    def train_values(self, seed: int | None = None) -> dict[str, Value]:
        """The training flags of this spec (``none`` → ``kd_mode: none``; a strategy → ``kd_strategy``), with
        :data:`SEED_FIELD` replaced by ``seed`` (left as written when ``seed`` is None)."""
        values: dict[str, Value] = {"kd_mode": "none"} if self.name == BASELINE else {"kd_strategy": self.name}
        return {**values, **{flag: with_seed(value, seed) for flag, value in self.flags}}


#: A flag's value as the command line gives it (``utils.config.parse_config`` types and checks it).
Value = str | bool | list[str]


def with_seed(value: Value, seed: int | None) -> Value:
    """``value`` with every :data:`SEED_FIELD` replaced by ``seed`` (unchanged when ``seed`` is None)."""
    if seed is None or isinstance(value, bool):
        return value
    if isinstance(value, list):
        return [v.replace(SEED_FIELD, str(seed)) for v in value]
    return value.replace(SEED_FIELD, str(seed))


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


def _check_value(action: argparse.Action, flag: str, value: str, where: str) -> Value:
    """The value of ``flag=value`` as the command line gives it (a bool for a switch; for a flag of several values,
    the list of its space-separated values), checked with the flag's own type and choices."""
    if isinstance(action, argparse._StoreTrueAction):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise SpecError(f"{where}: flag {flag!r} is a switch; expected true or false, got {value!r}")
        return value.lower() in ("true", "1", "yes")
    several = isinstance(action.nargs, int) or action.nargs in ("+", "*")
    for token in value.split() if several else [value]:
        token = token.replace(SEED_FIELD, "1")  # a typed flag must accept any seed in its place
        try:
            converted = action.type(token) if action.type is not None else token
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            raise SpecError(f"{where}: flag {flag!r}: invalid value {token!r} ({exc})") from None
        if action.choices is not None and converted not in action.choices:
            raise SpecError(f"{where}: flag {flag!r} = {token!r}; expected one of {list(action.choices)}")
    return value.split() if several else value


def parse_specs(texts: list[str]) -> list[Spec]:
    """All ``--strategies`` entries, checked, in the given order; duplicates are an error."""
    parser = build_train_parser()
    specs = [parse_spec(t, parser) for t in texts]
    seen = [s.text for s in specs]
    if len(set(seen)) != len(seen):
        raise SpecError(f"--strategies: {sorted({t for t in seen if seen.count(t) > 1})} given more than once")
    return specs


def run_name(spec: Spec, seed: int, data_seed: int | None = None) -> str:
    """A folder name for (spec, seed[, data seed]): the spec with every character outside [A-Za-z0-9._=-]
    replaced."""
    data = "" if data_seed is None else f"_data{data_seed}"
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", spec.text) + f"{data}_seed{seed}"


def seed_label(seed: int, data_seed: int | None = None) -> str:
    """The key of a run's seeds in the report: ``"seed"``, or ``"data_seed/seed"`` for a bench over data seeds."""
    return str(seed) if data_seed is None else f"{data_seed}/{seed}"


def record_label(record: dict) -> str:
    return seed_label(record["seed"], record.get("data_seed"))


def _label_order(label: str) -> tuple[int, ...]:
    return tuple(int(part) for part in label.split("/"))


# ---------------------------------------------------------------------------------------------------------------------
# One run


@dataclasses.dataclass(frozen=True)
class Bench:
    """Where and how the runs are made: the YAML config, the output folder, the test metrics, and the run whose
    co-trained teacher is the shared frozen teacher of each data seed (``teacher_spec`` at ``teacher_seed``)."""

    config: str
    out: str
    metrics: tuple[str, ...]
    teacher_spec: str = TEACHER_SPEC
    teacher_seed: int = 0
    plugins: tuple[str, ...] = ()  # --plugins: every run's (the config's own plugins: key each run reads itself)
    task: Task = FUSION  # of the config's dataset kind (:func:`for_task`)

    def teacher_run(self) -> Spec:
        return parse_spec(self.teacher_spec)

    def shared_teacher(self, data_seed: int) -> str:
        """The frozen teacher of data seed ``data_seed``: the teacher ``best.pth`` of the teacher run on that data
        (a run without ``--data_seed`` draws its data from its ``--seed``: its teacher is that seed's data's)."""
        name = run_name(self.teacher_run(), self.teacher_seed, data_seed)
        return os.path.join(self.paths(name)["checkpoint_dir"], name, "teacher", "best.pth")

    def paths(self, name: str) -> dict[str, str]:
        return {"checkpoint_dir": os.path.join(self.out, "checkpoints"), "log_dir": os.path.join(self.out, "runs"),
                "results": os.path.join(self.out, "results", name),
                "record": os.path.join(self.out, "records", f"{name}.json")}

    def train_values(self, spec: Spec, seed: int, data_seed: int | None = None) -> dict[str, Value]:
        """The training flags of run (spec, seed, data seed) over the bench's YAML file (``engine.flags``
        ``resolve_train_config(bench.config, values)``)."""
        name = run_name(spec, seed, data_seed)
        p = self.paths(name)
        data = seed if data_seed is None else data_seed
        shared = {"teacher_ckpt": self.shared_teacher(data)} if spec.shared_teacher else {}
        return {"seed": str(seed), **_data_seed_value(data_seed), "prefix": name,
                "checkpoint_dir": p["checkpoint_dir"], "log_dir": p["log_dir"], "no_progress": True,
                **spec.train_values(seed), **shared, **self.plugin_values()}

    def test_values(self, spec: Spec, seed: int, role: str, cfg: dict, data_seed: int | None = None,
                    full: bool = False) -> dict[str, Value]:
        """The test flags testing ``role`` of run (spec, seed, data seed) on the test split (``engine.flags``
        ``resolve_test_config(bench.config, values)``); ``full``: the student on the full-resolution split
        (pansharpening, ``--resolution full``), results in :data:`STUDENT_FULL`."""
        name = run_name(spec, seed, data_seed)
        p = self.paths(name)
        test = build_test_parser()
        known, ignored = _actions(test), cli_only(test)
        values: dict[str, Value] = {
            "seed": str(seed), **_data_seed_value(data_seed), "prefix": name, "checkpoint_dir": p["checkpoint_dir"],
            "split": "test", "test_mode": "1" if role == "teacher" else "2",
            "results": os.path.join(p["results"], STUDENT_FULL if full else role),
            "metrics": ",".join(self.task.full_metrics if full else self.metrics)}
        if full:
            values["resolution"] = "full"
        for flag, value in spec.flags:  # data and network flags the test shares with training
            if flag in known and flag not in ignored and not isinstance(known[flag], argparse._StoreTrueAction):
                values[flag] = with_seed(value, seed)
        if role == "teacher" and cfg["kd_mode"] == "offline":
            values["checkpoint"] = cfg["teacher_ckpt"]
        return {**values, **self.plugin_values()}

    def plugin_values(self) -> dict[str, Value]:
        return {"plugins": list(self.plugins)} if self.plugins else {}


def _data_seed_value(data_seed: int | None) -> dict[str, str]:
    return {} if data_seed is None else {"data_seed": str(data_seed)}


def comparable(cfg: dict) -> dict:
    """A resolved training config as plain JSON values, without the keys that only steer one command."""
    return json.loads(json.dumps({k: v for k, v in cfg.items() if not run_control(k)}, default=str))


def same_run(stored: dict, current: dict, stored_teacher: str | None = None,
             current_teacher: str | None = None) -> bool:
    """Whether a finished run's stored config computes what ``current`` asks for: the same run fingerprint
    (``engine.fingerprint``; its upgrade rule counts a key the stored config lacks at its current default, and a
    key only the stored config has, a removed flag, never matches). ``*_teacher``: the SHA-256 of the teacher
    file each reads, which then counts by content, not by path."""
    return same_result(stored, current, stored_teacher, current_teacher)


def roles_of(cfg: dict) -> tuple[str, ...]:
    """The networks a run tests: the student, and the teacher unless it is the student alone."""
    return ("student",) if cfg["kd_mode"] == "none" else ("student", "teacher")


def result_folders(bench: Bench, cfg: dict) -> tuple[str, ...]:
    """The test summaries a finished run has: one per role (:func:`roles_of`), and :data:`STUDENT_FULL` for a task
    with a full-resolution test."""
    return (*roles_of(cfg), *((STUDENT_FULL,) if bench.task.full else ()))


def _load_record(path: str) -> dict | None:
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def teacher_by(record: dict) -> str:
    """How a record knows its frozen teacher (``engine.fingerprint.TEACHER_BY``): ``"weights"``, or ``"file"`` for a
    record written before (only :data:`LEGACY_TEACHER_KEY`)."""
    return "file" if LEGACY_TEACHER_KEY in record and TEACHER_KEY not in record else "weights"


def record_fingerprint(record: dict) -> str | None:
    """The run fingerprint of a record, recomputed from its stored config (the upgrade rule of
    ``engine.fingerprint``: records of any earlier layout, with or without stored fingerprints, compare alike); its
    frozen teacher counts by the digest recorded (a record without one never matches a run reading a teacher)."""
    config = record.get("config")
    if not isinstance(config, dict):
        return None
    by = teacher_by(record)
    return fingerprint(config, record.get(TEACHER_KEY if by == "weights" else LEGACY_TEACHER_KEY), by)


def current_fingerprint(cfg: dict, by: str = "weights") -> str:
    """The run fingerprint ``cfg`` asks for, its frozen teacher (if any) as it is now: by its weights, or (``by``
    ``"file"``, to compare with a record written before) by the file's bytes."""
    if not reads_teacher_file(cfg):
        return fingerprint(comparable(cfg))
    digest = teacher_digest(cfg) if by == "weights" else file_digest(cfg["teacher_ckpt"])
    return fingerprint(comparable(cfg), digest, by)


def _complete(bench: Bench, record: dict | None, cfg: dict, wanted: Callable[[str], str] | None = None) -> bool:
    """``record`` is finished (test summaries present) with the same metrics and the run fingerprint of ``cfg``
    (``wanted(by)``: :func:`current_fingerprint`, cached by the caller): the same options that affect the result and
    the same frozen teacher."""
    if record is None or record.get("metrics_requested") != list(bench.metrics):
        return False
    if cfg.get("kd_mode") != "none" and record.get("init_streams") != INIT_STREAMS:
        return False  # made before the common random numbers: its student started from other weights
    wanted = wanted or functools.partial(current_fingerprint, cfg)
    if record_fingerprint(record) != wanted(teacher_by(record)):
        return False
    results = bench.paths(str(record.get("run")))["results"]
    return all(os.path.isfile(os.path.join(results, folder, "summary.json")) for folder in result_folders(bench, cfg))


def finished_record(bench: Bench, spec: Spec, seed: int, cfg: dict, data_seed: int | None = None) -> dict | None:
    """The saved record of (spec, seed) if that run is finished with a configuration that computes the same
    (the same run fingerprint, :func:`record_fingerprint`), else None. Failing that, a finished run of another spec
    of the bench with the same fingerprint computes the same: its record is returned under this spec, with
    ``reused_from``. Runs without a teacher do not depend on the teacher-only flags (e.g. a change of the
    ``--w_feat`` default), runs of one strategy not on the flags only another strategy reads (``engine.run_keys``)."""
    name = run_name(spec, seed, data_seed)
    record = _load_record(bench.paths(name)["record"])
    wanted = functools.cache(functools.partial(current_fingerprint, cfg))  # the teacher file is read once per kind
    if _complete(bench, record, cfg, wanted):
        return record
    folder = os.path.dirname(bench.paths(name)["record"])
    others = sorted(f for f in os.listdir(folder) if f.endswith(".json")) if os.path.isdir(folder) else []
    for file in others:
        other = _load_record(os.path.join(folder, file))
        if (other is not None and other.get("seed") == seed and other.get("data_seed") == data_seed
                and _complete(bench, other, cfg, wanted)):
            return {**other, "spec": spec.text, "reused_from": other.get("reused_from", other["run"])}
    return None


def _read_summary(folder: str) -> dict:
    with open(os.path.join(folder, "summary.json")) as f:
        return json.load(f)


def baseline_entry(summary: dict) -> dict:
    """The record's baseline from a test ``summary.json``: ``{"baseline": name, name: its test metrics}``, the name
    as the test decided it for the data (``engine.evaluate.scoring_for``: ``bicubic``, or ``exp`` for
    pansharpening)."""
    [(name, values)] = summary["baselines"].items()
    return {"baseline": name, name: values}


def run_one(bench: Bench, spec: Spec, seed: int, cfg: dict, data_seed: int | None = None) -> dict:
    """Train (spec, seed[, data seed]) afresh, test its networks' best checkpoints on the test split, save and
    return the record ``{"spec", "seed", "data_seed", "run", "config", "student", "teacher", "baseline", <its
    name: bicubic or exp>, "best_epoch", "best_val_sam", "bicubic_val", ...}`` (the last two: validation, the split
    the checkpoints were selected on)."""
    from engine import testing
    from engine.flags import resolve_test_config, resolve_train_config
    from engine.train import train

    name = run_name(spec, seed, data_seed)
    p = bench.paths(name)
    summary = train(resolve_train_config(bench.config, {**bench.train_values(spec, seed, data_seed),
                                                        "overwrite": True}))
    results = {}
    for folder in result_folders(bench, cfg):
        full = folder == STUDENT_FULL
        values = bench.test_values(spec, seed, "student" if full else folder, cfg, data_seed, full)
        try:
            testing.evaluate_run(*resolve_test_config(bench.config, values))
        except (ValueError, OSError) as exc:
            what = "the student at full resolution" if full else f"the {folder}"
            raise RuntimeError(f"testing {what} of run {name} failed: {exc}") from None
        results[folder] = _read_summary(os.path.join(p["results"], folder))
    student = results["student"]
    record = {"spec": spec.text, "seed": seed, "data_seed": data_seed, "run": name, "run_dir": summary["run_dir"],
              "init_streams": INIT_STREAMS,
              "config": comparable(cfg), "metrics_requested": list(bench.metrics),
              "best_epoch": {r: b["epoch"] for r, b in summary["best"].items()},
              "best_val_sam": {r: b["sam"] for r, b in summary["best"].items()},
              "bicubic_val": summary.get("bicubic_val"),
              "student": student["metrics"], "teacher": results["teacher"]["metrics"] if "teacher" in results else None,
              **baseline_entry(student), "test_images": student["images"],
              "selection": "best.pth: lowest validation SAM during training; the test split is evaluated once",
              "cpu": describe_cpu()}  # the host it trained on: a re-run reuses records from other hosts
    if bench.task.full:
        record.update(full_resolution_record(bench.task, results, cfg))
    digest = teacher_digest(cfg)
    if digest is not None:
        record[TEACHER_KEY] = digest
    record[FINGERPRINTS] = fingerprints(comparable(cfg), digest)
    atomic_write_json(p["record"], record)
    return record


def full_resolution_record(task: Task, results: dict[str, dict], cfg: dict) -> dict:
    """The record fields of a task with a full-resolution test: ``task``, the student's and the baseline's
    full-resolution metrics (``student_full``, ``<baseline>_full``), their image count and whether the tested
    teacher is privileged (fed the GT: its numbers are no fusion result)."""
    fr = results[STUDENT_FULL]
    return {"task": task.name, "student_full": fr["metrics"], f"{task.baseline}_full": fr["baselines"][task.baseline],
            "test_images_full": fr["images"], "teacher_privileged": "teacher" in results and privileged_teacher(cfg)}


def privileged_teacher(cfg: dict) -> bool:
    """Whether the teacher network of ``cfg`` is privileged (``models.network.FusionNetwork.privileged``: it takes
    the GT, as the PSD teacher at its stage-2 input); built on the meta device, no weights allocated."""
    import torch

    from models import build_model

    with torch.device("meta"):
        return bool(getattr(build_model(cfg, "teacher"), "privileged", False))


# ---------------------------------------------------------------------------------------------------------------------
# Statistics and reports


def mean_std(values: list[float]) -> dict[str, float | None]:
    """{"mean", "std"} of ``values``; std is the sample standard deviation (n − 1), None for fewer than 2."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std}


def t_interval(values: list[float], level: float = 0.95) -> list[float] | None:
    """[lo, hi]: the two-sided Student-t confidence interval of the mean, mean ± t_{(1+level)/2, n−1}·s/√n
    (s: sample standard deviation); None for fewer than 2 values."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return None
    stat = mean_std(values)
    half = float(t.ppf((1 + level) / 2, n - 1)) * stat["std"] / math.sqrt(n)
    return [stat["mean"] - half, stat["mean"] + half]


def paired_stats(diffs: dict[str, float], gaps: dict[str, float] | None = None, metric: str = "psnr") -> dict:
    """The statistics of per-seed paired differences ``diffs`` {seed label: spec − its student alone}:
    {"mean", "std" (sample), "per_seed", "n", "ci95" ([lo, hi], t-based; None for one seed), "n_positive" (seeds
    with a difference > 0)}, and with ``gaps`` {seed label: teacher − the student alone} also "gap" ({"mean", "std",
    "per_seed"} over the same seeds) and "gap_fraction" = mean difference / mean gap (the fraction of the
    teacher's lead captured; None when the teacher does not lead on average: a mean gap of 0 or in the
    ``metric``'s worse direction)."""
    values = list(diffs.values())
    out = {**mean_std(values), "per_seed": diffs, "n": len(values), "ci95": t_interval(values),
           "n_positive": sum(v > 0 for v in values)}
    if gaps:
        shared = {k: gaps[k] for k in diffs if k in gaps}
        if shared:
            gap = {**mean_std(list(shared.values())), "per_seed": shared}
            mean_diff = mean_std([diffs[k] for k in shared])["mean"]
            leads = gap["mean"] < 0 if direction(metric) == "lower" else gap["mean"] > 0
            out.update(gap=gap, gap_fraction=mean_diff / gap["mean"] if leads else None)
    return out


def teacher_row(spec: str, privileged: bool = False) -> str:
    """The report row of a spec's teacher: ``teacher (<spec>)``, or ``teacher (<spec>, privileged)`` for a teacher fed
    the GT (pansharpening reports; its numbers are no fusion result)."""
    return f"teacher ({spec}, privileged)" if privileged else f"teacher ({spec})"


def _teacher_of(rows: dict, spec: str) -> dict:
    return rows.get(teacher_row(spec)) or rows.get(teacher_row(spec, True)) or {}


def row_values(runs: list[dict], task: Task = FUSION) -> dict[str, dict[str, dict[str, float]]]:
    """{row: {seed label: metrics}}: the students (one row per spec, in run order), then the teachers' rows
    (:func:`teacher_row`), then the baseline (``bicubic``; pansharpening: ``exp``; identical for every spec of a
    seed: taken from the first run of that seed); for a task with a full-resolution test, then each student's and
    the baseline's full-resolution row (``<row> (full resolution)``, :data:`FULL`). Labels are ``"seed"``, or
    ``"data_seed/seed"`` for a bench over data seeds, in seed order."""
    students: dict[str, dict[str, dict[str, float]]] = {}
    teachers: dict[str, dict[str, dict[str, float]]] = {}
    baselines: dict[str, dict[str, dict[str, float]]] = {}
    full: dict[str, dict[str, dict[str, float]]] = {}
    for r in sorted(runs, key=lambda r: _label_order(record_label(r))):
        label = record_label(r)
        students.setdefault(r["spec"], {})[label] = r["student"]
        if r.get("teacher") is not None:
            teachers.setdefault(teacher_row(r["spec"], r.get("teacher_privileged", False)), {})[label] = r["teacher"]
        name = r.get("baseline", task.baseline)  # records made before pansharpening all have bicubic
        baselines.setdefault(name, {}).setdefault(label, r[name])
        if task.full:
            full.setdefault(r["spec"] + FULL, {})[label] = r["student_full"]
            full.setdefault(task.baseline + FULL, {}).setdefault(label, r[f"{task.baseline}_full"])
    order = list(dict.fromkeys(r["spec"] for r in runs))  # rows in run order
    rows = {**{k: students[k] for k in order}, **teachers, **baselines}
    if task.full:
        rows.update({k + FULL: full[k + FULL] for k in (*order, task.baseline)})
    return rows


def summarise(runs: list[dict], metrics: list[str], task: Task = FUSION) -> dict:
    """{row: {metric: {"mean", "std", "per_seed": {seed: value}}}} over the seeds of each row (:func:`row_values`);
    the full-resolution rows of a task that has them hold its ``full_metrics``."""
    metrics = [*metrics, *task.full_metrics]
    out = {}
    for row, by_seed in row_values(runs, task).items():
        out[row] = {}
        for m in metrics:
            per_seed = {s: v[m] for s, v in by_seed.items() if m in v}
            if per_seed:
                out[row][m] = {**mean_std(list(per_seed.values())), "per_seed": per_seed}
    return out


def _recipe(record: dict) -> str | None:
    """The record's recipe fingerprint (``engine.fingerprint.recipe_fingerprint``: the options that affect the
    result but what the teacher brings and the seeds; a flag its config lacks at its default, the upgrade rule)."""
    config = record.get("config")
    return None if config is None else recipe_fingerprint(config)


def _alone(config: dict) -> bool:
    """A student alone: no teacher, and not initialised from one (``none:student_init=teacher`` is a method)."""
    return config.get("kd_mode") == "none" and config.get("student_init", "random") != "teacher"


def paired_with(runs: list[dict]) -> dict[str, str]:
    """{spec: the student-alone spec it is paired with}: the ``none…`` spec (``--kd_mode none``) whose runs have
    the same recipe fingerprint (:func:`_recipe`) (e.g.
    ``csakd:w_feat=0,student_lr_scheduler=cosine`` → ``none:student_lr_scheduler=cosine``) — else ``none`` itself.
    Specs without a partner are left out."""
    first: dict[str, dict] = {}
    for r in runs:
        first.setdefault(r["spec"], r)
    alone = [s for s, r in first.items() if s == BASELINE or _alone(r.get("config") or {})]
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


def _paired(rows: dict, spec: str, partner: str, metrics: list[str]) -> dict:
    """{metric: :func:`paired_stats`} of the per-seed differences ``spec`` − ``partner`` (students, on the seeds
    both have), with the gap of ``spec``'s teacher over ``partner`` where the spec has a teacher."""
    by_seed, base = rows[spec], rows[partner]
    teacher = _teacher_of(rows, spec)
    out = {}
    for m in metrics:
        diffs = {s: by_seed[s][m] - base[s][m] for s in by_seed if s in base and m in by_seed[s] and m in base[s]}
        gaps = {s: teacher[s][m] - base[s][m] for s in diffs if m in teacher.get(s, {})}
        if diffs:
            out[m] = paired_stats(diffs, gaps, m)
    return out


def _paired_rows(rows: dict, pairs: dict[str, str], metrics: list[str], task: Task) -> dict:
    """{spec: {metric: :func:`paired_stats`}} of spec − partner for each of ``pairs``; with a full-resolution test
    also its ``full_metrics``, of the two specs' full-resolution rows."""
    out = {}
    for spec, partner in pairs.items():
        out[spec] = _paired(rows, spec, partner, metrics)
        if task.full:
            out[spec].update(_paired(rows, spec + FULL, partner + FULL, list(task.full_metrics)))
    return out


def paired_vs_none(runs: list[dict], metrics: list[str], task: Task = FUSION) -> dict:
    """{spec: {metric: :func:`paired_stats`}} of the per-seed differences spec − its student alone
    (:func:`paired_with`: ``none``, or the ``none…`` spec of the same recipe; students, on the seeds both have),
    with the teacher's gap over that student alone where the spec has a teacher; empty without a student-alone
    spec. A task with a full-resolution test adds its ``full_metrics`` (no teacher there, hence no gap)."""
    return _paired_rows(row_values(runs, task), paired_with(runs), metrics, task)


def paired_vs_control(runs: list[dict], metrics: list[str], controls: dict[str, str], task: Task = FUSION) -> dict:
    """{spec: {metric: :func:`paired_stats`}} of spec − the control named for it in ``controls`` ({spec: control
    spec}, ``--control``; e.g. the update-matched student alone of a method that trains longer in total), on the
    seeds both have; specs or controls without runs are left out."""
    rows = row_values(runs, task)
    return _paired_rows(rows, {s: c for s, c in controls.items() if s in rows and c in rows}, metrics, task)


def _fmt(stat: dict | None, metric: str, signed: bool = False) -> str:
    if not stat:
        return ""
    d = DIGITS.get(metric, 3)
    mean = f"{stat['mean']:+.{d}f}" if signed else f"{stat['mean']:.{d}f}"
    return mean if stat["std"] is None else f"{mean} ± {stat['std']:.{d}f}"


def report_task(report: dict) -> Task:
    """The :class:`Task` of a report (reports without ``"task"``: HSI fusion)."""
    return TASKS[report.get("task", FUSION.name)]


def markdown_table(report: dict) -> str:
    """The summary (mean ± std over seeds) and the paired differences vs the student alone as one Markdown table
    (the last column names the student-alone row of each difference), then the paired statistics of each spec:
    n, mean ± sample std, the t-based 95 % CI and the sign count of the task's headline metrics (ΔPSNR, ΔSAM and
    ΔERGAS; pansharpening: ΔQ2n, ΔSAM, ΔERGAS), the teacher's gap in the first over the student alone and the
    fraction of it captured. A task with a full-resolution test adds the same two tables for those rows (no
    teacher there) and states which way each metric is better."""
    task = report_task(report)
    summary, metrics = report["summary"], report["metrics"]
    reduced = {r: v for r, v in summary.items() if not (task.full and r.endswith(FULL))}
    lines = _summary_table(report, reduced, metrics, task.headline[:2])
    if task.full:
        full = {r: v for r, v in summary.items() if r.endswith(FULL)}
        lines += ["", *_summary_table(report, full, list(task.full_metrics), task.full_headline[:2])]
    for against, key in (("none", "paired_vs_none"), ("control", "paired_vs_control")):
        if report.get(key):
            lines += ["", *paired_table(report, against)]
            lines += ["", *paired_table(report, against, task.full_headline, gap=False)] if task.full else []
    notes = "".join(f"\n\n{note}" for note in task_notes(report, task))
    return "\n".join(lines) + f"{notes}\n\n`{report['command']}`\n\nhosts: {hosts_line(report['runs'])}\n"


def _summary_table(report: dict, rows: dict, metrics: list[str], delta: tuple[str, ...]) -> list[str]:
    """The lines of the summary table of ``rows``: mean ± std of ``metrics``, Δ vs the student alone of ``delta``
    (a full-resolution row :data:`FULL` shows its spec's full-resolution differences) and the paired row."""
    paired, partners = report["paired_vs_none"], report.get("paired_with", {})
    delta = [m for m in delta if m in metrics]
    head = ["row", "seeds", *[m.upper() for m in metrics], *[f"Δ{m.upper()} vs alone" for m in delta], "paired with"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, stats in rows.items():
        spec = row.removesuffix(FULL)
        n = len(next(iter(stats.values()))["per_seed"]) if stats else 0
        cells = [row, str(n), *[_fmt(stats.get(m), m) for m in metrics],
                 *[_fmt(paired.get(spec, {}).get(m), m, signed=True) for m in delta], partners.get(spec, "")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def task_notes(report: dict, task: Task) -> list[str]:
    """What a report of a task other than HSI fusion says below its tables: the better direction of each metric
    (:func:`engine.pansharpening_metrics.direction`), what a privileged teacher row is, what the full-resolution
    rows are."""
    if task is FUSION:
        return []
    better = ", ".join(f"{m} {ARROWS[direction(m)]}" for m in [*report["metrics"], *task.full_metrics])
    notes = [f"Better: {better} (Δ = spec − its student alone; k/n > 0 counts seeds with Δ > 0, a gain only where "
             f"higher is better)."]
    if any(r.endswith(", privileged)") for r in report["summary"]):
        notes.append(PRIVILEGED_NOTE)
    if task.full:
        notes.append(FULL_NOTE)
    return notes


def hosts_line(runs: list[dict]) -> str:
    """The CPUs the runs trained on, with their counts ("not recorded" for records written before hosts were)."""
    counts: dict[str, int] = {}
    for r in runs:
        host = r.get("cpu") or "not recorded"
        counts[host] = counts.get(host, 0) + 1
    return "; ".join(f"{host} ({n} run{'s' * (n != 1)})" for host, n in counts.items())


def _ci(stat: dict, metric: str) -> str:
    d = DIGITS.get(metric, 3)
    return "" if stat.get("ci95") is None else f"[{stat['ci95'][0]:+.{d}f}, {stat['ci95'][1]:+.{d}f}]"


def paired_table(report: dict, against: str = "none", shown: tuple[str, ...] | None = None,
                 gap: bool = True) -> list[str]:
    """The lines of the paired-statistics table (one row per distilled spec): against its student alone
    (``paired_vs_none``), or with ``against="control"`` against its ``--control`` (``paired_vs_control``), of the
    metrics ``shown`` (default the task's headline); ``gap``: the teacher-gap columns, of the first metric."""
    task = report_task(report)
    available = [*report["metrics"], *task.full_metrics]
    shown = [m for m in (shown or task.headline) if m in available]
    source, partners = ((report["paired_vs_control"], report["controls"]) if against == "control"
                        else (report["paired_vs_none"], report["paired_with"]))
    title = "spec vs its control" if against == "control" else "spec vs its student alone"
    title += FULL if task.full and not set(shown) & set(report["metrics"]) else ""
    head = [title, "n", *[f"Δ{m.upper()} {part}" for m in shown
                                                 for part in ("mean ± std", "95 % CI", "k/n > 0")],
            *([f"teacher gap {shown[0].upper()}", "fraction captured"] if gap and shown else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spec, stats in source.items():
        first = next((stats[m] for m in shown if m in stats), None)
        if first is None:
            continue
        cells = [f"{spec} − {partners.get(spec, '')}", str(first["n"])]
        for m in shown:
            stat = stats.get(m)
            cells += ["", "", ""] if stat is None else [_fmt(stat, m, signed=True), _ci(stat, m),
                                                        f"{stat['n_positive']}/{stat['n']}"]
        if gap:
            lead = stats.get(shown[0], {})
            size, fraction = lead.get("gap"), lead.get("gap_fraction")
            cells += [_fmt(size, shown[0], signed=True) if size else "",
                      "" if fraction is None else f"{fraction:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot(report: dict, path: str) -> None:
    """The paired differences vs the student alone (ΔPSNR, ΔSAM, ΔERGAS): each seed as a dot, the mean with its
    t-based 95 % CI as a bar, 0 as a line (PNG, matplotlib Agg); without paired rows, the absolute PSNR and SAM
    per row with the mean ± std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task = report_task(report)
    paired = report["paired_vs_none"]
    source = paired or report["summary"]
    wanted = (*task.headline, *task.full_headline) if paired else (*task.headline[:2], *task.full_headline[:1])
    shown = [m for m in wanted if m in (*report["metrics"], *task.full_metrics)]
    shown = shown or report["metrics"][:1]
    rows = list(source)
    fig, axes = plt.subplots(1, len(shown), figsize=(len(shown) * max(3.5, 1.3 * len(rows)), 4.5), squeeze=False,
                             layout="constrained")
    for ax, m in zip(axes[0], shown, strict=True):
        for i, row in enumerate(rows):
            stat = source[row].get(m)
            if not stat:
                continue
            values = list(stat["per_seed"].values())
            ax.scatter([i] * len(values), values, s=14, color="0.4", zorder=3)
            ci = stat.get("ci95") if paired else None
            err = ([[stat["mean"] - ci[0]], [ci[1] - stat["mean"]]] if ci is not None
                   else [[stat["std"] or 0.0], [stat["std"] or 0.0]])
            ax.errorbar([i], [stat["mean"]], yerr=err, fmt="o", color="C0", capsize=4, zorder=4)
        if paired:
            ax.axhline(0.0, color="0.2", lw=0.8)
        labels = [textwrap.fill(r if not paired else f"{r} − {report['paired_with'].get(r, '')}", 28) for r in rows]
        ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        units = f"{AXIS_NAMES.get(m, m)} {ARROWS[direction(m)]}"
        where = FULL if m in task.full_metrics else ""
        ax.set_ylabel((f"Δ{units} vs the student alone" if paired else units) + where)
        ax.grid(axis="y", alpha=0.3)
    what = "paired Δ per seed, mean with t-based 95 % CI" if paired else "mean ± std over seeds"
    fig.suptitle(f"{os.path.basename(report['config'])}: test split, {what}", fontsize=9)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # long spec names: grow the canvas instead of squeezing axes
    plt.close(fig)


def with_shared_teacher(runs: list[dict], teacher_runs: list[dict]) -> list[dict]:
    """The runs, where one reads the bench's shared frozen teacher but tests no teacher of its own (teacher
    inheritance alone, ``none:student_init=teacher``) given that teacher's test metrics (the teacher run of its data
    seed), so that its rows show the teacher it started from and its gap is measured against it."""
    shared = {r.get("data_seed"): {k: r[k] for k in ("teacher", "teacher_privileged") if k in r}
              for r in teacher_runs if r.get("teacher") is not None}
    if not shared:
        return runs
    parser = build_train_parser()  # once: parse_spec would build it for every run
    out = []
    for r in runs:
        data = r["seed"] if r.get("data_seed") is None else r["data_seed"]
        reads_shared = r.get("teacher") is None and parse_spec(r["spec"], parser).shared_teacher
        out.append({**r, **shared[data]} if reads_shared and data in shared else r)
    return out


def build_report(bench: Bench, runs: list[dict], command: str, teacher_runs: list[dict] | None = None,
                 controls: dict[str, str] | None = None) -> dict:
    task, metrics = bench.task, list(bench.metrics)
    rows = with_shared_teacher(runs, teacher_runs or [])
    paired = paired_vs_none(rows, metrics, task)
    controls = controls or {}
    lead = task.headline[0]
    report = {"config": bench.config, "command": command, "cpu": describe_cpu(), "metrics": metrics, "runs": runs,
              "summary": summarise(rows, metrics, task), "paired_vs_none": paired,
              "paired_with": paired_with(runs), "controls": controls,
              "paired_vs_control": paired_vs_control(rows, metrics, controls, task),
              "paired_sigma": {spec: stats[lead]["std"] for spec, stats in paired.items() if lead in stats},
              "teacher_runs": teacher_runs or [],
              "selection": "each network's best.pth (lowest validation SAM); the test split is used for nothing else",
              "std": "sample standard deviation over seeds (n − 1); null for a single seed",
              "ci95": "mean ± t(0.975, n − 1)·std/√n of the paired differences; gap_fraction = mean difference / "
                      "mean teacher gap (teacher − the student alone, same seeds); n_positive = seeds with difference "
                      "> 0"}
    if task is not FUSION:  # HSI reports keep their keys
        report.update(task=task.name, full_metrics=list(task.full_metrics), paired_sigma_metric=lead,
                      better={m: direction(m) for m in [*metrics, *task.full_metrics]},
                      privileged=PRIVILEGED_NOTE, full_resolution=FULL_NOTE)
    return report


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def parse_controls(pairs: list[str], specs: list[str]) -> dict[str, str]:
    """{spec: control} from ``--control SPEC=CONTROL`` items, split at the ``=`` that leaves a spec of
    ``--strategies`` on each side (spec texts hold ``=`` themselves)."""
    out = {}
    for item in pairs:
        cuts = [(item[:i], item[i + 1:]) for i, ch in enumerate(item) if ch == "="]
        found = [(a, b) for a, b in cuts if a in specs and b in specs and a != b]
        if len(found) != 1:
            raise SpecError(f"--control {item!r}: expected SPEC=CONTROL, two different specs of --strategies "
                            f"({' '.join(specs)})")
        out[found[0][0]] = found[0][1]
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.kd", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", required=True, help="YAML config of every run (flags as in train_CSAKD.py)")
    add_options(p, [PLUGINS])
    p.add_argument("--strategies", nargs="+", default=[BASELINE, "csakd"], metavar="SPEC",
                   help="name[:flag=value,...]; none = the student alone")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3],
                   help="initialisation seeds (≥ 3 for a claim): init, batch order, crops, training noise")
    p.add_argument("--data_seeds", nargs="+", type=int, default=None,
                   help="data draws (--data_seed of every run): the bench spans seeds × data seeds; default: each "
                        "run's data drawn from its --seed (the bench's meaning before data seeds existed)")
    p.add_argument("--teacher_spec", default=TEACHER_SPEC,
                   help="the online spec whose co-trained teacher (best.pth) is the shared frozen teacher of each data "
                        "seed, used by every spec with kd_mode=offline and no teacher_ckpt; trained on demand, reused")
    p.add_argument("--teacher_seed", type=int, default=0, help="--seed of the shared teacher's run")
    p.add_argument("--control", nargs="+", default=[], metavar="SPEC=CONTROL",
                   help="also pair SPEC with CONTROL (both in --strategies), e.g. a method that trains longer in "
                        "total with the student alone trained as long: none:student_init=teacher=none:epochs=160")
    p.add_argument("--json", required=True, help="report (JSON); the .md table and .png plot are written next to it")
    p.add_argument("--out", default=None, help="run folders (default results/kd_bench/<config name>)")
    p.add_argument("--metrics", default=None,
                   help=f"comma-separated test metrics: HSI fusion of {','.join(TEST_METRICS)} (default "
                        f"{','.join(DEFAULT_METRICS)}; UIQI needs ≥ 32×32 images); pansharpening of "
                        f"{','.join(RR_METRICS)} (default all; every student is also tested at full resolution: "
                        f"{','.join(FR_METRICS)})")
    return p


@dataclasses.dataclass(frozen=True)
class Job:
    """One run of the bench: a spec at an initialisation seed and a data seed (None: the seed draws the data)."""

    spec: Spec
    seed: int
    data_seed: int | None
    cfg: dict

    @property
    def name(self) -> str:
        return run_name(self.spec, self.seed, self.data_seed)


def prepare_runs(bench: Bench, specs: list[Spec], seeds: list[int],
                 data_seeds: list[int | None] | None = None) -> list[Job]:
    """Every (spec, seed, data seed) with its resolved training config, all checked before anything is trained."""
    from engine.flags import resolve_train_config

    runs = []
    for spec in specs:
        for data_seed in data_seeds or [None]:
            for seed in seeds:
                try:
                    cfg = resolve_train_config(bench.config, bench.train_values(spec, seed, data_seed))
                except ValueError as exc:
                    raise SpecError(f"--strategies {spec.text!r}: {exc}") from None
                runs.append(Job(spec, seed, data_seed, cfg))
    return runs


def for_task(bench: Bench, jobs: list[Job]) -> Bench:
    """``bench`` for the task of its runs (:func:`task_of`; one task per bench), its metrics checked against the
    task's (``--metrics`` left out: the task's default)."""
    tasks = list(dict.fromkeys(task_of(j.cfg) for j in jobs)) or [FUSION]
    if len(tasks) > 1:
        raise SpecError(f"--strategies: the runs are of several tasks ({', '.join(t.name for t in tasks)}); a bench "
                        f"compares runs of one task")
    task = tasks[0]
    metrics = bench.metrics or task.metrics
    unknown = [m for m in metrics if m not in task.allowed]
    if unknown:
        raise SpecError(f"--metrics: unknown {unknown} for {task.name} data ({bench.config}); expected some of "
                        f"{','.join(task.allowed)}")
    return dataclasses.replace(bench, metrics=tuple(metrics), task=task)


def _differences(stored: dict, current: dict) -> str:
    changed = changed_options(stored, current)
    return ", ".join(f"{k} {old!r} there, {new!r} here" for k, (old, new) in list(changed.items())[:3]) + \
        (f" and {len(changed) - 3} more" if len(changed) > 3 else "")


def refuse_foreign_run(bench: Bench, spec: Spec, seed: int, cfg: dict, data_seed: int | None = None) -> None:
    """Before (spec, seed) is trained afresh into ``--out``: its record, if any, and its run folder's
    ``config.yaml``, if any, must be of this configuration (an unfinished run of it); a finished run of another
    configuration, or a user's own run of that name, is never replaced (one line naming it)."""
    from utils.config import ConfigError, load_config_file

    name = run_name(spec, seed, data_seed)
    p = bench.paths(name)
    record = _load_record(p["record"])
    found = [(p["record"], record.get("config"))] if record is not None else []
    saved = os.path.join(p["checkpoint_dir"], name, "config.yaml")
    if os.path.isfile(saved):
        try:
            found.append((saved, comparable(load_config_file(saved))))
        except (ConfigError, OSError) as exc:
            raise SpecError(f"--out {bench.out} holds run {name} whose {saved} cannot be read ({exc}); use another "
                            f"--out") from None
    for where, stored in found:
        if not isinstance(stored, dict) or not same_run(stored, comparable(cfg)):
            what = _differences(stored, comparable(cfg)) if isinstance(stored, dict) else "no config"
            raise SpecError(f"--out {bench.out} holds run {name} of another configuration ({where}: {what}); it is "
                            f"not replaced: use another --out, or remove that run yourself")


def teacher_jobs(bench: Bench, jobs: list[Job]) -> list[Job]:
    """The shared frozen teachers' runs the jobs need: one per data seed of a spec with the shared teacher (without
    ``--data_seeds`` each init seed draws its own data, hence has its own teacher)."""
    needed = list(dict.fromkeys(j.seed if j.data_seed is None else j.data_seed for j in jobs if j.spec.shared_teacher))
    if not needed:
        return []
    runs = prepare_runs(bench, [bench.teacher_run()], [bench.teacher_seed], needed)
    if any(j.cfg["kd_mode"] != "online" for j in runs):
        raise SpecError(f"--teacher_spec {bench.teacher_spec!r}: the shared teacher is trained online (co-trained); "
                        f"leave kd_mode out of it")
    return runs


def _finished_or_run(bench: Bench, job: Job) -> tuple[dict, bool]:
    """(record, skipped): the finished record of the job, or a new one from training and testing it."""
    record = finished_record(bench, job.spec, job.seed, job.cfg, job.data_seed)
    if record is not None:
        return record, True
    refuse_foreign_run(bench, job.spec, job.seed, job.cfg, job.data_seed)
    try:
        return run_one(bench, job.spec, job.seed, job.cfg, job.data_seed), False
    except (ValueError, OSError, RuntimeError) as exc:  # finished runs stay; a re-run continues
        data = "" if job.data_seed is None else f", data seed {job.data_seed}"
        raise SpecError(f"--strategies {job.spec.text!r}, seed {job.seed}{data}: {exc}") from None


def run_bench(bench: Bench, specs: list[Spec], seeds: list[int], command: str,
              data_seeds: list[int | None] | None = None, controls: dict[str, str] | None = None) -> dict:
    """Train and test every unfinished run — first the shared frozen teachers the specs need (one per data seed),
    then every (spec, seed, data seed) — then build the report. Once every spec is checked, ``--out`` is locked
    for the whole bench (``<out>/bench.lock``): a second bench on it is refused, naming this one."""
    jobs = prepare_runs(bench, specs, seeds, data_seeds)
    bench = for_task(bench, jobs)
    teachers = teacher_jobs(bench, jobs)
    records, skipped = [], 0
    make_parent(os.path.join(bench.out, LOCK_FILE))
    with FolderLock(os.path.join(bench.out, LOCK_FILE), f"--out {bench.out}", kind="bench",
                    way_out="give another --out"), \
            tqdm(teachers + jobs, desc="kd bench", unit="run", dynamic_ncols=True) as progress:
        for job in progress:
            record, was_finished = _finished_or_run(bench, job)
            records.append(record)
            skipped += was_finished
            progress.set_postfix_str(f"done {job.name} (skipped {skipped})")
    return build_report(bench, records[len(teachers):], command, teacher_runs=records[:len(teachers)],
                        controls=controls)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python -m benchmarks.kd " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        metrics = tuple(m.strip() for m in (args.metrics or "").split(",") if m.strip())
        if args.metrics is not None and not metrics:
            raise SpecError(f"--metrics {args.metrics!r}: no metric named; expected some of {','.join(TEST_METRICS)}")
        if not os.path.isfile(args.config):
            raise FileNotFoundError(f"--config {args.config}: no such file")
        load_plugins(["--config", args.config, *(["--plugins", *args.plugins] if args.plugins else [])])
        for flag, values in (("--seeds", args.seeds), ("--data_seeds", args.data_seeds or [])):
            if len(set(values)) != len(values):
                raise SpecError(f"{flag} {values}: a seed is given twice")
        specs = parse_specs(args.strategies)
        controls = parse_controls(args.control, [s.text for s in specs])
        try:
            parse_spec(args.teacher_spec)
        except SpecError as exc:
            raise SpecError(f"--teacher_spec: {exc}") from None
        out = args.out or os.path.join("results", "kd_bench", os.path.splitext(os.path.basename(args.config))[0])
        bench = Bench(args.config, out, metrics, args.teacher_spec, args.teacher_seed, tuple(args.plugins or ()))
        make_parent(args.json)  # an unwritable report folder fails now, not after hours of runs
        with StopAtOnce("stopped"):  # between runs and while testing; training stops itself at its next step
            report = run_bench(bench, specs, args.seeds, command, args.data_seeds, controls)
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


__all__ = ["Spec", "SpecError", "file_digest", "flag_defaults", "markdown_table", "mean_std", "paired_vs_none",
           "parse_spec", "parse_specs", "run_bench", "same_run", "summarise"]

if __name__ == "__main__":
    sys.exit(main())
