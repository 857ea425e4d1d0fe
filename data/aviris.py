"""The official CSAKD dataset layout (AVIRIS, docs/csakd.md §1.2): split lists, file naming, reading, writing.

A split file lists one entry per line (e.g. ``train/Hama9_15``). Entry ``e`` under ``root`` is three files,
named by concatenating a suffix to the entry **without a separator** (official: ``dataset_joint`` in
dataset.py): ``<root>/<e>GT.npz.npy`` (H×W×C float GT, raw units), ``<root>/<e>hrmsi.npz`` (keys
``hrmsi4``, ``hrmsi6``, …: H×W×M in [0, 1]) and ``<root>/<e>lrhsi.npz`` (keys ``lrhsi`` aligned and
``lrhsi1..3`` misaligned: H/r×W/r×C in [0, 1]). The same three files inside a folder ``<root>/<e>/``
(named ``GT.npz.npy`` … or ``<basename>GT.npz.npy`` …) are accepted too. All arrays are channels-last.
An entry of an unlabelled list (``--unlabelled_file``) is the same without the GT file: the input pair only
(:func:`load_inputs`), H × W being the HR-MSI's.

``data.prepare`` writes this layout, so one reader serves the official data and simulated data.
"""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile

import numpy as np

from utils.fileio import atomic_write

from .formats import npz_member

SUFFIXES = {"gt": "GT.npz.npy", "hrmsi": "hrmsi.npz", "lrhsi": "lrhsi.npz"}
INPUTS = ("hrmsi", "lrhsi")  # an entry's input pair: all an unlabelled entry (--unlabelled_file) has


def lr_key(level: int) -> str:
    """Key of the LR-HSI with misalignment ``level`` in ``lrhsi.npz`` (0 → ``lrhsi``, k → ``lrhsi{k}``)."""
    return "lrhsi" if level == 0 else f"lrhsi{level}"


def msi_key(msi_bands: int) -> str:
    """Key of the ``msi_bands``-band HR-MSI in ``hrmsi.npz``."""
    return f"hrmsi{msi_bands}"


def resolve_split_path(path: str, root: str | None) -> str:
    """A split list path as given, else under ``root`` when only that exists."""
    if path and not os.path.exists(path) and root and os.path.exists(os.path.join(root, path)):
        return os.path.join(root, path)
    return path


DEFAULT_HINT = ("the official AVIRIS lists are configs/splits/aviris/*.txt; pass --train_file/--val_file/--test_file, "
                "or use dataset 'synthetic'")


def read_split(path: str, flag: str = "split file", root: str | None = None, hint: str | None = None) -> list[str]:
    """Entries of a split list (blank lines and ``#`` comments skipped); a missing or empty list raises.

    ``path`` is used as given, else looked up under ``root`` (``data.prepare`` writes the lists there); ``hint``:
    what a missing list should have been (default: the official AVIRIS lists).
    """
    path = resolve_split_path(path, root)
    if path and os.path.isdir(path):
        raise ValueError(f"{flag} {path}: is a folder; expected a split list file (one entry per line)")
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(f"{flag} {path!r}: no such file ({hint or DEFAULT_HINT})")
    with open(path, encoding="utf-8-sig") as f:  # a byte-order mark is not part of the first entry
        entries = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    if not entries:
        raise ValueError(f"{flag} {path}: the split is empty (expected one entry per line, e.g. 'train/Hama9_15')")
    return entries


def find_entry_files(root: str, entry: str, kinds: tuple[str, ...] = tuple(SUFFIXES)
                     ) -> tuple[dict[str, str], list[str]]:
    """Paths of the files ``kinds`` (default all three) of ``entry`` ({"gt"|"hrmsi"|"lrhsi": path}) and the paths
    that are missing.

    The flat official naming is tried first, then a per-entry folder.
    """
    flat = {k: os.path.join(root, entry + SUFFIXES[k]) for k in kinds}
    folder = os.path.join(root, entry)
    paths, missing = {}, []
    for k, s in ((k, SUFFIXES[k]) for k in kinds):
        candidates = [flat[k]]
        if os.path.isdir(folder):
            candidates += [
                os.path.join(folder, s),
                os.path.join(folder, os.path.basename(entry.rstrip("/")) + s),
            ]
        found = next((c for c in candidates if os.path.isfile(c)), None)
        if found is None:
            missing.append(flat[k] if len(candidates) == 1 else " or ".join(candidates))
        else:
            paths[k] = found
    return paths, missing


@dataclasses.dataclass(frozen=True)
class LayoutSpec:
    """What every entry must look like: C = ``bands``, M = ``msi_bands``, ratio ``scale``; HR images are
    cut to ``image_size``×``image_size`` (official: ``[:256, :256]``), 0 keeps the stored size."""

    bands: int
    msi_bands: int
    scale: int
    image_size: int = 0

    def cut_hr(self, a: np.ndarray) -> np.ndarray:
        return a[: self.image_size, : self.image_size] if self.image_size else a

    def cut_lr(self, a: np.ndarray) -> np.ndarray:
        s = self.image_size // self.scale
        return a[:s, :s] if self.image_size else a


def array_problems(name: str, what: str, a: np.ndarray, shape: tuple[int | None, ...]) -> list[str]:
    """Shape and finiteness problems of array ``a`` (``what`` in ``name``); None in ``shape`` = any size."""
    if a.ndim != len(shape):
        return [f"{name}: {what} has shape {a.shape}, expected {len(shape)}-D {_fmt(shape)}"]
    if any(e is not None and s != e for s, e in zip(a.shape, shape, strict=True)):
        return [f"{name}: {what} has shape {a.shape}, expected {_fmt(shape)}"]
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        return [f"{name}: {what} has dtype {a.dtype}, expected real numbers"]
    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
    return [f"{name}: {what} has {bad} NaN/Inf value(s)"] if bad else []


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"


def _npz_array(path: str, key: str, problems: list[str]) -> np.ndarray | None:
    try:
        with np.load(path) as z:
            if key not in z.files:
                problems.append(f"{path}: key {key!r} missing (found {sorted(z.files)})")
                return None
            return npz_member(z, key, path)
    except ValueError as e:
        problems.append(str(e) if str(e).startswith(path) else f"{path}: unreadable .npz ({e})")
        return None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        problems.append(f"{path}: unreadable .npz ({e})")
        return None


def load_entry(
    root: str, entry: str, spec: LayoutSpec, level: int = 0, problems: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Read and validate one entry: (GT (H, W, C) raw, HR-MSI (H, W, M), LR-HSI (H/r, W/r, C)), float32.

    HR arrays are cut to ``spec.image_size`` and the LR-HSI to ``image_size / scale``. With ``problems``
    given, every problem found is appended to it and None is returned on any; without it, the first
    check that fails raises one ValueError/FileNotFoundError listing all problems of the entry.
    """
    collect = problems is not None
    problems = problems if collect else []
    paths, missing = find_entry_files(root, entry)
    for m in missing:
        problems.append(f"entry {entry!r}: missing file {m}")
    gt = msi = lr = None
    if "gt" in paths:
        try:
            gt = np.load(paths["gt"], mmap_mode="r")
        except (OSError, ValueError, EOFError) as e:
            problems.append(f"{paths['gt']}: unreadable .npy ({e})")
    if "hrmsi" in paths:
        msi = _npz_array(paths["hrmsi"], msi_key(spec.msi_bands), problems)
    if "lrhsi" in paths:
        lr = _npz_array(paths["lrhsi"], lr_key(level), problems)
    n0 = len(problems)
    size_h = size_w = None
    if gt is not None:
        if gt.ndim == 3 and spec.image_size and min(gt.shape[:2]) < spec.image_size:
            problems.append(
                f"{paths['gt']}: GT is {gt.shape[0]}×{gt.shape[1]}, smaller than --image_size {spec.image_size}"
            )
        gt = np.asarray(spec.cut_hr(gt), dtype=np.float32) if gt.ndim == 3 else np.asarray(gt)
        problems += array_problems(paths["gt"], "GT", gt, (None, None, spec.bands))
        if gt.ndim == 3:
            size_h, size_w = gt.shape[:2]
            if size_h % spec.scale or size_w % spec.scale:
                problems.append(f"{paths['gt']}: GT size {size_h}×{size_w} is not divisible by the scale {spec.scale}")
            elif not problems[n0:] and float(gt.max()) == float(gt.min()):
                problems.append(f"{paths['gt']}: GT is constant ({float(gt.min())}), cannot be min-max normalised")
    msi, lr = _check_inputs(paths, spec, level, msi, lr, (size_h, size_w), problems)
    if problems:
        if collect:
            return None
        err = FileNotFoundError if missing and len(problems) == len(missing) else ValueError
        raise err("; ".join(problems))
    return gt, msi, lr


def _check_inputs(paths: dict[str, str], spec: LayoutSpec, level: int, msi: np.ndarray | None, lr: np.ndarray | None,
                  size: tuple[int | None, int | None], problems: list[str]
                  ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The HR-MSI and LR-HSI cut to ``spec.image_size`` as float32, their problems appended to ``problems``:
    the HR-MSI of HR ``size`` (None: any) and M bands, the LR-HSI of ``size / scale`` and C bands."""
    size_h, size_w = size
    if msi is not None:
        msi = np.asarray(spec.cut_hr(msi), dtype=np.float32) if msi.ndim == 3 else msi
        problems += array_problems(paths["hrmsi"], msi_key(spec.msi_bands), msi, (size_h, size_w, spec.msi_bands))
    if lr is not None:
        lr = np.asarray(spec.cut_lr(lr), dtype=np.float32) if lr.ndim == 3 else lr
        lr_hw = (None, None) if size_h is None else (size_h // spec.scale, size_w // spec.scale)
        problems += array_problems(paths["lrhsi"], f"{lr_key(level)} (ratio {spec.scale})", lr, (*lr_hw, spec.bands))
    return msi, lr


def load_inputs(root: str, entry: str, spec: LayoutSpec, level: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate the input pair of one entry without its GT (``--unlabelled_file``): (HR-MSI (H, W, M),
    LR-HSI (H/r, W/r, C)), float32, both in [0, 1] as stored, cut as :func:`load_entry` cuts them. The GT file is
    neither needed nor opened: H × W is the HR-MSI's (a full-resolution acquisition: no HR-HSI exists).

    Raises one FileNotFoundError (an input file missing) or ValueError listing every problem of the entry.
    """
    paths, missing = find_entry_files(root, entry, INPUTS)
    if missing:
        raise FileNotFoundError("; ".join(f"entry {entry!r}: missing file {m}" for m in missing))
    problems: list[str] = []
    msi = _npz_array(paths["hrmsi"], msi_key(spec.msi_bands), problems)
    lr = _npz_array(paths["lrhsi"], lr_key(level), problems)
    size: tuple[int | None, int | None] = (None, None)
    if msi is not None and msi.ndim == 3:
        if spec.image_size and min(msi.shape[:2]) < spec.image_size:
            problems.append(f"{paths['hrmsi']}: HR-MSI is {msi.shape[0]}×{msi.shape[1]}, smaller than --image_size "
                            f"{spec.image_size}")
        size = tuple(spec.cut_hr(msi).shape[:2])
        if size[0] % spec.scale or size[1] % spec.scale:
            problems.append(f"{paths['hrmsi']}: HR-MSI size {size[0]}×{size[1]} is not divisible by the scale "
                            f"{spec.scale}")
    msi, lr = _check_inputs(paths, spec, level, msi, lr, size, problems)
    if problems:
        raise ValueError("; ".join(problems))
    return msi, lr


# ----------------------------------------------------------------------------------------------------------
# writing (used by data.prepare): atomic, byte-reproducible


def _write_npz(f: io.BufferedWriter, arrays: dict[str, np.ndarray]) -> None:
    # np.savez stamps the current time into each zip member; a fixed date keeps re-runs byte-identical.
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with z.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(arrays[key]), allow_pickle=False)


def write_entry(
    root: str, entry: str, gt: np.ndarray, hrmsi: dict[int, np.ndarray], lrhsi: dict[int, np.ndarray]
) -> list[str]:
    """Write one entry in the flat official naming; returns the three paths (each written atomically).

    gt (H, W, C) raw units; hrmsi {M: (H, W, M)}; lrhsi {level: (H/r, W/r, C)}, float32, channels-last.
    """
    base = os.path.join(root, entry)
    paths = [base + SUFFIXES["gt"], base + SUFFIXES["hrmsi"], base + SUFFIXES["lrhsi"]]
    atomic_write(
        paths[0],
        lambda f: np.lib.format.write_array(f, np.ascontiguousarray(gt, np.float32), allow_pickle=False),
    )
    atomic_write(paths[1], lambda f: _write_npz(f, {msi_key(m): v.astype(np.float32) for m, v in hrmsi.items()}))
    atomic_write(paths[2], lambda f: _write_npz(f, {lr_key(k): v.astype(np.float32) for k, v in lrhsi.items()}))
    return paths
