"""``python -m benchmarks.kd`` on pansharpening data: end to end on tiny built-in WV3-like scenes (the student alone
and PSDNet's distillation), and the report's rows, pairs and directions on hand-made records (golden numbers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_train_run import TINY_YAML as TRAIN_TINY_YAML

import benchmarks.kd as kd

pytestmark = pytest.mark.usefixtures("one_thread")

# 64-px scenes: reduced-resolution examples of 16×16 (MS 4×4), full-resolution pairs of PAN 64×64 (MS 16×16), the
# smallest sizes the toolbox scores (Q2n ≥ 16 px; FR sides multiples of 32). Q_avg (32-px window) is left out.
TINY_PAN_YAML = (TRAIN_TINY_YAML.replace("dataset: synthetic\n", "dataset: synthetic_pan\nsensor: WV3\n")
                 .replace("msi_bands: 2", "msi_bands: 1").replace("image_size: 16", "image_size: 64")
                 .replace("tb_scenes: 1", "tb_scenes: 0") + "epochs: 1\n")
METRICS = "q2n,sam,ergas,scc,psnr"


def bench_argv(tmp_path: Path, *specs: str, metrics: str = METRICS) -> list[str]:
    config = tmp_path / "tiny_pan.yaml"
    config.write_text(TINY_PAN_YAML)
    return ["--config", str(config), "--strategies", *specs, "--seeds", "1", "2", "--json", str(tmp_path / "kd.json"),
            "--out", str(tmp_path / "bench"), "--metrics", metrics]


def test_pansharpening_bench_end_to_end_then_skips_finished_runs(tmp_path, monkeypatch):
    """The student alone and PSDNet's distillation: RR toolbox metrics for students and the privileged teacher, EXP
    instead of bicubic, every student tested again at full resolution, paired differences of both."""
    argv = bench_argv(tmp_path, "none", "psd")
    assert kd.main(argv) == 0
    report = json.loads((tmp_path / "kd.json").read_text())
    assert report["task"] == "pansharpening" and report["metrics"] == METRICS.split(",")
    assert list(report["summary"]) == ["none", "psd", "teacher (psd, privileged)", "exp", "none (full resolution)",
                                       "psd (full resolution)", "exp (full resolution)"]
    assert report["better"]["d_lambda"] == "lower" and report["better"]["hqnr"] == "higher"
    by = {(r["spec"], r["seed"]): r for r in report["runs"]}
    for (spec, _), r in by.items():
        results = tmp_path / "bench" / "results" / r["run"]
        rr = json.loads((results / "student" / "summary.json").read_text())
        fr = json.loads((results / "student_full" / "summary.json").read_text())
        assert rr["metrics"] == r["student"] and set(r["student"]) == set(METRICS.split(","))
        assert fr["config"]["resolution"] == "full" and fr["metrics"] == r["student_full"]
        assert set(r["student_full"]) >= {"d_lambda", "d_s", "qnr", "d_lambda_k", "hqnr"}
        assert r["baseline"] == "exp" and r["exp"] == rr["baselines"]["exp"] and r["exp_full"] == fr["baselines"]["exp"]
        assert r["teacher_privileged"] is (spec == "psd")
        assert (r["teacher"] is None) is (spec == "none")
    psd = report["paired_vs_none"]["psd"]
    for metric, row in (("q2n", "student"), ("hqnr", "student_full"), ("d_s", "student_full")):
        assert psd[metric]["per_seed"]["2"] == pytest.approx(by[("psd", 2)][row][metric] - by[("none", 2)][row][metric])
    assert "gap" in psd["q2n"] and "gap" not in psd["hqnr"]  # the teacher is not tested at full resolution
    table = (tmp_path / "kd.md").read_text()
    assert "| teacher (psd, privileged) | 2 |" in table and "| psd (full resolution) | 2 |" in table
    assert "| exp | 2 |" in table and "bicubic" not in table and "d_lambda ↓" in table
    assert (tmp_path / "kd.png").stat().st_size > 1000

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(kd, "run_one", no_training)
    assert kd.main(argv) == 0
    (tmp_path / "bench" / "results" / "psd_seed1" / "student_full" / "summary.json").unlink()
    with pytest.raises(AssertionError, match="trained again"):  # the full-resolution test is part of a run
        kd.main(argv)


@pytest.mark.parametrize(("specs", "metrics", "message"), [
    (("psd:resolution=full",), METRICS, "set by the bench itself"),
    ((), "q2n,q4", "unknown ['q4'] for pansharpening data"),
    ((), "rmse", "unknown ['rmse'] for pansharpening data"),
])
def test_pansharpening_bench_refuses_what_it_cannot_report(tmp_path, capsys, specs, metrics, message):
    """One line, before anything is trained: a spec setting the resolution (the bench tests both), metrics the
    pansharpening test does not give."""
    assert kd.main(bench_argv(tmp_path, "none", *specs, metrics=metrics)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bench" / "records").exists()


def record(spec: str, seed: int, q2n: float, hqnr: float, d_s: float, teacher: float | None = None,
           privileged: bool = False) -> dict:
    return {"spec": spec, "seed": seed, "student": {"q2n": q2n, "sam": 3.0}, "baseline": "exp",
            "exp": {"q2n": 0.8, "sam": 2.5}, "teacher": None if teacher is None else {"q2n": teacher, "sam": 2.0},
            "teacher_privileged": privileged, "task": "pansharpening", "student_full": {"hqnr": hqnr, "d_s": d_s},
            "exp_full": {"hqnr": 0.85, "d_s": 0.10}}


def test_pansharpening_report_golden_numbers():
    """Rows, pairs per metric in both resolutions, the teacher gap in the stated direction, the labels."""
    runs = [record("none", s, 0.80 + s / 100, 0.70, 0.20) for s in (1, 2, 3)]
    runs += [record("psd", s, 0.82 + s / 100, 0.70 + s / 100, 0.20 - s / 100, teacher=0.90, privileged=True)
             for s in (1, 2, 3)]
    runs += [record("csakd", s, 0.79 + s / 100, 0.75, 0.15, teacher=0.84) for s in (1, 2, 3)]
    bench = kd.Bench("c.yaml", "out", ("q2n", "sam"), task=kd.PANSHARPENING)
    report = kd.build_report(bench, runs, "cmd")
    assert list(report["summary"]) == ["none", "psd", "csakd", "teacher (psd, privileged)", "teacher (csakd)", "exp",
                                       "none (full resolution)", "psd (full resolution)", "csakd (full resolution)",
                                       "exp (full resolution)"]
    assert report["summary"]["exp (full resolution)"]["hqnr"]["mean"] == pytest.approx(0.85)
    psd, csakd = report["paired_vs_none"]["psd"], report["paired_vs_none"]["csakd"]
    assert psd["q2n"]["mean"] == pytest.approx(0.02) and psd["q2n"]["n_positive"] == 3
    assert psd["hqnr"]["per_seed"] == pytest.approx({"1": 0.01, "2": 0.02, "3": 0.03})
    assert psd["d_s"]["mean"] == pytest.approx(-0.02) and psd["d_s"]["n_positive"] == 0
    # teacher gap in Q2n (higher is better): psd's privileged teacher 0.90 − (0.81, 0.82, 0.83) = 0.08 on average
    assert psd["q2n"]["gap"]["mean"] == pytest.approx(0.08) and psd["q2n"]["gap_fraction"] == pytest.approx(0.25)
    assert csakd["q2n"]["gap_fraction"] == pytest.approx(-0.01 / 0.02)
    # SAM is lower-better: both teachers (2.0°) lead the student alone (3.0°), whose gap is −1 → a fraction of 0
    assert csakd["sam"]["gap"]["mean"] == pytest.approx(-1.0) and csakd["sam"]["gap_fraction"] == pytest.approx(0.0)
    assert report["paired_sigma_metric"] == "q2n" and report["paired_sigma"]["psd"] == pytest.approx(0.0, abs=1e-12)
    table = kd.markdown_table(report)
    assert "| psd (full resolution) | 3 |" in table and "| teacher (psd, privileged) | 3 |" in table
    assert "| csakd − none | 3 |" in table and "teacher gap Q2N" in table
    assert "spec vs its student alone (full resolution)" in table
    assert "Better: q2n ↑, sam ↓, d_lambda ↓, d_s ↓, qnr ↑, d_lambda_k ↓, hqnr ↑" in table
    assert kd.PRIVILEGED_NOTE in table and kd.FULL_NOTE in table
