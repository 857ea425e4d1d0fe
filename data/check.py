"""``python -m data.check <root> --split <file>``: scan a dataset in the official layout, report every problem.

Checks each entry of each split list: the three files exist (flat or per-entry folder), the keys
``hrmsi<M>`` and ``lrhsi`` (and ``lrhsi1..3`` when ``--mis_pix``/``--mixed_align_opt`` need them, or when
present) exist, shapes match ``--bands``, ``--msi_bands``, ``--scale`` and ``--image_size``, no NaN/Inf,
the GT is not constant, no GT band is constant (a dead, e.g. all-zero, band makes that band's PSNR −inf or NaN
and ERGAS inf), LR-HSI/HR-MSI values lie in [0, 1] up to ``--tol``, and no split is empty.
The split lists themselves: a folder given as a list, a UTF-8 byte-order mark, an entry listed twice,
an entry listed in two splits (leakage); entries with byte-identical ground truth and manifest inputs with the
same SHA-256 (one scene given twice); a missing root is one message, not one per entry.
All problems are printed (one line each); the exit code is 1 if there was any, 0 otherwise.
"""

from __future__ import annotations

import argparse
import codecs
import hashlib
import json
import os
import sys
import zipfile
from collections import Counter

import numpy as np

from .aviris import (
    LayoutSpec,
    array_problems,
    find_entry_files,
    load_entry,
    lr_key,
    msi_key,
    read_split,
    resolve_split_path,
)
from .options import DATA_DEFAULTS


def _range_problems(name: str, what: str, a: np.ndarray, tol: float) -> list[str]:
    lo, hi = float(a.min()), float(a.max())
    if lo < -tol or hi > 1 + tol:
        return [f"{name}: {what} values span [{lo:.4g}, {hi:.4g}], expected [0, 1] (tolerance {tol})"]
    return []


def _constant_band_problems(name: str, gt: np.ndarray) -> list[str]:
    """GT bands (last axis of H×W×C) whose pixels are all equal: they break PSNR, ERGAS and CC."""
    flat = gt.reshape(-1, gt.shape[-1])
    constant = np.flatnonzero(flat.max(axis=0) == flat.min(axis=0))
    if not constant.size or constant.size == flat.shape[1]:  # a wholly constant GT is reported by load_entry
        return []
    listed = ", ".join(f"{b} (= {flat[0, b]:.4g})" for b in constant[:10]) + (" ..." if constant.size > 10 else "")
    return [f"{name}: GT has {constant.size} constant band(s), 0-based: {listed}; their PSNR is -inf or NaN and "
            f"ERGAS inf (expected every band to vary; drop dead bands or fix the file)"]


def check_entry(root: str, entry: str, spec: LayoutSpec, levels_needed: tuple[int, ...], tol: float) -> list[str]:
    """Every problem of one entry, as messages naming the file and what is wrong."""
    problems: list[str] = []
    loaded = load_entry(root, entry, spec, 0, problems=problems)
    if loaded is not None:
        gt, msi, lr = loaded
        paths, _ = find_entry_files(root, entry)
        problems += _constant_band_problems(paths["gt"], gt)
        problems += _range_problems(paths["hrmsi"], msi_key(spec.msi_bands), msi, tol)
        problems += _range_problems(paths["lrhsi"], "lrhsi", lr, tol)
        try:
            with np.load(paths["lrhsi"]) as z:
                for k in (1, 2, 3):
                    key = lr_key(k)
                    if key not in z.files:
                        if k in levels_needed:
                            problems.append(f"{paths['lrhsi']}: key {key!r} missing (found {sorted(z.files)})")
                        continue
                    a = spec.cut_lr(z[key])
                    found = array_problems(paths["lrhsi"], key, a, lr.shape)
                    problems += found or _range_problems(paths["lrhsi"], key, a, tol)
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            problems.append(f"{paths['lrhsi']}: unreadable .npz ({e})")
    return problems


def _listed(items: list[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def split_list_problems(path: str, entries: list[str]) -> list[str]:
    """Problems of a split list file itself: a UTF-8 byte-order mark, entries listed more than once."""
    problems = []
    with open(path, "rb") as f:
        if f.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8:
            problems.append(f"{path}: starts with a UTF-8 byte-order mark (this code skips it; other readers take "
                            f"it as part of the first entry); save the file without BOM")
    repeated = [e for e, c in Counter(entries).items() if c > 1]
    if repeated:
        problems.append(f"{path}: {len(repeated)} entr{'y' if len(repeated) == 1 else 'ies'} listed more than "
                        f"once ({_listed(repeated)}); each would count twice")
    return problems


def leakage_problems(lists: dict[str, list[str]]) -> list[str]:
    """Entries listed in more than one split file (the same image would be trained and evaluated on)."""
    problems, names = [], list(lists)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = sorted(set(lists[a]) & set(lists[b]))
            if both:
                problems.append(f"{a} and {b}: {len(both)} entr{'y' if len(both) == 1 else 'ies'} in both splits "
                                f"(leakage: {_listed(both)})")
    return problems


def check_dataset(
    root: str,
    split_files: list[str],
    spec: LayoutSpec,
    levels_needed: tuple[int, ...] = (),
    tol: float = 0.1,
    progress: bool = True,
) -> tuple[int, list[str]]:
    """Scan all entries of ``split_files`` under ``root``. Returns (entries checked, problems)."""
    if not os.path.isdir(root):
        return 0, [f"{root}: dataset root not found (no such folder)"]
    problems, n, lists = [], 0, {}
    for split in split_files:
        try:
            entries = read_split(split, flag="--split", root=root)
        except (FileNotFoundError, ValueError) as e:
            problems.append(str(e))
            continue
        path = resolve_split_path(split, root)
        lists[path] = entries
        problems += split_list_problems(path, entries)
        iterator = entries
        if progress:
            from tqdm import tqdm

            iterator = tqdm(entries, desc=split, unit="entry", file=sys.stderr)
        for entry in iterator:
            n += 1
            problems += check_entry(root, entry, spec, levels_needed, tol)
    return n, problems + leakage_problems(lists) + duplicate_scene_problems(root, lists)


def duplicate_scene_problems(root: str, lists: dict[str, list[str]]) -> list[str]:
    """Entries whose ground-truth files hold the same bytes (one scene given twice to ``data.prepare``, as a
    repeated path, a link or a renamed copy; or a copied entry), and inputs of ``<root>/manifest.json`` with the
    same SHA-256. Within one split they count twice; across splits a test image is trained on."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for split, entries in lists.items():
        for entry in dict.fromkeys(entries):  # an entry listed twice is split_list_problems' to report
            paths, _ = find_entry_files(root, entry)
            try:
                with open(paths["gt"], "rb") as f:
                    digest = hashlib.file_digest(f, "sha256").hexdigest()
            except OSError:
                continue  # missing or unreadable: check_entry reports it
            groups.setdefault(digest, []).append((os.path.basename(split), entry))
    same = [g for g in groups.values() if len({e for _, e in g}) > 1]
    problems = []
    if same:
        across = sum(len({s for s, _ in g}) > 1 for g in same)
        shown = _listed([" = ".join(f"{e} ({s})" for s, e in g) for g in same], 3)
        problems.append(f"{root}: {len(same)} group(s) of entries with identical ground truth ({shown}): one scene "
                        f"given twice (a repeated input, a link or a copy)" +
                        (f"; {across} of them span two splits (leakage)" if across else ""))
    return problems + _manifest_duplicates(root)


def _manifest_duplicates(root: str) -> list[str]:
    try:
        with open(os.path.join(root, "manifest.json"), encoding="utf-8") as f:
            inputs = json.load(f).get("inputs", [])
    except (OSError, ValueError, AttributeError):
        return []
    by_digest: dict[str, list[str]] = {}
    for item in inputs if isinstance(inputs, list) else []:
        if isinstance(item, dict) and item.get("sha256"):
            by_digest.setdefault(item["sha256"], []).append(str(item.get("scene")))
    return [f"{root}/manifest.json: scenes {', '.join(scenes)} come from inputs with the same SHA-256 "
            f"({digest[:16]}…): one scene counted as {len(scenes)}" for digest, scenes in by_digest.items()
            if len(scenes) > 1]


def main(argv: list[str] | None = None) -> int:
    d = DATA_DEFAULTS
    p = argparse.ArgumentParser(prog="python -m data.check", description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="dataset root")
    p.add_argument("--split", action="append", required=True, help="split list (repeatable)")
    p.add_argument("--bands", type=int, default=d["bands"])
    p.add_argument("--msi_bands", type=int, default=d["msi_bands"])
    p.add_argument("--scale", type=int, default=d["scale"])
    p.add_argument("--image_size", type=int, default=d["image_size"], help="HR size the reader cuts to (0 = any)")
    p.add_argument("--mis_pix", type=int, default=d["mis_pix"], choices=(0, 1, 2, 3))
    p.add_argument("--mixed_align_opt", type=int, default=d["mixed_align_opt"], choices=(0, 1))
    p.add_argument("--tol", type=float, default=0.1, help="allowed excursion of [0, 1] inputs (noise)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    needed = (1, 2, 3) if args.mixed_align_opt else ((args.mis_pix,) if args.mis_pix else ())
    spec = LayoutSpec(args.bands, args.msi_bands, args.scale, args.image_size)
    n, problems = check_dataset(args.root, args.split, spec, needed, args.tol, progress=not args.quiet)
    for msg in problems:
        print(msg)
    print(f"data.check: {n} entries checked, {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
