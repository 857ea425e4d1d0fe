"""Read an HR-HSI cube (float32 + wavelengths) or an image of one or more bands (float64, a pansharpening MS or
PAN) from the common distribution formats, as (H, W, C).

Supported (``read_cube``):

- ``.mat`` MATLAB v5 (scipy.io.loadmat) and v7.3 (HDF5, via h5py; MATLAB stores column-major, so the
  axes come back reversed and are flipped to MATLAB's order, e.g. H×W×C).
- ``.h5`` / ``.hdf5`` (h5py, axes as stored), ``.npy``, ``.npz``.
- ENVI: a ``.hdr`` header plus its raw data file (bsq/bil/bip, any byte order, header offset).
- multi-band TIFF (tifffile; the band axis is the one that is neither Y nor X).
- a CAVE scene folder of per-band 16-bit PNGs (``*_ms_01.png`` … ``*_ms_31.png``), read at 16 bits
  (Pillow mode ``I;16``), not truncated to 8 bits.

``read_image`` reads one image of one or more bands (a 2-D array is one band; a pansharpening MS or PAN) from
the same formats, in float64 exactly as stored.

For containers holding several arrays, ``key`` names the cube; otherwise the only 3-D numeric array is
taken (several → an error listing them). ``layout`` gives the axis order of the array as read: "hwc"
(default), "chw", or "auto" (the axis whose length equals the number of wavelengths when known,
otherwise the shortest axis). Wavelengths are read from the file where the format has them (an
array/attribute named wavelength(s)/wl/lambda/bands_nm; ENVI ``wavelength = {…}``; CAVE: 400–700 nm in
10 nm steps), else taken from the ``wavelengths`` argument; µm are converted to nm.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import NamedTuple

import numpy as np

from .spectral import resolve_wavelengths, to_nanometres

WAVELENGTH_NAMES = ("wavelengths", "wavelength", "wl", "wavelength_nm", "lambda", "bands_nm", "wave")
LAYOUTS = ("hwc", "chw", "auto")
CUBE_EXTENSIONS = (".mat", ".h5", ".hdf5", ".npy", ".npz", ".hdr", ".tif", ".tiff")


class Pick(NamedTuple):
    """Which array of a container (.mat, .h5, .npz) a reader takes when no key is given: the only one with a
    dimensionality in ``ndims``; ``flag`` names the option that sets the key, in the messages."""

    ndims: tuple[int, ...]
    flag: str = "--key"

    @property
    def dims(self) -> str:
        return " or ".join(f"{n}-D" for n in self.ndims)

    @property
    def what(self) -> str:
        return "cube" if self.ndims == (3,) else "image"


#: What :func:`read_cube` takes: the only 3-D array.
CUBE = Pick((3,))


@dataclasses.dataclass
class Cube:
    """An HR-HSI in raw units: data (H, W, C) float32, wavelengths (C,) nm or None, its source path."""

    data: np.ndarray
    wavelengths: np.ndarray | None
    path: str


def read_cube(
    path: str,
    key: str | None = None,
    layout: str = "hwc",
    wavelengths: str | list[float] | np.ndarray | None = None,
) -> Cube:
    """Read the HR-HSI at ``path`` (file or CAVE folder); see the module docstring for formats/options.

    Raises FileNotFoundError / ValueError naming ``path`` and what is wrong.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"--layout must be one of {LAYOUTS}, got {layout!r}")
    arr, wl, fixed_layout = _read_array(path, key, CUBE)
    layout = fixed_layout or layout
    if arr.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D cube, got an array of shape {arr.shape}")
    _check_real(arr, path)
    wl = None if wl is None or np.size(wl) == 0 else to_nanometres(wl, where=f"{path} (wavelengths)")
    data = _to_hwc(arr, layout, None if wl is None else wl.size, path)
    bands = data.shape[-1]
    if wl is None and wavelengths is not None:
        wl = resolve_wavelengths(wavelengths, bands)
    if wl is not None and wl.size != bands:
        raise ValueError(
            f"{path}: {wl.size} wavelengths for {bands} bands (cube shape {data.shape}, "
            f"layout {layout!r}); check --layout or --wavelengths"
        )
    _check_finite(data, path, "cube")
    return Cube(np.ascontiguousarray(data, dtype=np.float32), wl, path)


def _read_array(path: str, key: str | None, pick: Pick) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """The array at ``path`` as stored (file or CAVE folder), a wavelength vector stored with it, and the axis
    order the format fixes (None: the caller's ``layout``); ``pick`` says which array of a container is taken
    without ``key``. Raises FileNotFoundError / ValueError naming ``path``."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        return *_read_png_folder(path), "hwc"
    ext = os.path.splitext(path)[1].lower()
    readers = {
        ".mat": _read_mat,
        ".h5": _read_h5,
        ".hdf5": _read_h5,
        ".npy": _read_npy,
        ".npz": _read_npz,
        ".hdr": _read_envi,
        ".tif": _read_tiff,
        ".tiff": _read_tiff,
    }
    if ext not in readers:
        raise ValueError(
            f"{path}: unsupported extension {ext!r} (expected one of {CUBE_EXTENSIONS} or a "
            "folder of per-band PNGs)"
        )
    try:
        return readers[ext](path, key, pick)
    except Exception as e:  # parsers raise many types on corrupt files; report one clear message
        if isinstance(e, FileNotFoundError):
            raise
        msg = str(e)
        raise ValueError(msg if msg.startswith(path) else f"{path}: cannot read ({msg})") from None


def read_image(path: str, key: str | None = None, layout: str = "hwc", key_flag: str = "--key") -> np.ndarray:
    """An image of one or more bands at ``path`` (the formats of :func:`read_cube`; a 2-D array is one band):
    (H, W, C) float64 in the file's units, values exactly as stored (no float32 rounding), e.g. a pansharpening
    acquisition's MS or PAN in DN. ``key`` picks the array of a container holding several (``key_flag``: the flag
    that sets it, for the messages), ``layout`` (hwc, chw, auto) the axis order of a 3-D one. Raises
    FileNotFoundError / ValueError naming ``path`` (also for NaN/Inf)."""
    if layout not in LAYOUTS:
        raise ValueError(f"--layout must be one of {LAYOUTS}, got {layout!r}")
    arr, _, fixed_layout = _read_array(path, key, Pick((2, 3), key_flag))
    if arr.ndim not in (2, 3):
        raise ValueError(f"{path}: expected a 2-D image or a 3-D stack of bands, got an array of shape {arr.shape}")
    _check_real(arr, path)
    data = arr[..., None] if arr.ndim == 2 else _to_hwc(arr, fixed_layout or layout, None, path)
    data = np.ascontiguousarray(data, dtype=np.float64)
    _check_finite(data, path, "image")
    return data


def _check_real(arr: np.ndarray, path: str) -> None:
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{path}: expected real numbers, got dtype {arr.dtype}")


def _check_finite(data: np.ndarray, path: str, what: str) -> None:
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise ValueError(f"{path}: the {what} has {bad} NaN/Inf value(s)")


def _to_hwc(arr: np.ndarray, layout: str, n_wl: int | None, path: str) -> np.ndarray:
    if layout == "hwc":
        return arr
    if layout == "chw":
        return np.moveaxis(arr, 0, -1)
    if n_wl is not None and list(arr.shape).count(n_wl) == 1:
        axis = arr.shape.index(n_wl)
    else:
        axis = int(np.argmin(arr.shape))
        if list(arr.shape).count(arr.shape[axis]) > 1:
            raise ValueError(
                f"{path}: --layout auto cannot tell the band axis of shape {arr.shape}; "
                "pass --layout hwc or chw"
            )
    return np.moveaxis(arr, axis, -1)


def _pick(
    arrays: dict[str, np.ndarray | object], key: str | None, path: str, pick: Pick
) -> tuple[np.ndarray, np.ndarray | None]:
    """The cube (by ``key`` or the only array that ``pick`` admits) and a wavelength vector if one is stored
    beside it."""
    if key is not None:
        if key not in arrays:
            raise ValueError(f"{path}: no variable {key!r} (found {sorted(arrays)})")
        cube = arrays[key]
    else:
        cubes = [k for k, v in arrays.items() if getattr(v, "ndim", 0) in pick.ndims]
        if len(cubes) != 1:
            what = f"no {pick.dims} array" if not cubes else f"several {pick.dims} arrays {sorted(cubes)}"
            raise ValueError(f"{path}: {what}; pass {pick.flag} to choose the {pick.what} (variables: "
                             f"{sorted(arrays)})")
        cube = arrays[cubes[0]]
    wl = next((arrays[k] for k in arrays if k.lower() in WAVELENGTH_NAMES), None)
    return np.asarray(cube), None if wl is None else np.asarray(wl, dtype=np.float64).reshape(-1)


def _read_npy(path: str, key: str | None, pick: Pick) -> tuple[np.ndarray, None, None]:
    return np.load(path, allow_pickle=False), None, None


def _read_npz(path: str, key: str | None, pick: Pick) -> tuple[np.ndarray, np.ndarray | None, None]:
    with np.load(path, allow_pickle=False) as z:
        return (*_pick({k: npz_member(z, k, path) for k in z.files}, key, path, pick), None)


def npz_member(z: np.lib.npyio.NpzFile, key: str, path: str) -> np.ndarray:
    """``z[key]``, once the size its ``.npy`` header claims is checked against the bytes the archive holds for it
    (a forged header claiming terabytes is one ValueError naming the file, never an allocation)."""
    info = z.zip.getinfo(f"{key}.npy") if f"{key}.npy" in z.zip.namelist() else z.zip.getinfo(key)
    with z.zip.open(info) as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        claimed, held = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize, info.file_size - f.tell()
    if claimed > held:
        raise ValueError(f"{path}: member {key!r} claims shape {tuple(shape)} {dtype} ({claimed:,} bytes), but the "
                         f"archive holds {held:,} bytes for it; the file is damaged or forged")
    try:
        return z[key]
    except MemoryError:
        raise ValueError(f"{path}: member {key!r} of shape {tuple(shape)} does not fit in memory") from None


def h5_array(dataset: object, path: str) -> np.ndarray:
    """An HDF5 dataset's values, once its size is checked against the bytes the file stores for it: an
    uncompressed dataset must store all of them (a few-KB file claiming gigabytes of never-written fill values
    is one ValueError naming the file, never an allocation); a compressed one must store some."""
    claimed = int(np.prod(dataset.shape, dtype=np.float64)) * dataset.dtype.itemsize
    stored = dataset.id.get_storage_size()
    compressed = dataset.compression is not None or getattr(dataset, "scaleoffset", None) is not None
    if claimed and (stored == 0 or (not compressed and stored < claimed)):
        raise ValueError(f"{path}: dataset {dataset.name!r} claims shape {dataset.shape} ({claimed:,} bytes), but "
                         f"the file stores {stored:,} bytes of it (the rest was never written); expected a "
                         f"written array")
    return dataset[()]


def read_mat_arrays(path: str) -> dict[str, np.ndarray]:
    """The variables of a MATLAB file in MATLAB's axis order (v5 via scipy.io.loadmat; v7.3 via h5py with
    the axes reversed back, HDF5 storing them column-major)."""
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            arrays = {k: h5_array(f[k], path) for k in f if isinstance(f[k], h5py.Dataset)}
        return {k: v.T if getattr(v, "ndim", 0) > 1 else v for k, v in arrays.items()}
    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError as e:  # pragma: no cover - v7.3 files are caught by is_hdf5 above
        raise ValueError(f"{path}: {e}") from None
    return {k: v for k, v in mat.items() if not k.startswith("__")}


def _read_mat(path: str, key: str | None, pick: Pick) -> tuple[np.ndarray, np.ndarray | None, None]:
    return (*_pick(read_mat_arrays(path), key, path, pick), None)


def _read_h5(path: str, key: str | None, pick: Pick) -> tuple[np.ndarray, np.ndarray | None, None]:
    import h5py

    with h5py.File(path, "r") as f:
        datasets: dict[str, object] = {}
        f.visititems(
            lambda name, obj: datasets.setdefault(name, obj) if isinstance(obj, h5py.Dataset) else None
        )
        shapes = {k: d.shape for k, d in datasets.items()}
        cube_key = key
        if cube_key is None:
            cubes = [k for k, s in shapes.items() if len(s) in pick.ndims]
            if len(cubes) != 1:
                what = f"no {pick.dims} dataset" if not cubes else f"several {pick.dims} datasets {sorted(cubes)}"
                raise ValueError(f"{path}: {what}; pass {pick.flag} (datasets: {sorted(shapes)})")
            cube_key = cubes[0]
        if cube_key not in datasets:
            raise ValueError(f"{path}: no dataset {cube_key!r} (found {sorted(shapes)})")
        cube = h5_array(datasets[cube_key], path)
        wl = next((h5_array(datasets[k], path) for k in datasets if k.split("/")[-1].lower() in WAVELENGTH_NAMES), None)
        if wl is None:
            attrs = datasets[cube_key].attrs
            wl = next((attrs[k] for k in attrs if k.lower() in WAVELENGTH_NAMES), None)
    return cube, None if wl is None else np.asarray(wl, dtype=np.float64).reshape(-1), None


def _read_tiff(path: str, key: str | None, pick: Pick) -> tuple[np.ndarray, None, str]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        arr, axes = series.asarray(), series.axes
    if 2 in pick.ndims and arr.ndim == 2 and sorted(axes) == ["X", "Y"]:  # one band (a PAN image)
        return np.transpose(arr, (axes.index("Y"), axes.index("X"))), None, "hwc"
    if arr.ndim != 3 or "Y" not in axes or "X" not in axes:
        raise ValueError(
            f"{path}: expected a multi-band TIFF with Y, X and a band axis, got axes {axes!r} "
            f"shape {arr.shape}"
        )
    band_axis = next(i for i, a in enumerate(axes) if a not in "YX")
    order = (axes.index("Y"), axes.index("X"), band_axis)
    return np.transpose(arr, order), None, "hwc"


_ENVI_DTYPES = {1: "u1", 2: "i2", 3: "i4", 4: "f4", 5: "f8", 12: "u2", 13: "u4", 14: "i8", 15: "u8"}


def parse_envi_header(path: str) -> dict[str, str]:
    """ENVI ``.hdr`` fields as lower-case keys → raw string values (braced lists kept as text)."""
    with open(path, errors="replace") as f:
        text = f.read()
    if not text.lstrip().upper().startswith("ENVI"):
        raise ValueError(f"{path}: not an ENVI header (first word must be 'ENVI')")
    fields = {}
    for m in re.finditer(r"^\s*([^=\n]+?)\s*=\s*(\{[^}]*\}|[^\n]*)", text, flags=re.M):
        fields[m.group(1).strip().lower()] = m.group(2).strip()
    return fields


def _read_envi(path: str, key: str | None, pick: Pick) -> tuple[np.ndarray, np.ndarray | None, str]:
    hdr = parse_envi_header(path)
    try:
        samples, lines, bands = (int(hdr[k]) for k in ("samples", "lines", "bands"))
        code = int(hdr["data type"])
    except KeyError as e:
        raise ValueError(f"{path}: ENVI header lacks the field {e.args[0]!r}") from None
    if code not in _ENVI_DTYPES:
        raise ValueError(f"{path}: unsupported ENVI data type {code} (supported {sorted(_ENVI_DTYPES)})")
    stem = os.path.splitext(path)[0]
    candidates = [stem + e for e in ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip", ".IMG", ".DAT")]
    data_path = next((c for c in candidates if os.path.isfile(c) and c != path), None)
    if data_path is None:
        raise ValueError(f"{path}: no ENVI data file beside the header (tried {', '.join(candidates)})")
    dtype = np.dtype(_ENVI_DTYPES[code]).newbyteorder(
        ">" if hdr.get("byte order", "0").strip() == "1" else "<"
    )
    offset = int(hdr.get("header offset", "0") or 0)
    count = samples * lines * bands
    raw = np.fromfile(data_path, dtype=dtype, count=count, offset=offset)
    if raw.size != count:
        raise ValueError(
            f"{data_path}: holds {raw.size} values, the header {path} announces "
            f"{lines}×{samples}×{bands} = {count}"
        )
    interleave = hdr.get("interleave", "bsq").strip().lower()
    shapes = {
        "bsq": ((bands, lines, samples), (1, 2, 0)),
        "bil": ((lines, bands, samples), (0, 2, 1)),
        "bip": ((lines, samples, bands), (0, 1, 2)),
    }
    if interleave not in shapes:
        raise ValueError(f"{path}: unknown interleave {interleave!r} (expected bsq, bil or bip)")
    shape, order = shapes[interleave]
    arr = raw.reshape(shape).transpose(order).astype(dtype.newbyteorder("="))
    wl = None
    if "wavelength" in hdr:
        wl = np.array(
            [float(v) for v in hdr["wavelength"].strip("{} ").replace("\n", " ").split(",") if v.strip()]
        )
        units = hdr.get("wavelength units", "").lower()
        if units.startswith("micro") or units in ("um", "µm"):
            wl = wl * 1000.0
    return arr, wl, "hwc"


def _read_png_folder(folder: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A CAVE-style folder: one grayscale PNG per band, ordered by the trailing number of the file name."""
    from PIL import Image

    files = [f for f in glob.glob(os.path.join(folder, "**", "*.png"), recursive=True)]
    numbered = []
    for f in files:
        m = re.search(r"(\d+)\.png$", os.path.basename(f), flags=re.I)
        if m:
            numbered.append((int(m.group(1)), f))
    if not numbered:
        raise ValueError(f"{folder}: no per-band PNG files named like '<scene>_ms_01.png' found")
    numbered.sort()
    planes = []
    for _, f in numbered:
        with Image.open(f) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                plane = np.asarray(im).astype(np.uint16 if im.mode.startswith("I;16") else np.int64)
            elif im.mode in ("L", "P"):
                plane = np.asarray(im.convert("L"))
            elif im.mode in ("RGB", "RGBA", "LA"):  # a gray band saved with colour channels: take one
                plane = np.asarray(im)[..., 0]
            else:
                raise ValueError(f"{f}: unsupported PNG mode {im.mode!r} for a spectral band")
        if planes and plane.shape != planes[0].shape:
            raise ValueError(f"{f}: band image is {plane.shape}, the first band is {planes[0].shape}")
        planes.append(plane)
    cube = np.stack(planes, axis=-1)
    wl = np.arange(400.0, 701.0, 10.0) if cube.shape[-1] == 31 else None  # CAVE: 400–700 nm, 10 nm
    return cube, wl
