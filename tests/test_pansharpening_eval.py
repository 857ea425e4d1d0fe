"""Testing a network on pansharpening data (engine/evaluate.py, engine/testing.py): the toolbox indices in DN, the
EXP baseline, ``--metrics`` per resolution, predictions in DN that ``test_CSAKD.py --score`` scores alike, and the
summary that benchmarks.kd reads. The split is an in-test dataset that follows the pansharpening sample contract
(docs/pansharpening.md, "Testing a network on pansharpening data")."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import scipy.io
import torch
from torch import nn
from torch.utils.data import DataLoader

import test_CSAKD
from benchmarks import kd
from data.sample import FusionDataset, to_signed
from data.sensors import SENSORS
from engine import testing
from engine.evaluate import evaluate, scoring_for, to_raw_units
from engine.flags import build_test_parser
from engine.pansharpening_metrics import FR_METRICS, RR_METRICS, full_resolution, reduced_resolution
from tests.test_pansharpening_score import pancollection_pair

# As --img_range 2048: integer DN survive the float32 [-1, 1] samples exactly, so the reference files below hold
# the DN the samples encode without a rounding step.
IMG_RANGE = 2048.0
CFG = {"scale": 4, "warmup": 0, "seed": 0}
CPU = torch.device("cpu")


def norm(x: np.ndarray) -> torch.Tensor:
    """DN → the codebase's [-1, 1] domain, float32 (÷ the scale, then 2x − 1)."""
    return torch.from_numpy(to_signed(np.asarray(x) / IMG_RANGE))


def interp(lrhsi: torch.Tensor) -> torch.Tensor:
    """The 23-tap interpolation of a (C, h, w) or (B, C, h, w) [-1, 1] image, float32 (how the samples' lms are
    made, so that :class:`Interp23` reproduces them bit for bit)."""
    from data.resample import interp23tap

    if lrhsi.ndim == 4:
        return torch.stack([interp(x) for x in lrhsi])
    return torch.from_numpy(interp23tap(lrhsi.double().numpy(), 4).astype(np.float32))


class TinyPansharpening(FusionDataset):
    """QB-like test tiles of the contract: ``lrhsi`` = ms, ``hrmsi`` = pan, ``lms``, ``gt`` (reduced resolution
    only), ``maxv`` = the scale, ``minv`` = 0; arrays N×C×H×W in DN as :func:`pancollection_pair` makes them."""

    task, sensor, ratio = "pansharpening", "QB", 4

    def __init__(self, arrays: dict[str, np.ndarray], full: bool = False):
        super().__init__({"scale": 4}, "test")
        self.arrays, self.full = arrays, full

    def __len__(self) -> int:
        return len(self.arrays["ms"])

    def __getitem__(self, i: int) -> dict:
        ms = norm(self.arrays["ms"][i])
        sample = {"lrhsi": ms, "hrmsi": norm(self.arrays["pan"][i]), "lms": interp(ms), "name": f"tile{i}",
                  "maxv": IMG_RANGE, "minv": 0.0}
        if not self.full:
            sample["gt"] = norm(self.arrays["gt"][i])
        return sample


def loader(full: bool = False, size: int = 64, arrays: dict | None = None) -> DataLoader:
    arrays = arrays if arrays is not None else pancollection_pair(size, size, 4, 2)[0]
    return DataLoader(TinyPansharpening(arrays, full), batch_size=2)


class Interp23(nn.Module):
    """A "network" returning the 23-tap interpolated MS: exactly the EXP baseline."""

    def forward(self, lrhsi, hrmsi):
        return (interp(lrhsi),)


class Oracle(nn.Module):
    """A privileged "network" returning the GT it is given (reduced resolution only)."""

    privileged = True

    def forward(self, lrhsi, hrmsi, gt):
        return (gt.clone(),)


class PanCopy(nn.Module):
    """A "network" that puts the PAN in every band: flat wherever the PAN is."""

    def forward(self, lrhsi, hrmsi):
        return (hrmsi.expand(-1, 4, -1, -1).clone(),)


@pytest.mark.parametrize("full", [False, True], ids=["reduced", "full"])
def test_a_network_returning_the_lms_scores_exactly_the_exp_baseline(full):
    result = evaluate(Interp23(), loader(full), CFG, CPU)
    names = list(FR_METRICS if full else RR_METRICS)
    assert result["names"] == names and list(result["baselines"]) == ["exp"]
    assert result["metrics"] == result["baselines"]["exp"]
    assert all(math.isfinite(result["metrics"][k]) for k in names)
    counts = ["d_lambda_nan_blocks", "d_s_nan_blocks"] if full else []
    assert list(result["rows"][0]) == ["name", *names, *counts, *(f"exp_{k}" for k in (*names, *counts)), "time_ms"]
    if full:
        assert result["nan_blocks"] == {"d_lambda_nan_blocks": 0, "d_s_nan_blocks": 0}
    else:
        assert result["metrics"]["q2n"] < 0.99  # the interpolated MS is no perfect fusion


def test_an_oracle_returning_the_gt_is_perfect_at_reduced_resolution():
    m = evaluate(Oracle(), loader(), CFG, CPU)["metrics"]
    assert m["q2n"] == pytest.approx(1, abs=1e-12) and m["scc"] == pytest.approx(1, abs=1e-12)
    assert m["q_avg"] == pytest.approx(1, abs=1e-12) and m["ergas"] == 0 and m["psnr"] == math.inf
    assert m["sam"] == pytest.approx(0, abs=1e-5)


def test_the_privileged_teacher_cannot_be_tested_at_full_resolution():
    with pytest.raises(ValueError, match=r"privileged PSD teacher.*full-resolution data have none"):
        evaluate(Oracle(), loader(full=True), CFG, CPU)


def test_predictions_are_scored_in_dn_not_in_the_unit_range():
    arrays = pancollection_pair(64, 64, 4, 2)[0]
    rows = evaluate(Interp23(), loader(arrays=arrays), CFG, CPU)["rows"]
    for i, row in enumerate(rows):
        pred = interp(norm(arrays["ms"][i])).double().numpy()
        dn = reduced_resolution((pred + 1) / 2 * IMG_RANGE, arrays["gt"][i])  # float64 throughout
        for k in RR_METRICS:
            assert row[k] == pytest.approx(dn[k], rel=1e-6, abs=1e-6)
        unit = reduced_resolution((pred + 1) / 2, arrays["gt"][i] / IMG_RANGE)  # what scoring [0, 1] data gives
        assert row["q2n"] == pytest.approx(0.874, abs=1e-3) and unit["q2n"] < row["q2n"] - 0.2  # 0.61


def test_dim_cut_cuts_the_border_as_the_toolbox():
    arrays = pancollection_pair(64, 64, 4, 2)[0]
    row = evaluate(Interp23(), loader(arrays=arrays), {**CFG, "dim_cut": 4}, CPU)["rows"][0]
    pred = to_raw_units(interp(norm(arrays["ms"][0])), IMG_RANGE, 0.0).astype(np.float64)
    assert row == {**row, **reduced_resolution(pred, arrays["gt"][0], 4, dim_cut=4)}


def test_full_resolution_sides_not_multiples_of_32_are_one_clear_error():
    with pytest.raises(ValueError, match=r"tile0: full-resolution \(--resolution full\) image \(48, 48\): .*multiples "
                                         r"of the block size 32"):
        evaluate(Interp23(), loader(full=True, size=48), CFG, CPU)


def test_metrics_flag_is_checked_against_the_data():
    rr, fr = loader().dataset, loader(full=True).dataset
    assert scoring_for(rr, CFG, ["q2n", "sam"]).names == ["q2n", "sam"]
    with pytest.raises(ValueError, match="--metrics rmse,uiqi: not computed on reduced-resolution pansharpening data; "
                                         "choose from q2n,sam,ergas,scc,q_avg,psnr"):
        scoring_for(rr, CFG, ["q2n", "rmse", "uiqi"])
    with pytest.raises(ValueError, match="--metrics q2n: not computed on full-resolution pansharpening data; choose "
                                         "from d_lambda,d_s,qnr,d_lambda_k,hqnr"):
        scoring_for(fr, CFG, ["q2n"])
    hsi = FusionDataset({}, "test")  # no task attribute: HSI/MSI fusion
    with pytest.raises(ValueError, match="--metrics q2n,hqnr: pansharpening metrics, not computed on HSI fusion"):
        scoring_for(hsi, CFG, ["psnr", "q2n", "hqnr"])
    assert scoring_for(hsi, CFG).names == ["psnr", "sam", "ergas", "rmse", "ssim", "uiqi", "cc"]
    args = build_test_parser().parse_args(["--metrics", "q2n,d_s"])
    assert args.metrics == ["q2n", "d_s"] and build_test_parser().parse_args([]).metrics is None
    assert result_subset() == ["q2n", "sam"]


def result_subset() -> list[str]:
    return list(evaluate(Interp23(), loader(), CFG, CPU, metrics=["q2n", "sam"])["metrics"])


def reference_mat(path, arrays: dict, sample: dict, full: bool) -> str:
    """A per-example PanCollection .mat (H×W×C) of one test tile: gt and pan as the integer DN they are, ms and lms
    the DN the float32 samples encode."""
    dn = {"ms": to_raw_units(sample["lrhsi"], IMG_RANGE, 0.0), "lms": to_raw_units(sample["lms"], IMG_RANGE, 0.0)}
    ref = {"ms": dn["ms"].astype(np.float64).transpose(1, 2, 0), "lms": dn["lms"].astype(np.float64).transpose(1, 2, 0),
           "pan": arrays["pan"][1, 0]}
    if not full:
        ref["gt"] = arrays["gt"][1].transpose(1, 2, 0)
    scipy.io.savemat(path, ref)
    return str(path)


@pytest.mark.parametrize("full", [False, True], ids=["reduced", "full"])
def test_saved_predictions_in_dn_score_alike_with_score(full, tmp_path, capsys):
    arrays = pancollection_pair(64, 64, 4, 2)[0]
    data = loader(full, arrays=arrays)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    result = evaluate(PanCopy() if full else Interp23(), data, CFG, CPU, pred_dir=str(pred_dir))
    saved = scipy.io.loadmat(pred_dir / "tile1.mat")["pred"]
    assert saved.shape == (64, 64, 4) and saved.dtype == np.float32 and saved.max() > 500  # H×W×C, in DN
    reference = reference_mat(tmp_path / "ref.mat", arrays, data.dataset[1], full)
    out = tmp_path / "scores.json"
    code = test_CSAKD.main(["--score", str(pred_dir / "tile1.mat"), "--reference", reference, "--sensor", "QB",
                            "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    scored = json.loads(out.read_text())
    assert scored["mode"] == ("full" if full else "reduced")
    assert scored["metrics"] == {k: result["rows"][1][k] for k in result["names"]}


def flat_pan_tiles() -> dict[str, np.ndarray]:
    """Full-resolution tiles whose PAN is flat (700 DN) in its top-left 32×32 block."""
    arrays = pancollection_pair(64, 64, 4, 2)[0]
    arrays["pan"][:, :, :32, :32] = 700
    return arrays


def test_flat_blocks_are_kept_nan_and_counted():
    arrays = flat_pan_tiles()
    result = evaluate(PanCopy(), loader(full=True, arrays=arrays), CFG, CPU)
    ms_up = interp(norm(arrays["ms"][0])).double().numpy()
    direct = full_resolution(np.repeat(arrays["pan"][0], 4, axis=0), (ms_up + 1) / 2 * IMG_RANGE,
                             arrays["pan"][0], SENSORS["QB"].gnyq_ms)
    # 6 band pairs and 4 bands of a fused image flat in one block: Q(F_i, F_j) and Q(F_b, PAN) are 0/0
    assert (direct["d_lambda_nan_blocks"], direct["d_s_nan_blocks"]) == (6, 4)
    assert result["rows"][0]["d_lambda_nan_blocks"] == 6 and result["rows"][0]["d_s_nan_blocks"] == 4
    assert result["nan_blocks"] == {"d_lambda_nan_blocks": 12, "d_s_nan_blocks": 8}  # summed over the 2 tiles
    assert math.isnan(result["metrics"]["d_lambda"]) and math.isnan(result["metrics"]["qnr"])
    assert math.isfinite(result["metrics"]["d_lambda_k"])  # Q2n has no NaN
    assert result["baselines"]["exp"]["d_lambda_nan_blocks"] == 0


def test_summary_csv_and_table_of_a_pansharpening_test(tmp_path, monkeypatch, capsys):
    data = loader(full=True, arrays=flat_pan_tiles())
    monkeypatch.setattr(testing, "build_loader", lambda cfg, split, batch_size: data)
    cfg = {**CFG, "split": "test", "batch_size": 2, "metrics": None}
    summary = testing.evaluate_and_report(cfg, PanCopy(), "student", "a test network", CPU, str(tmp_path))
    out = capsys.readouterr().out
    assert "EXP (mean)" in out and "bicubic" not in out
    assert "flat blocks of the student (NaN, kept as the toolbox does): d_lambda_nan_blocks 12, d_s_nan_blocks 8" in out
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert list(on_disk["baselines"]) == ["exp"] and list(on_disk["metrics"])[:5] == list(FR_METRICS)
    assert on_disk["nan_blocks"] == {"d_lambda_nan_blocks": 12, "d_s_nan_blocks": 8}
    assert on_disk["config"]["metrics"] == list(FR_METRICS) and cfg["metrics"] is None
    with open(tmp_path / "per_image.csv") as f:
        header = next(csv.reader(f))
    assert header[:6] == ["name", *FR_METRICS] and "exp_hqnr" in header and not any("bicubic" in h for h in header)
    # benchmarks.kd takes the baseline under the name the test gave it
    assert kd.baseline_entry(summary) == {"baseline": "exp", "exp": summary["baselines"]["exp"]}
    records = [{"spec": "none", "seed": s, "student": {"q2n": 0.9 + s / 100}, "teacher": None,
                **kd.baseline_entry({"baselines": {"exp": {"q2n": 0.8}}})} for s in (1, 2)]
    assert kd.summarise(records, ["q2n"])["exp"]["q2n"] == {"mean": 0.8, "std": 0.0, "per_seed": {"1": 0.8, "2": 0.8}}
