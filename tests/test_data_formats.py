"""Every supported format reads back to the same (H, W, C) cube; bad files give one clear message."""

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
from PIL import Image

from data import read_cube

H, W, C = 12, 10, 7
WL = np.linspace(450.0, 690.0, C)


@pytest.fixture(scope="module")
def cube():
    # integer values up to 60000 (> 8 bits) are exact in uint16, int32 and float32 alike
    return np.random.default_rng(3).integers(0, 60000, size=(H, W, C)).astype(np.float32)


def write_envi(path, cube, interleave="bil", byte_order=1, wl=WL):
    data = {"bsq": cube.transpose(2, 0, 1), "bil": cube.transpose(0, 2, 1), "bip": cube}[interleave]
    data.astype(">u2" if byte_order else "<u2").tofile(str(path) + ".img")
    with open(str(path) + ".hdr", "w") as f:
        f.write(f"ENVI\ndescription = {{test cube}}\nsamples = {W}\nlines = {H}\nbands = {C}\n"
                f"header offset = 0\ndata type = 12\ninterleave = {interleave}\nbyte order = {byte_order}\n"
                "wavelength units = Micrometers\n"
                "wavelength = {" + ",\n ".join(f"{v / 1000:.4f}" for v in wl) + "}\n")
    return str(path) + ".hdr"


def write_all(tmp, cube):
    """One file per format, each holding ``cube`` in that format's native convention."""
    paths = {}
    np.save(tmp / "c.npy", cube)
    paths["npy"] = tmp / "c.npy"
    np.savez(tmp / "c.npz", cube=cube, wavelengths=WL)
    paths["npz"] = tmp / "c.npz"
    scipy.io.savemat(tmp / "v5.mat", {"cube": cube, "wavelength": WL})
    paths["mat-v5"] = tmp / "v5.mat"
    # MATLAB v7.3 = HDF5 with a 512-byte header; MATLAB writes column-major, so h5py sees reversed axes
    with h5py.File(tmp / "v73.mat", "w", userblock_size=512) as f:
        f["cube"] = cube.T
        f["wavelengths"] = WL[:, None].T
    with open(tmp / "v73.mat", "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, created by a test".ljust(116))
    paths["mat-v7.3"] = tmp / "v73.mat"
    with h5py.File(tmp / "c.h5", "w") as f:
        d = f.create_dataset("data/cube", data=cube)
        d.attrs["wavelengths"] = WL
    paths["h5"] = tmp / "c.h5"
    paths["envi-bil"] = write_envi(tmp / "e_bil", cube, "bil", 1)
    paths["envi-bsq"] = write_envi(tmp / "e_bsq", cube, "bsq", 0)
    paths["envi-bip"] = write_envi(tmp / "e_bip", cube, "bip", 0)
    tifffile.imwrite(tmp / "contig.tif", cube.astype(np.uint16), photometric="minisblack", planarconfig="contig")
    paths["tiff-contig"] = tmp / "contig.tif"
    tifffile.imwrite(tmp / "planar.tif", cube.astype(np.uint16).transpose(2, 0, 1), photometric="minisblack",
                     planarconfig="separate")
    paths["tiff-planar"] = tmp / "planar.tif"
    folder = tmp / "scene_ms"
    folder.mkdir()
    for b in range(C):
        Image.fromarray(cube[..., b].astype(np.uint16)).save(folder / f"scene_ms_{b + 1:02d}.png")
    paths["cave-png16"] = folder
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory, cube):
    return write_all(tmp_path_factory.mktemp("formats"), cube)


FORMATS = ["npy", "npz", "mat-v5", "mat-v7.3", "h5", "envi-bil", "envi-bsq", "envi-bip", "tiff-contig",
           "tiff-planar", "cave-png16"]
WITH_WAVELENGTHS = {"npz", "mat-v5", "mat-v7.3", "h5", "envi-bil", "envi-bsq", "envi-bip"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_the_same_cube(files, cube, fmt):
    got = read_cube(files[fmt], wavelengths=WL if fmt not in WITH_WAVELENGTHS else None)
    assert got.data.shape == (H, W, C) and got.data.dtype == np.float32
    np.testing.assert_array_equal(got.data, cube)
    np.testing.assert_allclose(got.wavelengths, WL, atol=1e-3)  # from the file, or from the argument


def test_png_read_at_16_bits(files, cube):
    assert cube.max() > 255  # an 8-bit read would truncate these values
    assert read_cube(files["cave-png16"]).data.max() == cube.max()


def test_cave_wavelengths_default_for_31_bands(tmp_path):
    for b in range(31):
        Image.fromarray(np.full((4, 4), 1000 + b, np.uint16)).save(tmp_path / f"s_ms_{b + 1:02d}.png")
    got = read_cube(str(tmp_path))
    np.testing.assert_array_equal(got.wavelengths, np.arange(400, 701, 10))
    np.testing.assert_array_equal(got.data[0, 0], 1000 + np.arange(31))


def test_layouts(tmp_path, cube):
    np.save(tmp_path / "chw.npy", cube.transpose(2, 0, 1))
    np.testing.assert_array_equal(read_cube(str(tmp_path / "chw.npy"), layout="chw").data, cube)
    np.testing.assert_array_equal(read_cube(str(tmp_path / "chw.npy"), layout="auto").data, cube)
    np.testing.assert_array_equal(read_cube(str(tmp_path / "chw.npy"), layout="auto", wavelengths=WL).data, cube)


def test_wavelengths_from_flag_must_match_bands(files):
    with pytest.raises(ValueError, match=r"gives 31 wavelengths, expected 7"):
        read_cube(files["npy"], wavelengths="visible31")
    assert read_cube(files["npy"], wavelengths="450:690").wavelengths[-1] == 690


def test_bad_files_give_one_clear_message(tmp_path, cube):
    with pytest.raises(FileNotFoundError, match=r"nothere\.mat: no such file"):
        read_cube(str(tmp_path / "nothere.mat"))
    (tmp_path / "x.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"x\.jpg: unsupported extension '\.jpg'"):
        read_cube(str(tmp_path / "x.jpg"))
    scipy.io.savemat(tmp_path / "two.mat", {"a": cube, "b": cube})
    with pytest.raises(ValueError, match=r"two\.mat: several 3-D arrays \['a', 'b'\]; pass --key"):
        read_cube(str(tmp_path / "two.mat"))
    np.testing.assert_array_equal(read_cube(str(tmp_path / "two.mat"), key="b").data, cube)
    with pytest.raises(ValueError, match=r"two\.mat: no variable 'c' \(found \['a', 'b'\]\)"):
        read_cube(str(tmp_path / "two.mat"), key="c")
    bad = cube.copy()
    bad[0, 0, 0] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    with pytest.raises(ValueError, match=r"inf\.npy: the cube has 1 NaN/Inf value"):
        read_cube(str(tmp_path / "inf.npy"))
    np.save(tmp_path / "flat.npy", cube[..., 0])
    with pytest.raises(ValueError, match=r"flat\.npy: expected a 3-D cube, got an array of shape \(12, 10\)"):
        read_cube(str(tmp_path / "flat.npy"))
    hdr = write_envi(tmp_path / "short", cube)
    with open(str(tmp_path / "short") + ".img", "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match=r"short\.img: holds 50 values, the header .*short\.hdr announces"):
        read_cube(hdr)
    (tmp_path / "corrupt.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(ValueError, match=r"corrupt\.mat: cannot read"):
        read_cube(str(tmp_path / "corrupt.mat"))
