"""``test_CSAKD.py --score`` end to end on tiny PanCollection-layout files the tests write, and the layout checks of
data/pancollection.py."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.io

import test_CSAKD
from data.pancollection import read_examples
from data.resample import interp23tap
from data.sensors import SENSORS, mtf_filter
from engine.pansharpening_metrics import full_resolution, reduced_resolution
from tests.test_pansharpening_metrics import GOLDEN_FR, GOLDEN_RR, TOL, fixture


def pancollection_pair(height: int = 64, width: int = 64, bands: int = 4, n: int = 2):
    """RR arrays N×C×H×W in DN as the toolbox simulates them: gt, ms = MTF + keep 2::4, lms = interp23tap(ms), pan;
    and fused images (the fixture's f). Example i is the fixture shifted by 7·i DN."""
    gt, fused, pan = (np.stack([a + 7 * i for i in range(n)]) for a in fixture(height, width, bands))
    gains = SENSORS["QB"].gnyq_ms
    ms = np.stack([mtf_filter(g, gains)[:, 2::4, 2::4] for g in gt])
    lms = np.stack([interp23tap(m) for m in ms])
    return {"gt": gt, "ms": ms, "lms": lms, "pan": pan}, fused


def write_h5(path, arrays):
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return str(path)


def run(argv, capsys):
    code = test_CSAKD.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_score_reduced_resolution_h5(tmp_path, capsys):
    ref, fused = pancollection_pair()
    reference = write_h5(tmp_path / "test_qb_multiExm1.h5", ref)
    np.save(tmp_path / "fused.npy", fused)
    out_json = tmp_path / "scores.json"
    code, out, err = run(["--score", tmp_path / "fused.npy", "--reference", reference, "--sensor", "QB",
                          "--json", out_json], capsys)
    assert code == 0, err
    result = json.loads(out_json.read_text())
    assert result["mode"] == "reduced" and result["images"] == 2
    assert list(result["metrics"]) == ["q2n", "sam", "ergas", "scc", "q_avg", "psnr"]
    for name, value in GOLDEN_RR[(64, 64, 4)].items():  # example 0 is the golden fixture
        assert result["per_image"][0][name] == pytest.approx(value, abs=TOL)
    direct = reduced_resolution(fused[1], ref["gt"][1])
    assert result["per_image"][1]["q2n"] == pytest.approx(direct["q2n"], abs=1e-15)
    assert result["metrics"]["sam"] == pytest.approx(np.mean([r["sam"] for r in result["per_image"]]), abs=1e-15)
    assert "q2n" in out and "mean" in out


def test_score_full_resolution_and_mat(tmp_path, capsys):
    ref, fused = pancollection_pair()
    fr = {"ms": ref["ms"], "lms": ref["gt"], "pan": ref["pan"]}  # MS↑ = gt: the golden FR case
    reference = write_h5(tmp_path / "test_qb_OrigScale_multiExm1.h5", fr)
    write_h5(tmp_path / "fused.h5", {"sr": fused})
    out_json = tmp_path / "fr.json"
    code, _, err = run(["--score", tmp_path / "fused.h5", "--reference", reference, "--sensor", "QB",
                        "--json", out_json], capsys)
    assert code == 0, err
    result = json.loads(out_json.read_text())
    assert result["mode"] == "full" and list(result["metrics"]) == ["d_lambda", "d_s", "qnr", "d_lambda_k", "hqnr"]
    for name, value in GOLDEN_FR[((64, 64, 4), "QB")].items():
        assert result["per_image"][0][name] == pytest.approx(value, abs=TOL)
    assert result["nan_blocks"] == {"d_lambda_nan_blocks": 0, "d_s_nan_blocks": 0}
    # per-example .mat (H×W×C) without lms: the MS is upsampled by interp23tap
    mat_ref = tmp_path / "Test_qb_data1.mat"
    scipy.io.savemat(mat_ref, {"ms": ref["ms"][1].transpose(1, 2, 0), "pan": ref["pan"][1, 0]})
    scipy.io.savemat(tmp_path / "fused.mat", {"I_F": fused[1].transpose(1, 2, 0)})
    code, _, err = run(["--score", tmp_path / "fused.mat", "--reference", mat_ref, "--sensor", "QB",
                        "--json", out_json], capsys)
    assert code == 0, err
    got = json.loads(out_json.read_text())["per_image"][0]
    direct = full_resolution(fused[1], ref["lms"][1], ref["pan"][1], SENSORS["QB"].gnyq_ms)
    assert got["hqnr"] == pytest.approx(direct["hqnr"], abs=1e-12)


def test_dim_cut(tmp_path, capsys):
    ref, fused = pancollection_pair(n=1)
    reference = write_h5(tmp_path / "ref.h5", ref)
    np.save(tmp_path / "fused.npy", fused[0])  # C×H×W: one example
    out_json = tmp_path / "cut.json"
    code, _, err = run(["--score", tmp_path / "fused.npy", "--reference", reference, "--sensor", "QB",
                        "--dim_cut", "5", "--json", out_json], capsys)
    assert code == 0, err
    direct = reduced_resolution(fused[0][:, 4:59, 4:59], ref["gt"][0][:, 4:59, 4:59])
    assert json.loads(out_json.read_text())["metrics"]["ergas"] == pytest.approx(direct["ergas"], abs=1e-15)


def one_error(argv, capsys) -> str:
    code, out, err = run(argv, capsys)
    assert code == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_inputs_are_one_clear_line(tmp_path, capsys):
    ref, fused = pancollection_pair()
    reference = write_h5(tmp_path / "ref.h5", ref)
    np.save(tmp_path / "unit.npy", fused / 2047)
    err = one_error(["--score", tmp_path / "unit.npy", "--reference", reference, "--sensor", "QB"], capsys)
    assert "unit.npy" in err and "multiply the fused images by the sensor scale (2047)" in err
    np.save(tmp_path / "hwc.npy", fused.transpose(0, 2, 3, 1)[:, :, :48])
    err = one_error(["--score", tmp_path / "hwc.npy", "--reference", reference, "--sensor", "QB"], capsys)
    assert "shape (2, 64, 48, 4), expected (2, 4, 64, 64)" in err
    np.save(tmp_path / "fused.npy", fused)
    err = one_error(["--score", tmp_path / "fused.npy", "--reference", reference, "--sensor", "WV3"], capsys)
    assert "'ms' has 4 bands, --sensor WV3 has 8" in err
    bad = fused.copy()
    bad[0, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    err = one_error(["--score", tmp_path / "nan.npy", "--reference", reference, "--sensor", "QB"], capsys)
    assert "nan.npy: 1 NaN/Inf value(s)" in err
    err = one_error(["--score", tmp_path / "missing.npy", "--reference", reference, "--sensor", "QB"], capsys)
    assert "missing.npy: no such file" in err
    transposed = write_h5(tmp_path / "whcn.h5", {k: v.transpose(3, 2, 1, 0) for k, v in ref.items()})
    err = one_error(["--score", tmp_path / "fused.npy", "--reference", transposed, "--sensor", "QB"], capsys)
    assert "whcn.h5: 'ms' has shape (16, 16, 4, 2)" in err and "transposed" in err


def test_unscorable_sizes_name_the_files(tmp_path, capsys):
    ref, fused = pancollection_pair(48, 48, n=1)
    fr = write_h5(tmp_path / "fr48.h5", {k: ref[k] for k in ("ms", "lms", "pan")})
    np.save(tmp_path / "f48.npy", fused)
    err = one_error(["--score", tmp_path / "f48.npy", "--reference", fr, "--sensor", "QB"], capsys)
    assert "f48.npy against" in err and "fr48.h5, image 0: d_lambda: the image is 48×48" in err
    rr = write_h5(tmp_path / "rr48.h5", ref)
    err = one_error(["--score", tmp_path / "f48.npy", "--reference", rr, "--sensor", "QB", "--dim_cut", "17"], capsys)
    assert "q2n: a 15×15 image cannot be scored" in err


def test_reader_layout_checks(tmp_path):
    """N×C×H×W orientation on a non-square example, the transposed file refused, a PAN of several bands refused."""
    ref, _ = pancollection_pair(64, 48)
    arrays, ratio = read_examples(write_h5(tmp_path / "ok.h5", ref))
    assert ratio == 4 and arrays["ms"].shape == (2, 4, 16, 12) and arrays["pan"].shape == (2, 1, 64, 48)
    np.testing.assert_array_equal(arrays["gt"], ref["gt"])
    swapped = {**ref, "gt": ref["gt"].transpose(0, 1, 3, 2)}
    with pytest.raises(ValueError, match=r"'gt' has shape \(2, 4, 48, 64\), expected \(2, 4, 64, 48\)"):
        read_examples(write_h5(tmp_path / "swapped.h5", swapped))
    with pytest.raises(ValueError, match=r"'pan' has shape \(2, 4, 64, 48\), expected 2×1×H×W"):
        read_examples(write_h5(tmp_path / "pan4.h5", {**ref, "pan": ref["gt"]}))
    with pytest.raises(ValueError, match=r"channels.h5: 'ms' has shape \(2, 16, 12, 4\).*axis 3"):
        read_examples(write_h5(tmp_path / "channels.h5", {k: v.transpose(0, 2, 3, 1) for k, v in ref.items()}))


def test_lazy_reader(tmp_path):
    """Per-index reads, ÷ the sensor scale (or --img_range), float32, the N×C×H×W orientation of a 64×48 example,
    an FR twin without gt, and a reader that survives pickling (DataLoader workers)."""
    import pickle

    from data.pancollection import PanCollectionFile

    ref, _ = pancollection_pair(64, 48)
    path = write_h5(tmp_path / "rr.h5", ref)
    f = PanCollectionFile(path, sensor="QB")
    assert (len(f), f.ratio, f.bands, f.full, f.keys, f.scale) == (2, 4, 4, False, ("gt", "ms", "lms", "pan"), 2047.0)
    item = f[1]
    assert item["gt"].shape == (4, 64, 48) and item["ms"].shape == (4, 16, 12) and item["pan"].shape == (1, 64, 48)
    assert item["gt"].dtype == np.float32
    np.testing.assert_allclose(item["gt"], ref["gt"][1] / 2047, rtol=1e-6)
    np.testing.assert_allclose(item["lms"], ref["lms"][1] / 2047, rtol=1e-6)  # not clipped
    clone = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(clone[0]["pan"], f[0]["pan"])
    f.close()
    np.testing.assert_allclose(PanCollectionFile(path, scale=1023.0)[0]["ms"], ref["ms"][0] / 1023, rtol=1e-6)
    fr = PanCollectionFile(write_h5(tmp_path / "fr.h5", {k: ref[k] for k in ("ms", "lms", "pan")}), sensor="QB")
    assert fr.full and fr.keys == ("ms", "lms", "pan")
    with pytest.raises(IndexError):
        fr.example(2)
    with pytest.raises(ValueError, match=r"rr\.h5: 'ms' has 4 bands, --sensor WV2 has 8"):
        PanCollectionFile(path, sensor="WV2")
    with pytest.raises(ValueError, match="no scale for IKONOS: pass --img_range"):
        PanCollectionFile(path, sensor="IKONOS")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match=r"junk\.h5: cannot read"):
        PanCollectionFile(str(junk))


def test_score_hsi_fusion_reference(tmp_path, capsys):
    """A reference with gt only: the HSI metrics of utils.metrics, as test_CSAKD.py scores a network."""
    import torch

    from utils.metrics import evaluate_batch

    gt, fused, _ = fixture(32, 40, 6)
    scipy.io.savemat(tmp_path / "ref.mat", {"gt": gt.transpose(1, 2, 0)})
    np.save(tmp_path / "fused.npy", fused)
    out_json = tmp_path / "hsi.json"
    code, out, err = run(["--score", tmp_path / "fused.npy", "--reference", tmp_path / "ref.mat",
                          "--json", out_json], capsys)
    assert code == 0, err
    result = json.loads(out_json.read_text())
    lo, hi = gt.min(), gt.max()
    expected = evaluate_batch(torch.from_numpy(2 * (fused[None] - lo) / (hi - lo) - 1),
                              torch.from_numpy(2 * (gt[None] - lo) / (hi - lo) - 1), hi, lo, scale=4)[0]
    assert result["mode"] == "hsi" and list(result["metrics"]) == ["psnr", "sam", "ergas", "rmse", "ssim", "uiqi", "cc"]
    for name in result["metrics"]:
        assert result["metrics"][name] == pytest.approx(expected[name], rel=1e-12), name
    assert "HSI-fusion metrics" in out
    ref, _ = pancollection_pair()
    reference = write_h5(tmp_path / "pan.h5", ref)
    err = one_error(["--score", tmp_path / "fused.npy", "--reference", reference], capsys)
    assert "pan.h5 is a pansharpening file" in err and "--sensor is needed" in err
