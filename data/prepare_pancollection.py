"""``python -m data.prepare --pairs LIST --sensor S --out DIR``: own full-resolution PAN + MS acquisitions in,
PanCollection files out (the layout ``--dataset pancollection`` and ``test_CSAKD.py --score`` read).

The list names one acquisition per line, ``SPLIT MS_FILE PAN_FILE`` (SPLIT ``train``, ``valid`` (or ``val``)
or ``test``; paths relative to the list's folder; ``#`` starts a comment; quotes for paths with spaces): the user,
not a shuffle, decides which acquisition goes to which split, so the splits are scene-disjoint by construction. The MS
is (h, w, C) in DN (C the sensor's bands; ``--layout chw`` for C×h×w files) and the PAN (4h, 4w), in any format
``data.formats.read_image`` reads. Each acquisition is cropped at the top left to MS sides that are multiples
of 8, so that its PAN sides are multiples of 32, the toolbox's block size. Written into ``--out``:

- ``train_<name>.h5``, ``valid_<name>.h5``: reduced-resolution (RR) tiles by Wald's protocol
  (``data.wald.reduced_resolution_example`` of the whole acquisition: MS MTF + pixels 2::4, PAN bicubic or
  ``--pan_blur mtf``, ``lms`` by the 23-tap interpolator), cut as PanCollection's tiles: ``--train_tile`` 64
  (``gt``/``lms``/``pan`` 64×64, ``ms`` 16×16) every ``--train_tile − --train_overlap`` = 48 pixels;
- ``test_<name>_multiExm1.h5``: the RR examples of the test acquisitions (whole, or ``--test_tile`` tiles);
- ``test_<name>_OrigScale_multiExm1.h5``: the same acquisitions at full resolution (FR), kept as they are:
  ``ms`` and ``pan`` bit-equal to the inputs (as float64), ``lms`` = interp23tap(``ms``), no ``gt``;
- ``manifest.json``: sensor, bits, scale, ratio, MTF gains, ``--pan_blur``, the tiling, every input with its
  SHA-256, shape and value range, which examples of which file come from which acquisition, and the SHA-256
  of every file written.

Files hold float64 DN as h5py reads PanCollection: ``gt``, ``ms``, ``lms`` N×C×H×W, ``pan`` N×1×H×W, one HDF5
chunk per example (read lazily by ``data.pancollection.PanCollectionFile``); a split without acquisitions gets
no file. Nothing is rounded, clipped or normalised (the reader divides by the sensor's scale). The folder is
built whole by ``data.prepare``'s staging (``utils.fileio.staged_folder``) and the same inputs and arguments
give the same bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator

import numpy as np
from tqdm import tqdm

from utils.config import Option, Range
from utils.fileio import atomic_write, sha256_of

from .degrade import tile_origins
from .formats import read_image
from .pansharpening import PAN_BLUR, SENSOR
from .resample import interp23tap
from .sensors import SENSORS, get_sensor
from .wald import reduced_resolution_example

MANIFEST_VERSION = 1
RATIO = 4
#: MS sides are cropped to multiples of this, so that FR PAN sides are multiples of the toolbox's 32-px blocks.
MS_MULTIPLE = 8
#: The smallest whole RR test example: the toolbox's 32-px blocks (Q_avg is NaN below).
MIN_TEST_SIZE = 32
SPLITS = ("train", "valid", "test")
SPLIT_NAMES = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}
#: An MS with more bands than this is a hyperspectral cube given by mistake (the sensors have 4 or 8).
_HYPERSPECTRAL = 16

#: The flags of ``data.prepare``'s HSI mode this mode reads too (``--layout``: the MS axis order).
ALSO_READS = ("out", "overwrite", "layout", "plugins")

GROUP = "pansharpening: own PAN + MS acquisitions → PanCollection files"
PANCOLLECTION_OPTIONS = (
    Option("pairs", group=GROUP, metavar="LIST",
           help="list of full-resolution acquisitions, one per line: SPLIT MS_FILE PAN_FILE (SPLIT train, valid "
                "or test; paths relative to the list's folder; # comments). Selects this mode"),
    dataclasses.replace(SENSOR, group=GROUP,
                        help="the acquisitions' sensor: MS bands, bit depth, scale and MTF gains (required with "
                             "--pairs)"),
    Option("name", group=GROUP,
           help="file name tag: train_<name>.h5, valid_<name>.h5, test_<name>_multiExm1.h5, "
                "test_<name>_OrigScale_multiExm1.h5 (default the sensor in lower case, e.g. wv3)"),
    dataclasses.replace(PAN_BLUR, group=GROUP,
                        help="PAN degradation of the RR examples: MATLAB bicubic imresize (the toolbox's default) "
                             "or the sensor's PAN MTF filter + pixels 2::4"),
    Option("train_tile", group=GROUP, type=int, default=64, range=Range(RATIO),
           help="RR tile of train/valid in gt/PAN pixels (multiple of 4; the ms tile is a quarter)"),
    Option("train_overlap", group=GROUP, type=int, default=16, range=Range(0),
           help="overlap of neighbouring train/valid tiles in gt/PAN pixels (multiple of 4; PanCollection: 16)"),
    Option("test_tile", group=GROUP, type=int, default=0, range=Range(0),
           help="test examples: 0 = each acquisition whole (all of one size), else non-overlapping tiles of this "
                "many PAN pixels at both resolutions (multiple of 32)"),
    Option("ms_key", group=GROUP, help="variable/dataset of the MS in .mat/.h5/.npz files with several"),
    Option("pan_key", group=GROUP, help="variable/dataset of the PAN in .mat/.h5/.npz files with several"),
)


@dataclasses.dataclass(frozen=True)
class Acquisition:
    """One line of the ``--pairs`` list: its split (train|valid|test), a unique name (from the MS file), the MS
    and PAN paths, and ``where`` (``LIST:line``) for the messages."""

    split: str
    name: str
    ms_path: str
    pan_path: str
    where: str


def read_pairs(path: str) -> list[Acquisition]:
    """The acquisitions of the list file ``path`` in its order; one ValueError / FileNotFoundError naming the
    list, the line and what is wrong (columns, split, a missing file, a file listed on two lines; an MS and its
    PAN may be one file holding both, see --ms_key)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--pairs {path}: no such file")
    with open(path, encoding="utf-8-sig") as f:
        lines = f.read().splitlines()
    folder, out, names, used = os.path.dirname(path), [], set(), {}
    for number, line in enumerate(lines, 1):
        where = f"{path}:{number}"
        try:
            fields = shlex.split(line, comments=True)
        except ValueError as e:
            raise ValueError(f"{where}: cannot parse {line!r} ({e})") from None
        if not fields:
            continue
        if len(fields) != 3 or fields[0] not in SPLIT_NAMES:
            raise ValueError(f"{where}: expected 'SPLIT MS_FILE PAN_FILE' with SPLIT train, valid or test, got "
                             f"{line.strip()!r}")
        ms, pan = (p if os.path.isabs(p) else os.path.join(folder, p) for p in fields[1:])
        for what, p in (("MS", ms), ("PAN", pan)):
            if not os.path.exists(p):
                raise FileNotFoundError(f"{where}: {what} file {p}: no such file")
            real = os.path.realpath(p)
            if used.setdefault(real, where) != where:  # copies under other names: data.prepare.input_digests
                raise ValueError(f"{where}: {what} file {p} is also listed on {used[real]}: one acquisition in two "
                                 f"places (in two splits, a test scene trained on); list each once")
        base = os.path.splitext(os.path.basename(os.path.normpath(ms)))[0] or "acquisition"
        name, k = base, 1
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.add(name)
        out.append(Acquisition(SPLIT_NAMES[fields[0]], name, ms, pan, where))
    if not out:
        raise ValueError(f"--pairs {path}: lists no acquisition (expected lines 'SPLIT MS_FILE PAN_FILE')")
    return out


def input_paths(acquisitions: list[Acquisition]) -> list[str]:
    """The distinct input files in list order (an MS and its PAN may be one file holding both, see --ms_key)."""
    return list(dict.fromkeys(p for a in acquisitions for p in (a.ms_path, a.pan_path)))


def load_pair(acq: Acquisition, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """The acquisition's MS (C, h, w) and PAN (1, 4h, 4w) float64 DN as stored, checked (band counts, the ratio,
    NaN: one ValueError naming the line and file), then cropped at the top left to h, w multiples of 8.
    ``args``: the parsed flags (--sensor, --layout, --ms_key, --pan_key)."""
    sensor = args.sensor
    bands = get_sensor(sensor).bands
    ms = np.moveaxis(read_image(acq.ms_path, args.ms_key, args.layout, "--ms_key"), -1, 0)
    pan = np.moveaxis(read_image(acq.pan_path, args.pan_key, "auto", "--pan_key"), -1, 0)
    if ms.shape[0] != bands:
        raise ValueError(f"{acq.where}: MS {acq.ms_path} has {ms.shape[0]} bands (shape {ms.shape[1:]} × "
                         f"{ms.shape[0]} as H×W×C), --sensor {sensor} has {bands}{_bands_hint(ms.shape, bands)}")
    if pan.shape[0] != 1:
        raise ValueError(f"{acq.where}: PAN {acq.pan_path} has shape {pan.shape[1:]} × {pan.shape[0]} bands, "
                         f"expected one band (H×W or H×W×1)")
    h, w = ms.shape[1:]
    if pan.shape[1:] != (RATIO * h, RATIO * w):
        raise ValueError(f"{acq.where}: PAN {acq.pan_path} is {pan.shape[1]}×{pan.shape[2]}, expected "
                         f"{RATIO * h}×{RATIO * w} ({RATIO} × the MS {h}×{w} of {acq.ms_path}); crop both to the "
                         f"same ground area")
    h, w = h - h % MS_MULTIPLE, w - w % MS_MULTIPLE
    return ms[:, :h, :w], pan[:, : RATIO * h, : RATIO * w]


def _bands_hint(shape: tuple[int, ...], bands: int) -> str:
    if shape[0] > _HYPERSPECTRAL:
        return (": a hyperspectral cube? Give the sensor's MS image (data.prepare without --pairs prepares "
                "HSI fusion data)")
    if bands in shape[1:] or shape[1] == bands:
        return "; a C×H×W file? pass --layout chw (or auto)"
    return ""


def tiles(example: dict[str, np.ndarray], size: int, stride: int) -> Iterator[tuple[int, int, dict]]:
    """Aligned tiles of a PanCollection example {key: (C, H, W)} (``ms`` on the grid ``RATIO``× coarser): size
    × size pixels of the PAN grid every ``stride`` (0: the whole example), raster order. Yields (y, x, tile)."""
    h, w = example["pan"].shape[1:]
    if size == 0:
        yield 0, 0, example
        return
    for y in tile_origins(h, size, stride):
        for x in tile_origins(w, size, stride):
            yield y, x, {k: _window(v, y, x, size, RATIO if k == "ms" else 1) for k, v in example.items()}


def _window(img: np.ndarray, y: int, x: int, size: int, coarser: int) -> np.ndarray:
    """The size × size window at (y, x) of the PAN grid of an image ``coarser``× coarser than it (C, h, w)."""
    y, x, size = y // coarser, x // coarser, size // coarser
    return np.ascontiguousarray(img[:, y : y + size, x : x + size])


class ExampleFile:
    """A PanCollection .h5 file written one example at a time: float64 datasets N×C×H×W created at the first
    example (one chunk per example), grown by each; every example must have the first one's shapes."""

    def __init__(self, path: str, resolution: str) -> None:
        import h5py

        self.path, self.resolution, self.count, self.sources = path, resolution, 0, []
        self._file = h5py.File(path, "w")

    def add(self, acq: Acquisition, examples: Iterator[tuple[int, int, dict]], size_flag: str) -> int:
        """Append the examples of ``acq`` (tiles in raster order: the manifest records their rows and columns, in
        pixels of the file's PAN grid); returns how many. Shapes other than the file's first are an error naming
        the acquisition and ``size_flag`` (an .h5 file holds examples of one size)."""
        first = self.count
        origins = []
        for y, x, ex in examples:
            if not self._file.keys():
                for k, v in ex.items():
                    self._file.create_dataset(k, shape=(0, *v.shape), maxshape=(None, *v.shape),
                                              chunks=(1, *v.shape), dtype="f8")
            for k, v in ex.items():
                d = self._file[k]
                if d.shape[1:] != v.shape:
                    raise ValueError(f"{acq.where}: its {self.resolution} {k!r} is {'×'.join(map(str, v.shape))}, "
                                     f"the first example of {os.path.basename(self.path)} is "
                                     f"{'×'.join(map(str, d.shape[1:]))}: an .h5 file holds examples of one "
                                     f"size; pass {size_flag} (tiles) or crop the acquisitions alike")
                d.resize(self.count + 1, axis=0)
                d[self.count] = v
            self.count += 1
            origins.append((y, x))
        ys, xs = (sorted({o[i] for o in origins}) for i in (0, 1))
        self.sources.append({"acquisition": acq.name, "first": first, "count": self.count - first,
                             "tile_rows_y": ys, "tile_cols_x": xs})
        return self.count - first

    def close(self) -> dict:
        """Close the file; returns its manifest record (shapes, counts, sources)."""
        shapes = {k: list(self._file[k].shape) for k in self._file}
        self._file.close()
        return {"resolution": self.resolution, "examples": self.count, "shapes": shapes, "sources": self.sources}


def check_pancollection_args(args: argparse.Namespace) -> tuple[int, int]:
    """Check the flags of this mode before any work: --sensor given, the tiling, --name; returns the train/valid tile
    and stride in PAN pixels. One ValueError naming the flag."""
    if args.sensor is None:
        raise ValueError("--pairs needs --sensor (one of " + ", ".join(SENSORS) + ")")
    tile, overlap = args.train_tile, args.train_overlap
    if tile % RATIO or overlap % RATIO or overlap >= tile:
        raise ValueError(f"--train_tile {tile} and --train_overlap {overlap}: expected multiples of {RATIO} with "
                         f"the overlap below the tile (PanCollection: 64 and 16)")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.name):
        raise ValueError(f"--name {args.name!r}: expected a file name tag of letters, digits, '_', '.' or '-' "
                         f"(e.g. wv3)")
    if args.test_tile % 32:
        raise ValueError(f"--test_tile {args.test_tile}: expected 0 (whole acquisitions) or a multiple of 32 (the "
                         f"toolbox's full-resolution blocks)")
    return tile, tile - overlap


def file_names(name: str) -> dict[str, str]:
    """{train, valid, test, test_full: file name} for the tag ``name`` (PanCollection's names)."""
    return {"train": f"train_{name}.h5", "valid": f"valid_{name}.h5", "test": f"test_{name}_multiExm1.h5",
            "test_full": f"test_{name}_OrigScale_multiExm1.h5"}


def write_pancollection(args: argparse.Namespace, out: str, acquisitions: list[Acquisition],
                        digests: dict[str, str]) -> dict:
    """Write the PanCollection files of ``acquisitions`` into the (staging) folder ``out``; returns the manifest.

    ``args``: the parsed ``data.prepare`` flags; ``digests``: SHA-256 of each input path."""
    tile, stride = check_pancollection_args(args)
    sensor = get_sensor(args.sensor)
    names = file_names(args.name or sensor.name.lower())
    files: dict[str, ExampleFile] = {}

    def file(key: str, resolution: str) -> ExampleFile:
        if key not in files:
            files[key] = ExampleFile(os.path.join(out, names[key]), resolution)
        return files[key]

    records, notes = [], []
    if sensor.scale is None:
        notes.append(f"{sensor.name} has no PanCollection scale: read the files with --img_range (the DN of 1.0, "
                     f"{2 ** sensor.bits - 1} for {sensor.bits}-bit data)")
    try:
        for acq in tqdm(acquisitions, desc="acquisitions", unit="acq", file=sys.stderr):
            records.append(_write_acquisition(acq, args, file, tile, stride, notes))
    finally:
        written = {names[k]: f.close() for k, f in files.items()}
    for split in SPLITS:
        if not any(a.split == split for a in acquisitions):
            notes.append(f"split {split!r} has no acquisition: no {names[split]} written")
    for fname, record in written.items():
        record["sha256"] = sha256_of(os.path.join(out, fname))
    manifest = {
        "format": "PanCollection (data/pancollection.py)",
        "manifest_version": MANIFEST_VERSION,
        "arguments": {k: getattr(args, k) for k in sorted((*ALSO_READS, *(o.name for o in PANCOLLECTION_OPTIONS)))},
        "sensor": sensor.name, "bands": sensor.bands, "bits": sensor.bits, "scale": sensor.scale, "ratio": RATIO,
        "gnyq_ms": list(sensor.gnyq_ms), "gnyq_pan": sensor.gnyq_pan, "pan_blur": args.pan_blur,
        "protocol": "reduced resolution: data.wald.reduced_resolution_example of the whole acquisition (MS: MTF "
                    "filter + pixels 2::4; PAN: " + ("MATLAB bicubic imresize" if args.pan_blur == "bicubic" else
                                                     "PAN MTF filter + pixels 2::4") + "; lms: interp23tap), then "
                    "tiles; full resolution: ms and pan as read, lms = interp23tap(ms) of the whole acquisition",
        "units": "float64 DN as stored in the inputs, not rounded, clipped or normalised",
        "crop": f"top-left, MS sides to multiples of {MS_MULTIPLE} (PAN sides multiples of {RATIO * MS_MULTIPLE})",
        "train_tile": tile, "train_overlap": args.train_overlap, "train_stride": stride, "test_tile": args.test_tile,
        "files": written,
        "acquisitions": [{**r, "ms_sha256": digests[r["ms"]], "pan_sha256": digests[r["pan"]]} for r in records],
        "notes": notes,
        "software": _software(),
    }
    text = json.dumps(manifest, indent=1).encode()
    atomic_write(os.path.join(out, "manifest.json"), lambda f: f.write(text))
    return manifest


def _write_acquisition(acq: Acquisition, args: argparse.Namespace, file: Callable[[str, str], ExampleFile],
                       tile: int, stride: int, notes: list[str]) -> dict:
    """Read, simulate and write one acquisition into its split's files (``file(key, resolution)`` gives the
    :class:`ExampleFile` of a file key); returns its manifest record, appends its notes to ``notes``."""
    ms, pan = load_pair(acq, args)
    test = acq.split == "test"
    size, flag = (args.test_tile, "--test_tile") if test else (tile, "--train_tile")
    _check_size(acq, ms.shape[1:], size, flag)
    rr = reduced_resolution_example(ms, pan, args.sensor, RATIO, args.pan_blur)
    counts = {acq.split: file(acq.split, "reduced").add(acq, tiles(rr, size, size if test else stride), flag)}
    if test:
        fr = {"ms": ms, "lms": interp23tap(ms, RATIO), "pan": pan}
        counts["test_full"] = file("test_full", "full").add(acq, tiles(fr, size, size), flag)
    ranges = {what: [float(img.min()), float(img.max())] for what, img in (("ms", ms), ("pan", pan))}
    scale = get_sensor(args.sensor).scale
    notes += [f"{acq.where}: {what.upper()} values {lo:g}…{hi:g} leave 0…{scale:g}, the {args.sensor} scale the "
              f"reader divides by (pass --img_range when reading, or check the units)"
              for what, (lo, hi) in ranges.items() if scale and (lo < 0 or hi > scale)]
    return {"name": acq.name, "split": acq.split, "line": acq.where, "ms": acq.ms_path, "pan": acq.pan_path,
            "ms_shape_used": list(ms.shape), "pan_shape_used": list(pan.shape), "examples": counts,
            "ms_range": ranges["ms"], "pan_range": ranges["pan"]}


def _check_size(acq: Acquisition, hw: tuple[int, int], size: int, flag: str) -> None:
    """One ValueError if the RR image (h, w) = the cropped MS is smaller than one tile (``size``; 0: a whole
    test example, at least the toolbox's 32-px block)."""
    h, w = hw
    if min(h, w) >= (size or MIN_TEST_SIZE):
        return
    rule = f"{flag} {size}" if size else f"{MIN_TEST_SIZE} pixels (a whole test example: the toolbox's blocks)"
    raise ValueError(f"{acq.where}: MS {acq.ms_path} gives a reduced-resolution image of {h}×{w} pixels (after "
                     f"cropping to multiples of {MS_MULTIPLE}), smaller than {rule}; remove it from the list"
                     f"{' or lower ' + flag if size else ''}")


def _software() -> dict[str, str]:
    import h5py

    return {"numpy": np.__version__, "h5py": h5py.__version__}


def report(manifest: dict) -> str:
    """The one line ``data.prepare`` prints after writing: the files and their example counts."""
    parts = [f"{name} {rec['examples']}" for name, rec in manifest["files"].items()]
    return (f"wrote {', '.join(parts)} examples to {manifest['arguments']['out']} (manifest.json lists every "
            f"parameter and checksum)")
