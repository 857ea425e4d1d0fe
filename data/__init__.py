"""Data: the official AVIRIS layout, the user's own HR-HSI cubes through a logged degradation, and
built-in synthetic scenes and realistic scenes of measured spectra (``data.realistic``, optional
colour-science). Every dataset returns the same sample dict (see ``data.sample``).

Entry points: ``build_dataset(cfg, split)``, ``add_data_args(parser)`` / ``DATA_DEFAULTS``,
``seed_worker`` (DataLoader ``worker_init_fn``), ``python -m data.prepare``, ``python -m data.check``.
"""

from .aviris import LayoutSpec, load_entry, read_split, write_entry
from .datasets import AvirisDataset, CubeDataset, RealisticDataset, SyntheticDataset, build_dataset, msi_srf
from .degrade import Degradation, add_noise, blur_decimate, shift_image, simulate_scene
from .formats import Cube, read_cube
from .options import DATA_DEFAULTS, add_data_args, add_degradation_args, degradation_from_cfg
from .pansharpening import PanCollectionDataset, SyntheticPanDataset
from .sample import FusionDataset, augment, crop_offsets, normalise_gt, seed_worker, to_signed
from .sensors import builtin_srf, load_srf_csv, resolve_srf
from .spectral import resolve_wavelengths
from .synthetic import make_scene, scene_seed

__all__ = [
    "DATA_DEFAULTS",
    "AvirisDataset",
    "Cube",
    "CubeDataset",
    "Degradation",
    "FusionDataset",
    "LayoutSpec",
    "PanCollectionDataset",
    "RealisticDataset",
    "SyntheticDataset",
    "SyntheticPanDataset",
    "add_data_args",
    "add_degradation_args",
    "add_noise",
    "augment",
    "blur_decimate",
    "build_dataset",
    "builtin_srf",
    "crop_offsets",
    "degradation_from_cfg",
    "load_entry",
    "load_srf_csv",
    "make_scene",
    "msi_srf",
    "normalise_gt",
    "read_cube",
    "read_split",
    "resolve_srf",
    "resolve_wavelengths",
    "scene_seed",
    "seed_worker",
    "shift_image",
    "simulate_scene",
    "to_signed",
    "write_entry",
]
