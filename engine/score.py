"""Score fused pansharpened images made by anything (MATLAB toolboxes, other codebases) with the toolbox metrics:

    python test_CSAKD.py --score FUSED --reference REF --sensor S [--dim_cut N] [--json OUT] [--fused_key K]

REF is a PanCollection file (``data.pancollection``): with ``gt`` the reduced-resolution indices against it, without
``gt`` (``ms`` and ``pan``) the full-resolution ones, with ``lms`` as the upsampled MS (the interp23tap of ``ms``
when the file has none). A REF with ``gt`` only (no ``ms``, no ``pan``) is an HSI-fusion reference: the codebase's
HSI metrics (``utils.metrics``, both images mapped to [0, 1] with the GT's min/max as test_CSAKD.py does, ERGAS
ratio 4), and ``--sensor`` is not needed. FUSED holds one fused image per REF example, in DN: ``.mat`` H×W×C (one
example), ``.h5`` N×C×H×W, ``.npy`` N×C×H×W or C×H×W; a file of several arrays needs ``--fused_key``. Metrics
and conventions: ``engine.pansharpening_metrics``. The JSON is ``{"metrics": {name: mean}, "per_image": [...], ...}``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from data.formats import read_mat_arrays
from data.pancollection import read_examples
from data.resample import interp23tap
from data.sensors import SENSORS, get_sensor
from engine.options import DIM_CUT
from engine.pansharpening_metrics import FR_METRICS, RR_METRICS, describe_nan_blocks, score_image, summarise
from utils.defaults import SCALE
from utils.fileio import atomic_write_json
from utils.metrics import METRIC_NAMES, evaluate_batch, mean_metrics


def build_score_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test_CSAKD.py --score", description="Score fused pansharpened images "
                                     "against a PanCollection file with the toolbox metrics (docs/pansharpening.md).")
    parser.add_argument("--score", required=True, metavar="FUSED", help="fused images (.mat H×W×C, .h5 N×C×H×W, .npy)")
    parser.add_argument("--reference", required=True, metavar="REF", help="PanCollection .h5 / .mat file")
    parser.add_argument("--sensor", choices=list(SENSORS),
                        help="band count check and MTF gains (needed for pansharpening references)")
    parser.add_argument("--dim_cut", **DIM_CUT.argparse_kwargs())
    parser.add_argument("--fused_key", default=None, help="the array of FUSED to score when it holds several")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the metrics as JSON")
    return parser


def _pick_array(arrays: dict[str, np.ndarray], key: str | None, path: str, dims: tuple[int, ...]) -> np.ndarray:
    if key is not None:
        if key not in arrays:
            raise ValueError(f"{path}: no array {key!r} (found {sorted(arrays)})")
        return np.asarray(arrays[key])
    candidates = [k for k, v in arrays.items() if getattr(v, "ndim", 0) in dims]
    if len(candidates) != 1:
        what = "no image array" if not candidates else f"several image arrays {sorted(candidates)}"
        raise ValueError(f"{path}: {what}; pass --fused_key (arrays: {sorted(arrays)})")
    return np.asarray(arrays[candidates[0]])


def read_fused(path: str, key: str | None = None, flag: str = "--score") -> np.ndarray:
    """The fused images of ``path`` as N×C×H×W float64 (layouts in the module docstring); errors name ``flag``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{flag} {path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".mat":
            arr = _pick_array(read_mat_arrays(path), key, path, (3,))
            arr = np.moveaxis(arr, -1, 0)[None] if arr.ndim == 3 else arr
        elif ext in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                arr = _pick_array({k: f[k] for k in f if isinstance(f[k], h5py.Dataset)}, key, path, (4,))
        elif ext == ".npy":
            arr = np.load(path, allow_pickle=False)
            arr = arr[None] if arr.ndim == 3 else arr
        else:
            raise ValueError(f"{flag} {path}: unsupported extension {ext!r} (expected .mat, .h5 or .npy)")
    except (OSError, KeyError) as e:
        raise ValueError(f"{flag} {path}: cannot read ({e})") from None
    if arr.ndim != 4 or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{flag} {path}: found an array of shape {arr.shape} ({arr.dtype}), expected N×C×H×W numbers "
                         f"(.mat: H×W×C)")
    arr = np.asarray(arr, dtype=np.float64)
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise ValueError(f"{flag} {path}: {bad} NaN/Inf value(s) in the images")
    return arr


def stored_keys(path: str) -> list[str]:
    """The array names of a .h5 or .mat file (FileNotFoundError / ValueError naming ``--reference``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--reference {path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                return list(f.keys())
        if ext == ".mat":
            return list(read_mat_arrays(path))
    except (OSError, KeyError) as e:
        raise ValueError(f"--reference {path}: cannot read ({e})") from None
    raise ValueError(f"--reference {path}: unsupported extension {ext!r} (expected .h5 or .mat)")


def score_hsi(fused_path: str, reference_path: str, fused_key: str | None = None) -> dict:
    """HSI-fusion scores of ``fused_path`` against the ``gt`` of ``reference_path`` (``utils.metrics``, per image
    the GT's min/max normalisation, ERGAS ratio ``SCALE``)."""
    gt = read_fused(reference_path, "gt", flag="--reference")
    fused = read_fused(fused_path, fused_key)
    _check_fused(fused, gt.shape, None, 0.0, fused_path)
    rows = []
    for i in range(gt.shape[0]):
        lo, hi = float(gt[i].min()), float(gt[i].max())
        if not hi > lo:
            raise ValueError(f"--reference {reference_path}: 'gt' of image {i} is constant ({lo}); nothing to score")
        p, g = (2 * (x[i : i + 1] - lo) / (hi - lo) - 1 for x in (fused, gt))  # the [-1, 1] domain
        rows.append({"image": i, **evaluate_batch(p, g, hi, lo, scale=SCALE)[0]})
    mean = mean_metrics([{k: r[k] for k in METRIC_NAMES} for r in rows])
    return {"mode": "hsi", "fused": fused_path, "reference": reference_path, "sensor": None, "ratio": SCALE,
            "images": len(rows), "metrics": mean,
            "counts": {"sam_zero_pixels": sum(r["sam_zero_pixels"] for r in rows)}, "per_image": rows}


def _check_fused(fused: np.ndarray, expected: tuple[int, ...], scale: float | None, peak: float, path: str) -> None:
    if fused.shape != expected:
        hint = ""
        if fused.shape[0] == expected[0] and fused.shape[1:] == (expected[2], expected[3], expected[1]):
            hint = " (it looks N×H×W×C: .h5 and .npy fused images are N×C×H×W)"
        raise ValueError(f"--score {path}: fused images of shape {fused.shape}, expected {expected} (the reference's "
                         f"N×C×H×W){hint}")
    if peak > 8 and np.abs(fused).max() <= 1.5:  # the reference is in DN, the fused image in [0, 1]
        raise ValueError(f"--score {path}: values in [{fused.min():.3g}, {fused.max():.3g}] while the reference is in "
                         f"DN (max {peak:.0f}): multiply the fused images by the sensor scale"
                         f"{f' ({scale:g})' if scale else ''} first; Q2n is wrong on [0, 1] data")


def score(fused_path: str, reference_path: str, sensor: str | None, dim_cut: int = 0,
          fused_key: str | None = None) -> dict:
    """The metrics of every fused image of ``fused_path`` against ``reference_path``:
    {"mode": "reduced"|"full"|"hsi", "metrics": {name: mean}, "per_image": [row], "nan_blocks": {key: sum}, ...}."""
    keys = stored_keys(reference_path)
    if "gt" in keys and "ms" not in keys and "pan" not in keys:
        return score_hsi(fused_path, reference_path, fused_key)
    if sensor is None:
        raise ValueError(f"--reference {reference_path} is a pansharpening file (keys {sorted(keys)}): --sensor is "
                         f"needed, one of {', '.join(SENSORS)}")
    s = get_sensor(sensor)
    ref, ratio = read_examples(reference_path)
    if ref["ms"].shape[1] != s.bands:
        raise ValueError(f"--reference {reference_path}: 'ms' has {ref['ms'].shape[1]} bands, --sensor {sensor} "
                         f"has {s.bands}")
    full = "gt" not in ref
    expected = ref["lms"].shape if "lms" in ref else (ref["ms"].shape[:2] + ref["pan"].shape[2:])
    truth = ref["pan"] if full else ref["gt"]
    fused = read_fused(fused_path, fused_key)
    _check_fused(fused, expected, s.scale, float(truth.max()), fused_path)
    rows = []
    for i in range(fused.shape[0]):
        try:
            if full:
                ms_up = ref["lms"][i] if "lms" in ref else interp23tap(ref["ms"][i], ratio)
                values = score_image(fused[i], ms_up=ms_up, pan=ref["pan"][i], gains=s.gnyq_ms, ratio=ratio)
            else:
                values = score_image(fused[i], gt=ref["gt"][i], ratio=ratio, dim_cut=dim_cut)
        except ValueError as e:  # sizes the toolbox cannot score: name the files
            raise ValueError(f"--score {fused_path} against {reference_path}, image {i}: {e}") from None
        rows.append({"image": i, **values})
    mean, counts = summarise(rows, FR_METRICS if full else RR_METRICS)
    return {"mode": "full" if full else "reduced", "fused": fused_path, "reference": reference_path, "sensor": sensor,
            "ratio": ratio, "dim_cut": 0 if full else dim_cut, "images": len(rows), "metrics": mean,
            "nan_blocks": counts, "per_image": rows}


def format_report(result: dict) -> str:
    names = list(result["metrics"])
    title = {"reduced": "reduced-resolution pansharpening", "full": "full-resolution pansharpening",
             "hsi": "HSI-fusion"}[result["mode"]]
    details = [f"{result['images']} image(s)"] + ([result["sensor"]] if result["sensor"] else [])
    if result["mode"] == "reduced":
        details.append(f"dim_cut {result['dim_cut']}")
    lines = [f"{title} metrics of {result['fused']} against {result['reference']} ({', '.join(details)})",
             f"{'image':<8}" + "".join(f"{n:>12}" for n in names)]
    for row in result["per_image"]:
        lines.append(f"{row['image']:<8}" + "".join(f"{row[n]:>12.6f}" for n in names))
    lines.append(f"{'mean':<8}" + "".join(f"{result['metrics'][n]:>12.6f}" for n in names))
    nan = describe_nan_blocks(result.get("nan_blocks", {}))
    if nan:
        lines.append(nan)
    if result.get("counts", {}).get("sam_zero_pixels"):
        lines.append(f"zero spectra (no angle, left out of SAM): {result['counts']['sam_zero_pixels']}")
    return "\n".join(lines)


def run_score(argv: list[str]) -> int:
    """``test_CSAKD.py --score ...``: print the table, write ``--json``; raises ValueError / FileNotFoundError."""
    args = build_score_parser().parse_args(argv)
    result = score(args.score, args.reference, args.sensor, args.dim_cut, args.fused_key)
    print(format_report(result))
    if args.json:
        atomic_write_json(args.json, result)
    return 0
