"""``python -m data.prepare``: HR-HSI cubes (or synthetic scenes) in, a dataset in the official layout out; or,
with ``--pairs``, own PAN + MS acquisitions in, PanCollection files out.

Each scene is read (``data.formats.read_cube``), simulated whole with the logged degradation
(``data.degrade``: blur, decimation, SRFs, three misaligned LR-HSIs, per-image noise), cut into aligned
patches, and every patch written as ``<out>/<split>/<scene>_<i>{GT.npz.npy, hrmsi.npz, lrhsi.npz}``.
Scenes — never patches — are assigned to train/val/test, so no scene leaks between splits; an input given
twice (the same path, a link, or a copy with the same bytes) is refused. The split
lists ``<out>/{train,val,test}.txt`` and ``<out>/manifest.json`` (all parameters, SRFs, seed, checksums
of inputs and outputs) complete the dataset. The dataset is written whole: into a staging folder beside
``--out`` that replaces it only when complete (``utils.fileio.staged_folder``), so a failing input leaves
no partial dataset and ``--overwrite`` leaves nothing of the old one; it replaces only a dataset this tool
wrote (its owner record lists every file), so a folder holding other files, or the inputs, is refused before
any work, and two runs on one ``--out`` are refused by its lock. An input that gives no patch (too
small for ``--tile``, constant) is an error naming it; constant patches of a usable scene are skipped and
listed in the manifest. Files are byte-reproducible: the same arguments give the same files. Read the
result with ``--dataset aviris --root <out>``.

With ``--pairs LIST --sensor S`` it prepares pansharpening data instead: own full-resolution PAN + MS
acquisitions in, PanCollection files out (``data.prepare_pancollection``), in the same staged, locked ``--out``.

Examples::

    python -m data.prepare cave/*_ms --out data_cache/cave --srf rgb --tile 128 --snr_hsi 35
    python -m data.prepare --synthetic 24 --synthetic_size 256 --bands 172 --out data_cache/synth
    python -m data.prepare --realistic 40 --synthetic_size 128 --bands 31 --wavelengths visible31 \
        --srf camera:nikon5100@D65 --tile 64 --out data_cache/realistic31
    python -m data.prepare --pairs wv3/pairs.txt --sensor WV3 --out data_cache/own_wv3
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys

import numpy as np
from tqdm import tqdm

from utils.config import PLUGINS, Option, Range, add_options, check_ranges, declared_options, import_plugins
from utils.fileio import WriteError, atomic_write, sha256_of, staged_folder
from utils.interrupts import Interrupted, StopAtOnce

from .aviris import write_entry
from .degrade import simulate_scene, simulated_tiles, unusable_scene
from .formats import read_cube
from .options import DATA_DEFAULTS, DATA_OPTIONS, DEGRADATION_OPTIONS, add_degradation_args, degradation_from_cfg
from .prepare_pancollection import (
    ALSO_READS,
    PANCOLLECTION_OPTIONS,
    check_pancollection_args,
    input_paths,
    read_pairs,
    report,
    write_pancollection,
)
from .sensors import resolve_srf
from .spectral import resolve_wavelengths
from .synthetic import VALUE_RANGE, make_scene, scene_seed

MANIFEST_VERSION = 1
SPLITS = ("train", "val", "test")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data.prepare",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="*", help="HR-HSI cube files or CAVE-style PNG folders (one scene each)")
    p.add_argument("--out", required=True, help="output dataset root")
    add_options(p, (*PREPARE_OPTIONS, PLUGINS))
    add_degradation_args(p)
    add_options(p, PANCOLLECTION_OPTIONS)
    p.set_defaults(srf=None)
    return p


_COUNT = Range(0)
PREPARE_OPTIONS = (
    Option("synthetic", type=int, default=0, range=_COUNT, help="add this many built-in synthetic scenes"),
    Option("realistic", type=int, default=0, range=_COUNT,
           help="add this many scenes of measured reflectance spectra (data.realistic; needs colour-science)"),
    Option("synthetic_size", type=int, default=256, range=Range(1), help="HR size of the synthetic and realistic "
                                                                         "scenes"),
    Option("bands", type=int, range=Range(1),
           help="expected HSI band count (required with --synthetic/--realistic; checked against inputs)"),
    Option("tile", type=int, default=256, range=_COUNT, help="HR patch size (multiple of --scale; 0 = whole scene)"),
    Option("stride", type=int, default=0, range=_COUNT, help="HR patch stride (0 = --tile, non-overlapping)"),
    Option("split_fractions", type=float, nargs=3, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "VAL", "TEST"),
           range=_COUNT, help="fractions of the scenes per split (by scene)"),
    dataclasses.replace(next(o for o in DATA_OPTIONS if o.name == "scale"), group=""),
    Option("seed", type=int, default=DATA_DEFAULTS["seed"], help="seed of split, noise, synthetic"),
    Option("overwrite", switch=True, help="replace a non-empty --out (nothing old is kept)"),
)


def split_scenes(names: list[str], fractions: list[float], seed: int) -> dict[str, list[str]]:
    """Assign scenes to splits by a seeded shuffle; every split with a positive fraction gets ≥ 1 scene
    when there are enough scenes. Returns {split: [scene names in input order]}."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.size != 3 or np.any(f < 0) or f.sum() <= 0:
        raise ValueError(f"--split_fractions must be three non-negative numbers, got {fractions}")
    n = len(names)
    counts = np.floor(f / f.sum() * n + 0.5).astype(int)
    for i in (1, 2):  # val/test: at least one scene if requested and possible
        if f[i] > 0 and counts[i] == 0 and n - counts.sum() + counts[0] > 1:
            counts[i] = 1
    counts[0] = n - counts[1] - counts[2]
    if counts[0] < 0 or (f[0] > 0 and counts[0] == 0):
        raise ValueError(f"{n} scene(s) cannot be split by --split_fractions {fractions} without an empty split")
    order = np.random.default_rng(np.random.SeedSequence([seed, 7])).permutation(n)
    start, out = 0, {}
    for s, c in zip(SPLITS, counts, strict=True):
        chosen = set(order[start : start + c].tolist())
        out[s] = [nm for i, nm in enumerate(names) if i in chosen]
        start += c
    return out


def _scene_names(inputs: list[str], n_synthetic: int, n_realistic: int = 0) -> list[str]:
    names, seen = [], set()
    for path in inputs:
        base = os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or "scene"
        name, k = base, 1
        while name in seen:
            name, k = f"{base}-{k}", k + 1
        seen.add(name)
        names.append(name)
    return names + [f"synthetic{i:03d}" for i in range(n_synthetic)] + [f"realistic{i:03d}" for i in range(n_realistic)]


#: Flags of the HSI fusion dataset only, and of the pansharpening files only (``--pairs``); those of
#: ``ALSO_READS`` (``--out``, ``--overwrite``, ``--plugins``, ``--layout``) serve both.
HSI_ONLY = tuple(o for o in (*PREPARE_OPTIONS, *DEGRADATION_OPTIONS) if o.name not in ALSO_READS)
PANSHARPENING_ONLY = PANCOLLECTION_OPTIONS


def check_mode(args: argparse.Namespace) -> None:
    """One ValueError if ``args`` mix the two modes: a flag (or a positional input) of the other mode given."""
    pansharpening = args.pairs is not None
    others = HSI_ONLY if pansharpening else PANSHARPENING_ONLY
    given = [f"--{o.name}" for o in others if getattr(args, o.name) != o.default]
    if pansharpening and args.inputs:
        given.insert(0, f"the inputs {' '.join(args.inputs)}")
    if given:
        mode = ("--pairs (pansharpening: the acquisitions come from the list, the degradation is the sensor's)"
                if pansharpening else "HSI fusion data (give --pairs for pansharpening)")
        raise ValueError(f"{', '.join(given)}: do(es) not apply to {mode}")


def prepare(args: argparse.Namespace) -> dict:
    """Write the dataset described by the parsed ``args``; returns the manifest dict."""
    check_mode(args)
    if args.pairs is not None:
        return _prepare_pancollection(args)
    if not args.inputs and args.synthetic <= 0 and args.realistic <= 0:
        raise ValueError("no input: give cube files/folders and/or --synthetic N and/or --realistic N, or "
                         "--pairs LIST (pansharpening)")
    if (args.synthetic or args.realistic) and not args.bands:
        raise ValueError("--synthetic/--realistic need --bands (e.g. 172 or 31; realistic scenes: 31)")
    _check_out(args)
    digests = input_digests(args.inputs)
    # Locked and checked before any work: --overwrite replaces only a dataset this tool wrote, never the inputs.
    with staged_folder(args.out, f"--out {args.out}", "data.prepare", inputs=args.inputs) as stage:
        return _write_dataset(args, stage, digests)


def _prepare_pancollection(args: argparse.Namespace) -> dict:
    """:func:`prepare` with ``--pairs``: PanCollection files of the listed acquisitions, in the same staging."""
    check_pancollection_args(args)
    acquisitions = read_pairs(args.pairs)
    _check_out(args)
    paths = input_paths(acquisitions)
    digests = input_digests(paths)
    with staged_folder(args.out, f"--out {args.out}", "data.prepare", inputs=[args.pairs, *paths]) as stage:
        return write_pancollection(args, stage, acquisitions, digests)


def _check_out(args: argparse.Namespace) -> None:
    if os.path.lexists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out}: exists and is not a folder")
    if os.path.isdir(args.out) and os.listdir(args.out) and not args.overwrite:
        raise ValueError(f"--out {args.out}: folder is not empty (pass --overwrite to replace it)")


def input_digests(inputs: list[str]) -> dict[str, str]:
    """SHA-256 of every input, refusing one given twice: the same path, a link to it, or a copy with the same
    bytes under another name (it would become two scenes, which can land in two splits: a test scene trained on).
    Inputs that do not exist are left to the reader's message."""
    digests: dict[str, str] = {}
    by_file: dict[str, str] = {}
    by_digest: dict[str, str] = {}
    for path in inputs:
        if not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        if real in by_file:
            raise ValueError(f"{path}: the same file as the input {by_file[real]} (given twice, or a link to it); "
                             f"give each scene once, or it is two scenes that can land in two splits")
        digest = digests[path] = sha256_of(path)
        if digest in by_digest:
            raise ValueError(f"{path}: the same bytes as the input {by_digest[digest]} (SHA-256 {digest[:16]}…): a "
                             f"copy of one scene, which could land in two splits; give each scene once")
        by_file[real], by_digest[digest] = path, path
    return digests


def _write_dataset(args: argparse.Namespace, out: str, digests: dict[str, str]) -> dict:
    """The body of :func:`prepare`, writing into the staging folder ``out`` (``digests``: of the inputs)."""
    deg = degradation_from_cfg(vars(args))
    srf_specs = args.srf or ["ms4", "ms6"]
    names = _scene_names(args.inputs, args.synthetic, args.realistic)
    make_realistic = None
    splits = split_scenes(names, args.split_fractions, args.seed)
    split_of = {nm: s for s, nms in splits.items() for nm in nms}
    entries: dict[str, list[str]] = {s: [] for s in SPLITS}
    files, inputs, skipped, srf_log = {}, [], [], {}
    bands = args.bands
    progress = tqdm(list(enumerate(names)), desc="scenes", unit="scene", file=sys.stderr)
    for si, name in progress:
        progress.set_postfix_str(name)
        if si < len(args.inputs):
            path = args.inputs[si]
            cube = read_cube(path, key=args.key, layout=args.layout, wavelengths=args.wavelengths)
            data, wl = cube.data, cube.wavelengths
            inputs.append({"scene": name, "path": path, "sha256": digests[path], "shape": list(data.shape)})
        else:  # generated: synthetic scenes, then realistic ones (seed stream "prepare", one index per scene)
            seed = scene_seed(args.seed, "prepare", si - len(args.inputs))
            wl = resolve_wavelengths(args.wavelengths, bands)
            kind = "synthetic" if si < len(args.inputs) + args.synthetic else "realistic"
            if kind == "realistic" and make_realistic is None:
                from .realistic import scene_generator  # optional dependency

                make_realistic = scene_generator(wl)
            make = make_realistic if kind == "realistic" else (lambda sd, size, wl=wl: make_scene(sd, size, wl))
            data, path = make(seed, args.synthetic_size), f"{kind} seed {seed}"
            inputs.append({"scene": name, f"{kind}_seed": seed, "shape": list(data.shape),
                           "value_range": list(VALUE_RANGE)})
        bands = bands or data.shape[-1]
        if data.shape[-1] != bands:
            raise ValueError(f"{path}: has {data.shape[-1]} bands, expected {bands} (all scenes must match)")
        if wl is None:
            wl = resolve_wavelengths(args.wavelengths, bands)
        srfs = []
        for spec in srf_specs:
            r, desc = resolve_srf(spec, wl)
            srfs.append(r)
            log = srf_log.setdefault(
                (desc, tuple(np.round(wl, 4))),
                {
                    "srf": desc,
                    "msi_bands": r.shape[0],
                    "scenes": [],
                    "wavelengths_nm": [round(float(v), 4) for v in wl],
                    "matrix": [[round(float(v), 8) for v in row] for row in r],
                },
            )
            log["scenes"].append(name)
        h, w = (s - s % deg.ratio for s in data.shape[:2])
        scene = simulate_scene(data[:h, :w], srfs, deg, range(deg.misreg_levels + 1), where=path)
        split, written, constant = split_of[name], sum(map(len, entries.values())), 0
        for i, y, x, gt, msi, lr in simulated_tiles(scene, deg, args.tile, args.stride, (args.seed, si)):
            if gt is None:
                skipped.append(f"{name} tile {i} at y={y}, x={x}: constant")
                constant += 1
                continue
            entry = f"{split}/{name}_{i}"
            for p in write_entry(out, entry, gt, msi, lr):
                files[os.path.relpath(p, out)] = sha256_of(p)
            entries[split].append(entry)
        if sum(map(len, entries.values())) == written:  # an input is never dropped silently
            raise unusable_scene(path, (h, w), args.tile, "--tile", constant)
    for s in SPLITS:
        lines = "".join(e + "\n" for e in entries[s]).encode()
        atomic_write(os.path.join(out, f"{s}.txt"), lambda f, b=lines: f.write(b))
        files[f"{s}.txt"] = hashlib.sha256(lines).hexdigest()
    manifest = {
        "format": "CSAKD official layout (data/aviris.py)",
        "manifest_version": MANIFEST_VERSION,
        "arguments": {k: v for k, v in sorted(vars(args).items())},
        "seed": args.seed,
        "bands": bands,
        "tile": args.tile,
        "stride": args.stride or args.tile,
        "degradation": deg.to_dict(),
        "normalisation": "LR-HSI/HR-MSI scaled per patch with the GT patch's own min/max to [0, 1] before noise",
        "srf": list(srf_log.values()),
        "scenes": {s: splits[s] for s in SPLITS},
        "entries": {s: len(entries[s]) for s in SPLITS},
        "inputs": inputs,
        "skipped_tiles": skipped,
        "files_sha256": dict(sorted(files.items())),
        "software": {"numpy": np.__version__},
    }
    text = json.dumps(manifest, indent=1, sort_keys=False).encode()
    atomic_write(os.path.join(out, "manifest.json"), lambda f: f.write(text))
    return manifest


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with StopAtOnce(f"no dataset was written ({args.out} appears whole or not at all)"):
            check_ranges(vars(args), declared_options(build_parser()))
            import_plugins(args.plugins or ())  # e.g. a reader of one's own cube format
            m = prepare(args)
    except (ValueError, FileNotFoundError, WriteError) as e:
        print(f"data.prepare: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"data.prepare: {e}", file=sys.stderr)
        return e.exit_code
    if args.pairs is not None:
        print(report(m))
        for note in m["notes"]:
            print(f"note: {note}", file=sys.stderr)
        return 0
    print(
        f"wrote {sum(m['entries'].values())} entries {m['entries']} to {args.out} "
        "(manifest.json lists every parameter and checksum)"
    )
    for s in SPLITS:
        if not m["entries"][s]:
            print(f"note: split {s!r} is empty (too few scenes for --split_fractions)", file=sys.stderr)
    if m["skipped_tiles"]:
        print(f"note: {len(m['skipped_tiles'])} constant patch(es) skipped (listed in manifest.json)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
