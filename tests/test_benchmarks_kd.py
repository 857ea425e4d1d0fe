"""``python -m benchmarks.kd``: end to end on a tiny configuration, skip-on-rerun, the paired statistics
(golden numbers) and the spec errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train_run import TINY_YAML as TRAIN_TINY_YAML

import benchmarks.kd as kd
from utils.checkpoint import read_checkpoint, save_weights, weights_digest

pytestmark = pytest.mark.usefixtures("one_thread")

# The training tests' tiny synthetic runs, one epoch each, no TensorBoard figures.
TINY_YAML = TRAIN_TINY_YAML.replace("tb_scenes: 1", "tb_scenes: 0") + "epochs: 1\n"
METRICS = "psnr,sam,ergas,rmse,ssim"  # UIQI needs ≥ 32×32 images


def bench_argv(tmp_path: Path, *specs: str, seeds: tuple[str, ...] = ("1", "2")) -> list[str]:
    config = tmp_path / "tiny.yaml"
    if not config.exists():
        config.write_text(TINY_YAML)
    return ["--config", str(config), "--strategies", *specs, "--seeds", *seeds, "--json",
            str(tmp_path / "kd.json"), "--out", str(tmp_path / "bench"), "--metrics", METRICS]


def test_bench_end_to_end_then_skips_finished_runs(tmp_path, monkeypatch):
    argv = bench_argv(tmp_path, "none", "csakd:w_feat=0")
    assert kd.main(argv) == 0
    report = json.loads((tmp_path / "kd.json").read_text())
    assert [(r["spec"], r["seed"]) for r in report["runs"]] == [("none", 1), ("none", 2), ("csakd:w_feat=0", 1),
                                                                 ("csakd:w_feat=0", 2)]
    assert list(report["summary"]) == ["none", "csakd:w_feat=0", "teacher (csakd:w_feat=0)", "bicubic"]
    by = {(r["spec"], r["seed"]): r for r in report["runs"]}
    assert by[("none", 1)]["teacher"] is None and by[("csakd:w_feat=0", 1)]["teacher"] is not None
    assert by[("csakd:w_feat=0", 1)]["config"]["w_feat"] == 0 and by[("none", 1)]["config"]["kd_mode"] == "none"
    for r in report["runs"]:
        assert r["test_images"] == 2 and set(r["student"]) >= set(METRICS.split(","))
        assert r["best_epoch"]["student"] == 0  # selected on validation (1 epoch: the only candidate)
        # the record's numbers are the test script's own summary
        summary = json.loads((tmp_path / "bench" / "results" / r["run"] / "student" / "summary.json").read_text())
        assert summary["split"] == "test" and summary["metrics"] == r["student"]
    # the bicubic row is the same for every spec of a seed
    assert by[("none", 2)]["bicubic"] == by[("csakd:w_feat=0", 2)]["bicubic"]
    psnr = report["summary"]["csakd:w_feat=0"]["psnr"]
    assert psnr["per_seed"] == {"1": by[("csakd:w_feat=0", 1)]["student"]["psnr"],
                                "2": by[("csakd:w_feat=0", 2)]["student"]["psnr"]}
    diff = report["paired_vs_none"]["csakd:w_feat=0"]["sam"]["per_seed"]["2"]
    assert diff == pytest.approx(by[("csakd:w_feat=0", 2)]["student"]["sam"] - by[("none", 2)]["student"]["sam"])
    table = (tmp_path / "kd.md").read_text()
    assert "| csakd:w_feat=0 | 2 |" in table and "python -m benchmarks.kd" in table
    assert (tmp_path / "kd.png").stat().st_size > 1000

    # Re-run: every run is finished with the same configuration, so nothing is trained again.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(kd, "run_one", no_training)
    assert kd.main(argv) == 0
    assert json.loads((tmp_path / "kd.json").read_text())["runs"] == report["runs"]
    # Another spelling of a finished spec (as after a change of default) reuses its runs under the new name.
    assert kd.main(bench_argv(tmp_path, "none", "csakd:w_feat=0.0")) == 0
    runs = json.loads((tmp_path / "kd.json").read_text())["runs"]
    assert [(r["spec"], r.get("reused_from")) for r in runs[2:]] == [("csakd:w_feat=0.0", "csakd_w_feat=0_seed1"),
                                                                     ("csakd:w_feat=0.0", "csakd_w_feat=0_seed2")]


def test_a_copied_bench_folder_keeps_its_finished_runs(tmp_path, monkeypatch):
    """Reuse is by run fingerprint, which holds no path: a bench's --out copied elsewhere trains nothing again."""
    import shutil

    argv = bench_argv(tmp_path, "none", seeds=("1",))
    assert kd.main(argv) == 0
    shutil.copytree(tmp_path / "bench", tmp_path / "copy")
    monkeypatch.setattr(kd, "run_one", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert kd.main([*argv[:argv.index("--out")], "--out", str(tmp_path / "copy"), *argv[argv.index("--out") + 2:]]) == 0


def test_same_run_tolerates_only_keys_added_at_their_default():
    """A stored config that lacks a flag (written before the flag existed) computes the same when the current
    value is the flag's default in the current --compat mode; any other difference is a different run."""
    current = kd.flag_defaults()
    older = {k: v for k, v in current.items() if k not in ("feat_norm", "kd_strategy", "teacher_layers")}
    assert kd.same_run(older, current)
    assert not kd.same_run(older, {**current, "feat_norm": "std"})  # the new flag away from its default
    assert not kd.same_run({**older, "removed_flag": 1}, current)  # a flag the current code lacks
    assert not kd.same_run(older, {**current, "epochs": current["epochs"] + 1})
    assert kd.same_run({**current, "prefix": "a"}, {**current, "prefix": "b"})  # the run's name: not what it computes
    official = kd.flag_defaults("official")
    assert kd.same_run({k: v for k, v in official.items() if k != "w_feat"}, official)  # its compat's default
    assert not kd.same_run({k: v for k, v in official.items() if k != "w_feat"}, {**official, "w_feat": 0.05})


def test_a_run_is_finished_only_with_its_summaries_and_the_same_config(tmp_path):
    argv = bench_argv(tmp_path, "none")
    assert kd.main(argv) == 0
    bench = kd.Bench(str(tmp_path / "tiny.yaml"), str(tmp_path / "bench"), tuple(METRICS.split(",")))
    spec = kd.parse_spec("none")
    cfg = kd.prepare_runs(bench, [spec], [1, 2])[0].cfg
    assert kd.finished_record(bench, spec, 1, cfg) is not None
    assert kd.finished_record(bench, spec, 1, {**cfg, "epochs": 2}) is None  # another configuration
    assert kd.finished_record(bench, spec, 1, {**cfg, "w_feat": 0.7}) is not None  # no teacher: no effect
    assert kd.finished_record(kd.Bench(bench.config, bench.out, ("psnr",)), spec, 1, cfg) is None  # other metrics
    (tmp_path / "bench" / "results" / kd.run_name(spec, 1) / "student" / "summary.json").unlink()
    assert kd.finished_record(bench, spec, 1, cfg) is None  # test summary missing


@pytest.mark.parametrize(("strategy", "finished"), [("psd", True), ("hkd", True), ("csakd", False)])
def test_flags_only_csakd_reads_are_not_compared_for_other_strategies(tmp_path, strategy, finished):
    """A psd/hkd run made when --w_feat defaulted to 0.1 computes what it computes now (they never read it)."""
    bench = kd.Bench("c.yaml", str(tmp_path), ("psnr",))
    for role in ("student", "teacher"):
        (tmp_path / "results" / "r" / role).mkdir(parents=True)
        (tmp_path / "results" / "r" / role / "summary.json").write_text("{}")
    cfg = {**kd.flag_defaults(), "kd_strategy": strategy, "w_feat": 0.0}
    record = {"run": "r", "metrics_requested": ["psnr"], "config": {**cfg, "w_feat": 0.1},
              "init_streams": kd.INIT_STREAMS}
    assert kd._complete(bench, record, cfg) is finished
    assert kd._complete(bench, {**record, "config": {**cfg, "epochs": 7}}, cfg) is False  # what every run reads


def test_a_new_default_of_an_hkd_only_option_retrains_only_the_hkd_runs(tmp_path, monkeypatch, capsys):
    """Reuse by run fingerprint: a finished ``none`` or ``csakd`` run does not depend on ``--hkd_acf``."""
    import dataclasses
    import shutil

    from engine import fingerprint
    from engine.strategies import STRATEGIES

    argv = bench_argv(tmp_path, "none", "csakd", "hkd", seeds=("1",))
    assert kd.main(argv) == 0
    first = {r["spec"]: r for r in json.loads((tmp_path / "kd.json").read_text())["runs"]}
    assert first["hkd"]["config"]["hkd_acf"] == "global"
    assert all(r[fingerprint.KEY]["run"] == kd.record_fingerprint(r) for r in first.values())
    # a new default in the hkd strategy's own declaration (engine/strategies/hkd.py), as an edit there would make
    options = tuple(dataclasses.replace(o, default="pixel") if o.name == "hkd_acf" else o
                    for o in STRATEGIES.options("hkd"))
    monkeypatch.setitem(STRATEGIES._options, "hkd", options)
    fingerprint._defaults.cache_clear()
    trained: list[str] = []
    real_run_one = kd.run_one
    monkeypatch.setattr(kd, "run_one", lambda *a, **k: trained.append(a[1].text) or real_run_one(*a, **k))
    try:
        # none and csakd are finished; the hkd run of the old default is named, never replaced silently
        assert kd.main(argv) == 2
        assert trained == [] and ("holds run hkd_seed1 of another configuration (" in capsys.readouterr().err)
        (tmp_path / "bench" / "records" / "hkd_seed1.json").unlink()  # as the message says: remove it to retrain
        shutil.rmtree(tmp_path / "bench" / "checkpoints" / "hkd_seed1")
        assert kd.main(argv) == 0
    finally:
        monkeypatch.undo()
        fingerprint._defaults.cache_clear()
    assert trained == ["hkd"]
    runs = {r["spec"]: r for r in json.loads((tmp_path / "kd.json").read_text())["runs"]}
    assert runs["hkd"]["config"]["hkd_acf"] == "pixel" and runs["none"] == first["none"]
    assert runs["csakd"] == first["csakd"]


def test_offline_runs_test_the_frozen_teacher_and_failures_name_the_run(tmp_path, monkeypatch, capsys):
    import train_CSAKD
    from engine.train import train

    config, ckpt_dir = bench_argv(tmp_path)[1], tmp_path / "teacher_run"
    train(train_CSAKD.load_config(["--config", config, "--prefix", "t", "--checkpoint_dir", str(ckpt_dir),
                                   "--log_dir", str(tmp_path / "runs"), "--no_progress"]))
    teacher = ckpt_dir / "t" / "teacher" / "best.pth"
    spec = f"csakd:kd_mode=offline,teacher_ckpt={teacher}"
    assert kd.main(bench_argv(tmp_path, spec, seeds=("1",))) == 0
    (record,) = json.loads((tmp_path / "kd.json").read_text())["runs"]
    teacher_summary = json.loads((tmp_path / "bench" / "results" / record["run"] / "teacher" / "summary.json")
                                 .read_text())
    assert teacher_summary["checkpoint"].startswith(str(teacher)) and record["teacher"] == teacher_summary["metrics"]
    assert list(record["best_epoch"]) == ["student"]  # the frozen teacher is not trained

    def diverged(*args, **kwargs):
        raise RuntimeError("training diverged")

    monkeypatch.setattr(kd, "run_one", diverged)
    capsys.readouterr()
    assert kd.main(bench_argv(tmp_path, "none", seeds=("1",))) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]  # after the closed progress bar
    assert last_line == "benchmarks.kd: error: --strategies 'none', seed 1: training diverged"


@pytest.mark.parametrize("where", ["training", "testing"])
def test_a_signal_stops_the_bench_with_one_line_and_keeps_finished_runs(tmp_path, monkeypatch, capsys, where):
    """SIGTERM in the second run (its training, or the test of its student): exit 143, one line, the first run's
    record kept; the same command then trains only what is missing."""
    import os
    import signal

    from engine import testing
    from engine.cotrainer import CoTrainer

    real_step, real_test = CoTrainer.step, testing.evaluate_run
    calls = {"runs": 0}

    def step(self, *args, **kwargs):
        if calls["runs"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # the loop stops after this step with a state
        return real_step(self, *args, **kwargs)

    def evaluate_run(cfg, given):
        if calls["runs"] == 1 and where == "testing":
            os.kill(os.getpid(), signal.SIGTERM)
        calls["runs"] += 1
        return real_test(cfg, given)

    if where == "training":
        monkeypatch.setattr(CoTrainer, "step", step)
    monkeypatch.setattr(testing, "evaluate_run", evaluate_run)
    argv = bench_argv(tmp_path, "none")
    assert kd.main(argv) == 143
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line == ("benchmarks.kd: SIGTERM received: stopped; finished runs are kept and the same command "
                         "continues with the others (an unfinished run restarts from scratch)")
    assert sorted(os.listdir(tmp_path / "bench" / "records")) == ["none_seed1.json"]
    assert not (tmp_path / "kd.json").exists()
    monkeypatch.setattr(CoTrainer, "step", real_step)
    monkeypatch.setattr(testing, "evaluate_run", real_test)
    assert kd.main(argv) == 0
    assert sorted(os.listdir(tmp_path / "bench" / "records")) == ["none_seed1.json", "none_seed2.json"]


def run(spec: str, seed: int, psnr: float, sam: float, teacher: bool = True) -> dict:
    metrics = {"psnr": psnr, "sam": sam}
    return {"spec": spec, "seed": seed, "student": metrics, "teacher": {"psnr": psnr + 1, "sam": sam} if teacher
            else None, "bicubic": {"psnr": 20.0 + seed, "sam": 9.0}}


def test_summary_and_paired_differences_golden_numbers():
    runs = [run("none", 1, 30.0, 5.0, False), run("none", 2, 31.0, 4.0, False), run("none", 3, 32.0, 4.5, False),
            run("a", 1, 30.5, 4.0), run("a", 2, 31.7, 3.5), run("a", 3, 32.3, 4.0), run("b", 2, 33.0, 4.0)]
    summary = kd.summarise(runs, ["psnr", "sam"])
    assert list(summary) == ["none", "a", "b", "teacher (a)", "teacher (b)", "bicubic"]
    assert summary["none"]["psnr"]["mean"] == pytest.approx(31.0) and summary["none"]["psnr"]["std"] == pytest.approx(1)
    assert summary["bicubic"]["psnr"]["per_seed"] == {"1": 21.0, "2": 22.0, "3": 23.0}
    assert summary["b"]["psnr"] == {"mean": 33.0, "std": None, "per_seed": {"2": 33.0}}  # one seed: no std
    paired = kd.paired_vs_none(runs, ["psnr", "sam"])
    assert set(paired) == {"a", "b"}
    # a − none per seed: PSNR +0.5, +0.7, +0.3 → mean 0.5, sample std 0.2; SAM −1.0, −0.5, −0.5 → −2/3, √(1/12)
    assert paired["a"]["psnr"]["mean"] == pytest.approx(0.5) and paired["a"]["psnr"]["std"] == pytest.approx(0.2)
    assert paired["a"]["sam"]["mean"] == pytest.approx(-2 / 3) and paired["a"]["sam"]["std"] == pytest.approx(
        (1 / 12) ** 0.5)
    b = paired["b"]["psnr"]
    assert (b["mean"], b["std"], b["per_seed"], b["ci95"], b["n"]) == (2.0, None, {"2": 2.0}, None, 1)  # shared seed
    assert kd.paired_vs_none([r for r in runs if r["spec"] != "none"], ["psnr"]) == {}


def test_control_pairs_a_spec_with_the_named_control_golden_numbers():
    """``--control SPEC=CONTROL``: spec − control per seed, beside (not instead of) the pairing with ``none``."""
    runs = [run("none", s, 30.0 + s, 5.0, False) for s in (1, 2, 3)]
    runs += [run("none:epochs=160", s, 32.0 + s + d, 4.0, False) for s, d in ((1, 0.0), (2, 0.5), (3, 0.5))]
    runs += [run("none:student_init=teacher", s, 33.0 + s, 3.5) for s in (1, 2, 3)]
    specs = ["none", "none:epochs=160", "none:student_init=teacher"]
    controls = kd.parse_controls(["none:student_init=teacher=none:epochs=160"], specs)
    assert controls == {"none:student_init=teacher": "none:epochs=160"}
    report = kd.build_report(kd.Bench("c.yaml", "out", ("psnr", "sam")), runs, "cmd", controls=controls)
    stat = report["paired_vs_control"]["none:student_init=teacher"]["psnr"]
    # 34−33, 35−34.5, 36−35.5 → 1.0, 0.5, 0.5: mean 2/3, sample std √(1/12), t(0.975, 2) = 4.302653
    assert stat["mean"] == pytest.approx(2 / 3) and stat["std"] == pytest.approx((1 / 12) ** 0.5)
    half = 4.302652729911275 * (1 / 12) ** 0.5 / 3 ** 0.5
    assert stat["ci95"] == pytest.approx([2 / 3 - half, 2 / 3 + half]) and stat["n_positive"] == 3
    assert stat["gap"]["mean"] == pytest.approx(5 / 3)  # its teacher (student + 1) over the control: 2, 1.5, 1.5
    assert report["paired_vs_none"]["none:student_init=teacher"]["psnr"]["mean"] == pytest.approx(3.0)
    assert "| none:student_init=teacher − none:epochs=160 | 3 | +0.67 ± 0.29 |" in kd.markdown_table(report)
    # inheritance alone tests no teacher: its gap is the shared frozen teacher's (the teacher run of its data seed)
    alone = [{**r, "teacher": None, "data_seed": 1} if r["spec"].endswith("teacher") else {**r, "data_seed": 1}
             for r in runs]
    shared = [{"spec": "csakd", "seed": 0, "data_seed": 1, "teacher": {"psnr": 33.0, "sam": 3.0}}]
    report = kd.build_report(kd.Bench("c.yaml", "out", ("psnr",)), alone, "cmd", teacher_runs=shared)
    psnr = report["paired_vs_none"]["none:student_init=teacher"]["psnr"]
    assert psnr["gap"]["mean"] == pytest.approx(1.0) and psnr["gap_fraction"] == pytest.approx(3.0)  # 33 − 32; 3/1
    assert report["runs"] == alone  # the records themselves are kept as they were
    for bad in (["none:student_init=teacher"], ["none=none"], ["x=none"]):
        with pytest.raises(kd.SpecError, match="--control"):
            kd.parse_controls(bad, specs)


def test_each_spec_is_paired_with_the_student_alone_of_its_recipe():
    """A distilled spec pairs with the ``none…`` spec whose settings agree but for what only a teacher reads."""
    step, cosine = {"lr": 1e-3, "student_lr_scheduler": "step"}, {"lr": 1e-3, "student_lr_scheduler": "cosine"}
    specs = {"none": {**step, "kd_mode": "none"}, "none:student_lr_scheduler=cosine": {**cosine, "kd_mode": "none"},
             "csakd:w_feat=0": {**step, "kd_mode": "online", "w_feat": 0.0},
             "csakd:student_lr_scheduler=cosine": {**cosine, "kd_mode": "online", "w_feat": 0.1},
             "csakd:lr=0.002": {**step, "lr": 2e-3, "kd_mode": "online"}}  # no partner of its recipe: none
    runs = [{**run(spec, seed, 30.0 + i + seed / 10, 4.0), "config": {**cfg, "seed": seed, "prefix": f"{i}{seed}"}}
            for i, (spec, cfg) in enumerate(specs.items()) for seed in (1, 2)]
    assert kd.paired_with(runs) == {"csakd:w_feat=0": "none", "csakd:lr=0.002": "none",
                                    "csakd:student_lr_scheduler=cosine": "none:student_lr_scheduler=cosine"}
    # a record made before a flag existed pairs as if it had the flag's default (here without a plain `none`)
    cosine_runs = [r for r in runs if "cosine" in r["spec"]]
    for r in cosine_runs:
        r["config"]["residual"] = False  # the default
        if r["spec"].startswith("csakd"):
            del r["config"]["residual"]
    assert kd.paired_with(cosine_runs) == {"csakd:student_lr_scheduler=cosine": "none:student_lr_scheduler=cosine"}
    paired = kd.paired_vs_none(runs, ["psnr"])
    assert paired["csakd:student_lr_scheduler=cosine"]["psnr"]["mean"] == pytest.approx(2.0)  # 33.x − 31.x
    assert paired["csakd:w_feat=0"]["psnr"]["mean"] == pytest.approx(2.0)  # 32.x − 30.x
    table = kd.markdown_table(kd.build_report(kd.Bench("c.yaml", "out", ("psnr",)), runs, "cmd"))
    row = "| csakd:student_lr_scheduler=cosine | 2 | 33.15 ± 0.07 | +2.00 ± 0.00 | none:student_lr_scheduler=cosine |"
    assert row in table


def test_spec_to_training_flags():
    assert kd.parse_spec("none:epochs=3").train_values() == {"kd_mode": "none", "epochs": "3"}
    spec = kd.parse_spec("csakd:w_feat=0,deterministic=false,misreg=1 2,grad_checkpoint=true")
    assert spec.train_values() == {"kd_strategy": "csakd", "w_feat": "0", "deterministic": False,
                                   "misreg": ["1", "2"], "grad_checkpoint": True}
    assert kd.run_name(spec, 3) == "csakd_w_feat=0_deterministic=false_misreg=1_2_grad_checkpoint=true_seed3"


def test_seed_field_gives_each_run_its_own_value(tmp_path):
    spec = kd.parse_spec("csakd:kd_mode=offline,teacher_ckpt=t/seed{seed}/best.pth,epochs={seed}")
    assert spec.train_values(seed=2) == {"kd_strategy": "csakd", "kd_mode": "offline",
                                         "teacher_ckpt": "t/seed2/best.pth", "epochs": "2"}
    assert spec.train_values()["teacher_ckpt"] == "t/seed{seed}/best.pth"  # no seed: as written
    bench = kd.Bench("c.yaml", str(tmp_path), ("psnr",))
    values = bench.train_values(spec, 7)
    assert values["teacher_ckpt"] == "t/seed7/best.pth" and values["seed"] == "7"


@pytest.mark.parametrize(("specs", "message"), [
    (["csakd:w_fet=0"], "unknown training flag 'w_fet' (did you mean 'w_feat'?)"),
    (["csakd:w_feat"], "'w_feat' is not flag=value"),
    (["hkdsr"], "unknown strategy 'hkdsr'"),
    (["csakd:seed=3"], "flag 'seed' is set by the bench itself"),
    (["none:kd_mode=online"], "flag 'kd_mode' is set by the bench itself"),
    (["csakd:w_feat=abc"], "flag 'w_feat': invalid value 'abc'"),
    (["csakd:kd_mode=teacher"], "flag 'kd_mode' = 'teacher'; expected one of"),
    (["csakd:deterministic=maybe"], "flag 'deterministic' is a switch"),
    (["none", "none"], "given more than once"),
])
def test_bad_specs_end_with_one_clear_message(tmp_path, capsys, specs, message):
    assert kd.main(bench_argv(tmp_path, *specs)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("benchmarks.kd: error: --strategies") and message in err and "\n" not in err
    assert not (tmp_path / "bench").exists() and not (tmp_path / "kd.json").exists()  # nothing written


@pytest.mark.parametrize(("teacher", "message"), [("none", "the shared teacher is trained online"),
                                                  ("csakd:kd_mode=offline", "the shared teacher is trained online"),
                                                  ("csakd:w_fet=1", "--teacher_spec: --strategies 'csakd:w_fet=1'")])
def test_a_bad_shared_teacher_spec_ends_with_one_clear_message(tmp_path, capsys, teacher, message):
    argv = [*bench_argv(tmp_path, "none", "csakd:kd_mode=offline"), "--teacher_spec", teacher]
    assert kd.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("benchmarks.kd: error:") and message in err and "\n" not in err
    assert not (tmp_path / "bench").exists()


def test_ci_sign_count_and_gap_fraction_against_hand_computed_values():
    """Δ = +0.5, +0.7, +0.3 (mean 0.5, s 0.2, n 3): CI = 0.5 ± t(0.975, 2)·0.2/√3, t(0.975, 2) = 4.302653 (table);
    teacher gaps 1.0, 1.0, 1.6 dB (mean 1.2): fraction 0.5/1.2; SAM Δ −1.0, −0.5, −0.5: no seed positive."""
    runs = [run("none", 1, 30.0, 5.0, False), run("none", 2, 31.0, 4.0, False), run("none", 3, 32.0, 4.5, False),
            run("a", 1, 30.5, 4.0), run("a", 2, 31.7, 3.5), run("a", 3, 32.3, 4.0)]
    runs[-1]["teacher"]["psnr"] = 33.6  # teacher − alone: 31.0 − 30.0, 32.0 − 31.0, 33.6 − 32.0
    runs[-2]["teacher"]["psnr"], runs[-3]["teacher"]["psnr"] = 32.0, 31.0
    psnr = kd.paired_vs_none(runs, ["psnr", "sam"])["a"]["psnr"]
    half = 4.302653 * 0.2 / 3 ** 0.5
    assert psnr["ci95"] == pytest.approx([0.5 - half, 0.5 + half], abs=1e-6)
    assert psnr["n_positive"] == 3 and psnr["n"] == 3
    assert psnr["gap"]["per_seed"] == pytest.approx({"1": 1.0, "2": 1.0, "3": 1.6})
    assert psnr["gap"]["mean"] == pytest.approx(1.2) and psnr["gap_fraction"] == pytest.approx(0.5 / 1.2)
    sam = kd.paired_vs_none(runs, ["psnr", "sam"])["a"]["sam"]
    assert sam["n_positive"] == 0 and sam["gap"]["mean"] == pytest.approx(-(5.0 - 4.0 + 4.0 - 3.5 + 4.5 - 4.0) / 3)
    assert sam["gap_fraction"] == pytest.approx((-2 / 3) / sam["gap"]["mean"])  # lower is better: a negative lead
    worse = kd.paired_stats({"1": -0.2, "2": 0.1}, {"1": -0.5, "2": 0.3})  # the teacher trails on average
    assert worse["gap"]["mean"] == pytest.approx(-0.1) and worse["gap_fraction"] is None
    assert kd.t_interval([1.0]) is None and kd.t_interval([1.0, 3.0]) == pytest.approx([2 - 12.706205, 2 + 12.706205])
    report = kd.build_report(kd.Bench("c.yaml", "out", ("psnr", "sam")), runs, "cmd")
    assert report["paired_sigma"] == {"a": pytest.approx(0.2)}
    line = next(li for li in kd.markdown_table(report).splitlines() if li.startswith("| a − none |"))
    assert f"[{0.5 - half:+.2f}, {0.5 + half:+.2f}]" in line and "3/3" in line and "0/3" in line and "42%" in line


def test_data_seeds_key_the_runs_and_pair_within_a_data_seed():
    runs = [{**run(spec, seed, 30.0 + ds + (spec == "a") * seed / 10, 4.0, spec == "a"), "data_seed": ds}
            for spec in ("none", "a") for ds in (5, 6) for seed in (1, 2)]
    paired = kd.paired_vs_none(runs, ["psnr"])["a"]["psnr"]
    assert paired["per_seed"] == pytest.approx({"5/1": 0.1, "5/2": 0.2, "6/1": 0.1, "6/2": 0.2})
    assert kd.run_name(kd.parse_spec("none"), 2, 6) == "none_data6_seed2"
    values = kd.Bench("c.yaml", "out", ("psnr",)).train_values(kd.parse_spec("none"), 2, 6)
    assert values["data_seed"] == "6" and values["seed"] == "2"


def test_bench_with_a_shared_frozen_teacher_end_to_end_and_resumed(tmp_path, monkeypatch):
    """Two data seeds × two init seeds: one teacher run per data seed (trained on demand), shared by both init seeds
    and both offline specs; a stopped bench resumed trains only the missing runs; a retrained teacher retrains the
    students distilled from it."""
    specs = ("none", "csakd:kd_mode=offline", "csakd:kd_mode=offline,w_kd=0.5")
    argv = [*bench_argv(tmp_path, *specs), "--data_seeds", "3", "4"]
    trained: list[str] = []
    real_run_one = kd.run_one

    def counting(bench, spec, seed, cfg, data_seed=None):
        trained.append(kd.run_name(spec, seed, data_seed))
        if len(trained) == 5:  # stop the bench in its fifth run (after both teachers and the first students)
            raise kd.Interrupted(15, "stopped")
        return real_run_one(bench, spec, seed, cfg, data_seed)

    monkeypatch.setattr(kd, "run_one", counting)
    assert kd.main(argv) == 143
    assert trained[:2] == ["csakd_data3_seed0", "csakd_data4_seed0"]  # the teachers first
    trained.clear()
    monkeypatch.setattr(kd, "run_one", lambda *a, **k: trained.append(kd.run_name(a[1], a[2], a[4])) or
                        real_run_one(*a))
    assert kd.main(argv) == 0  # resumed: the teachers and the 2 finished students are not trained again
    assert len(trained) == 12 - 2 and not any(t.startswith("csakd_data") for t in trained)
    report = json.loads((tmp_path / "kd.json").read_text())
    assert [r["run"] for r in report["teacher_runs"]] == ["csakd_data3_seed0", "csakd_data4_seed0"]
    assert report["command"].startswith("python -m benchmarks.kd ")
    by = {r["run"]: r for r in report["runs"]}
    teacher3 = str(tmp_path / "bench" / "checkpoints" / "csakd_data3_seed0" / "teacher" / "best.pth")
    for name in ("csakd_kd_mode=offline_data3_seed1", "csakd_kd_mode=offline_w_kd=0.5_data3_seed2"):
        assert by[name]["config"]["teacher_ckpt"] == teacher3 and by[name]["config"]["data_seed"] == 3
        assert by[name][kd.TEACHER_KEY] == weights_digest(teacher3)
    # the frozen teacher is tested on each run's test split: the same numbers for every spec and init seed
    assert by["csakd_kd_mode=offline_data3_seed1"]["teacher"] == by["csakd_kd_mode=offline_w_kd=0.5_data3_seed2"][
        "teacher"] != by["csakd_kd_mode=offline_data4_seed1"]["teacher"]
    stats = report["paired_vs_none"]["csakd:kd_mode=offline"]["psnr"]
    assert set(stats["per_seed"]) == {"3/1", "3/2", "4/1", "4/2"} and len(stats["ci95"]) == 2
    assert "gap_fraction" in stats and stats["n"] == 4
    # a teacher file that changed: its students are trained again, nothing else
    Path(teacher3).write_bytes(Path(teacher3).read_bytes() + b"")  # same bytes: still finished
    trained.clear()
    assert kd.main(argv) == 0 and trained == []
    # the same teacher trained in another --out (its file stores other paths): its students are still finished
    held = read_checkpoint(teacher3)
    other_paths = {**held["config"], "checkpoint_dir": str(tmp_path / "elsewhere"), "log_dir": "elsewhere/runs"}
    torch.save({**held, "config": other_paths}, teacher3)
    assert kd.main(argv) == 0 and trained == []
    other = tmp_path / "bench" / "checkpoints" / "csakd_data4_seed0" / "teacher" / "best.pth"
    Path(teacher3).write_bytes(other.read_bytes())
    assert kd.main(argv) == 0
    assert sorted(trained) == sorted(n for n in by if "offline" in n and "data3" in n)


class _Held(torch.nn.Linear):
    """A tiny network with a description, as a weight file saves it (``model_config``)."""

    def __init__(self, weight: float, residual: bool = False) -> None:
        super().__init__(2, 1, bias=False)
        self.residual = residual
        torch.nn.init.constant_(self.weight, weight)

    def model_config(self) -> dict:
        return {"role": "teacher", "residual": self.residual}


def test_a_frozen_teacher_counts_by_its_weights_and_records_of_its_file_digest_still_read(tmp_path):
    """A teacher re-saved in another folder (other stored paths: other bytes) keeps the students distilled from it;
    other tensors or another network description retrain them; a record written before, which holds the file's
    SHA-256, is reused while the file has those bytes and retrained otherwise, never matched by its weights."""
    bench = kd.Bench("c.yaml", str(tmp_path), ("psnr",))
    for role in ("student", "teacher"):
        (tmp_path / "results" / "r" / role).mkdir(parents=True)
        (tmp_path / "results" / "r" / role / "summary.json").write_text("{}")
    files = {"here": (_Held(1.0), "out1"), "moved": (_Held(1.0), "out2"), "retrained": (_Held(2.0), "out1"),
             "other_net": (_Held(1.0, residual=True), "out1")}
    for name, (net, out) in files.items():
        save_weights(tmp_path / out / f"{name}.pth", net, {"checkpoint_dir": out, "log_dir": f"{out}/runs"})

    def cfg(name: str) -> dict:
        return {**kd.flag_defaults(), "kd_mode": "offline", "teacher_ckpt": str(tmp_path / files[name][1] /
                                                                                f"{name}.pth")}

    assert kd.file_digest(cfg("here")["teacher_ckpt"]) != kd.file_digest(cfg("moved")["teacher_ckpt"])
    record = {"run": "r", "metrics_requested": ["psnr"], "config": cfg("here"), "init_streams": kd.INIT_STREAMS,
              kd.TEACHER_KEY: weights_digest(cfg("here")["teacher_ckpt"])}
    assert [kd._complete(bench, record, cfg(n)) for n in files] == [True, True, False, False]
    legacy = {**{k: v for k, v in record.items() if k != kd.TEACHER_KEY},
              kd.LEGACY_TEACHER_KEY: kd.file_digest(cfg("here")["teacher_ckpt"])}
    assert [kd._complete(bench, legacy, cfg(n)) for n in files] == [True, False, False, False]
    unknown = {k: v for k, v in record.items() if k != kd.TEACHER_KEY}  # no digest: never matches a read teacher
    assert [kd._complete(bench, unknown, cfg(n)) for n in files] == [False] * 4


def test_inheritance_specs_use_the_shared_teacher_and_pair_with_the_random_student_alone(tmp_path):
    bench = kd.Bench("c.yaml", str(tmp_path), ("psnr",))
    inherit = kd.parse_spec("none:student_init=teacher")
    assert inherit.shared_teacher and kd.parse_spec("csakd:kd_mode=offline,student_init=teacher").shared_teacher
    assert not kd.parse_spec("none").shared_teacher and not kd.parse_spec("csakd").shared_teacher
    assert bench.train_values(inherit, 3, 5)["teacher_ckpt"] == bench.shared_teacher(5)
    # no data seed: the data of seed 3, hence the teacher of data seed 3
    assert bench.train_values(inherit, 3)["teacher_ckpt"] == bench.shared_teacher(3)
    assert "csakd_data3_seed0" in bench.shared_teacher(3)
    cfgs = {"none": {"kd_mode": "none", "student_init": "random"},
            "none:student_init=teacher": {"kd_mode": "none", "student_init": "teacher", "teacher_ckpt": "t"},
            "csakd:kd_mode=offline,student_init=teacher": {"kd_mode": "offline", "student_init": "teacher"}}
    runs = [{**run(spec, seed, 30.0 + i + seed, 4.0, False), "config": {**cfg, "seed": seed}}
            for i, (spec, cfg) in enumerate(cfgs.items()) for seed in (1, 2)]
    # inheritance differs from the student alone in its recipe: paired with the plain `none`, never a baseline
    assert kd.paired_with(runs) == {"none:student_init=teacher": "none",
                                    "csakd:kd_mode=offline,student_init=teacher": "none"}
