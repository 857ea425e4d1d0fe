"""``python -m benchmarks.run`` end to end on a tiny configuration (no timing is asserted)."""

from __future__ import annotations

import json

import pytest

from benchmarks.run import main
from utils.cpu import describe as describe_cpu

TINY_YAML = """\
bands: 8
msi_bands: 3
num_base_chs: 8
num_agg_feat: 4
student_layers: "1221"
adaptive_fuse: 3
"""


pytestmark = pytest.mark.usefixtures("one_thread")


def test_benchmark_runs_end_to_end(tmp_path, capsys) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    out = tmp_path / "bench.json"
    argv = ["--no_paper", "--config", str(config), "--threads", "1", "--matmul_size", "64", "--image_size", "32",
            "--repeats", "2", "--batch_size", "2", "--crop_size", "32", "--train_steps", "1", "--data_scenes", "2",
            "--data_samples", "4", "--scene_sizes", "16", "--tile", "8", "--overlap", "2", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    for title in ("fp32 matmul", "networks, batch 1", "fast-path candidates", "co-training step", "data loading",
                  "scene inference"):
        assert title in printed

    assert report["machine"].startswith(describe_cpu())  # CPU model, capability, native bf16/fp16
    assert report["peak"]["peak"] == max(report["peak"]["torch_mm"], report["peak"].get("onednn", 0))
    nets = {(r["network"]): r for r in report["networks"]}
    assert set(nets) == {"teacher", "student"}
    for r in nets.values():
        assert r["params"] > 0 and r["macs"] > 0
        assert r["fast_max_abs_diff"] < 1e-5  # the fast path computes the reference's outputs
        for path in ("reference", "fast"):
            t = r[path]
            assert len(t["runs"]) == 2 and t["min"] <= t["median"] <= t["max"]
            assert t["gflops"] == pytest.approx(2 * r["macs"] / t["min"] / 1e9)

    for r in report["fastpath"]:  # four candidates, all the official form's outputs; the pick is one of them
        assert len(r["variants"]) == 4 and r["chosen"] in r["variants"] and r["fastest"] in r["variants"]
        assert all(t["max_abs_diff"] < 1e-5 for t in r["variants"].values())

    train = {r["variant"]: r for r in report["train"]}
    assert set(train) == {"reference", "fast", "checkpoint"}
    for r in train.values():  # the three variants take the same first step
        assert r["teacher_loss"] == pytest.approx(train["reference"]["teacher_loss"], abs=1e-5)
        assert r["student_loss"] == pytest.approx(train["reference"]["student_loss"], abs=1e-5)
        assert r["peak_mib"] > 0

    readers = [r["reader"] for r in report["data"]]
    assert any("official layout" in name for name in readers) and any("synthetic" in name for name in readers)
    assert all(r["samples_per_s"] > 0 for r in report["data"])
    assert [r["mode"] for r in report["tiling"]] == ["tiled", "whole image"]
    assert all(r["peak_mib"] > 0 and r["seconds"] > 0 for r in report["tiling"])


def test_benchmark_reports_a_bad_config(tmp_path, capsys) -> None:
    assert main(["--no_paper", "--config", str(tmp_path / "missing.yaml"), "--what", "networks"]) == 2
    assert "missing.yaml" in capsys.readouterr().err
