"""Data flags: the official CLI names and defaults, plus the simulation / synthetic-data options.

``DATA_DEFAULTS`` holds every key ``build_dataset`` reads; ``add_data_args(parser)`` adds the matching
flags so ``args = vars(parser.parse_args())`` is a valid ``cfg``. ``scale``, ``seed`` and ``compat`` are
shared with the model and the training scripts: they are added only if the parser does not have them.
"""

from __future__ import annotations

import argparse

from utils import defaults

from .degrade import BLUR_KINDS, BORDER_MODES, Degradation

DATA_DEFAULTS: dict = {
    # dataset kind: "aviris" (official layout, also what data.prepare writes), "cube" (own cubes,
    # simulated on the fly), "synthetic" (built-in scenes, no files), "realistic" (measured spectra, no files)
    "dataset": "aviris",
    # official flags (train_CSAKD.py / test_CSAKD.py)
    "root": "../../Fusion_data",
    "train_file": "./data/train.txt",
    "val_file": "./data/val.txt",
    "test_file": "./data/test.txt",
    "msi_bands": defaults.MSI_BANDS,
    "mis_pix": 0,
    "mixed_align_opt": 0,
    "crop_size": 128,
    "image_size": 256,
    "bands": defaults.BANDS,
    # shared with the model / scripts
    "scale": defaults.SCALE,
    "seed": defaults.SEED,
    "data_seed": None,  # None: the seed (``data_seed_of``)
    "compat": None,
    # generated scenes (synthetic, realistic): counts for train, val, test (HR size = image_size, C = bands)
    "synthetic_scenes": [32, 8, 8],
    # extra training inputs whose GT is never read (synthetic, realistic): scenes from their own seed stream
    "unlabelled": 0,
    # spectral axis and HR-MSI
    "wavelengths": None,
    "srf": None,
    # degradation (Wald's protocol), see data/degrade.py
    "blur": "gaussian",
    "blur_sigma": 2.0,
    "blur_size": None,
    "phase": None,
    "border": "reflect",
    "snr_hsi": 0.0,
    "snr_msi": 0.0,
    "misreg": [1.0, 1.0],
    # reading own cubes (dataset "cube", data.prepare)
    "key": None,
    "layout": "hwc",
}


def _add(parser: argparse.ArgumentParser, *names: str, **kwargs) -> None:
    try:
        parser.add_argument(*names, **kwargs)
    except argparse.ArgumentError:  # already defined by the calling script (shared flag)
        pass


def add_degradation_args(parser: argparse.ArgumentParser) -> None:
    """Flags of the simulated LR-HSI / HR-MSI pair (shared by ``add_data_args`` and ``data.prepare``)."""
    d = DATA_DEFAULTS
    g = parser.add_argument_group("degradation (Wald's protocol)")
    g.add_argument(
        "--wavelengths",
        default=d["wavelengths"],
        help="band centres in nm when the file has none: preset aviris172|visible31, 'lo:hi', "
        "or a text/CSV file (default: aviris172 for 172 bands, visible31 for 31)",
    )
    g.add_argument(
        "--srf",
        nargs="+",
        default=d["srf"],
        help="HR-MSI spectral responses: built-in rgb|msN (ms4, ms6, ...), a measured camera "
        "camera:nikon5100|sigma_sdmerrill[@ILLUMINANT] (colour-science), or CSV files "
        "(wavelength, band1, ...); default: datasets ms<msi_bands> (rgb for 3 bands), "
        "data.prepare ms4 ms6",
    )
    g.add_argument("--blur", choices=BLUR_KINDS, default=d["blur"], help="spatial blur kernel")
    g.add_argument("--blur_sigma", type=float, default=d["blur_sigma"], help="Gaussian σ in HR pixels")
    g.add_argument("--blur_size", type=int, default=d["blur_size"], help="Gaussian taps (odd; default 2·ceil(3σ)+1)")
    g.add_argument("--phase", type=int, default=d["phase"], help="decimation phase in HR pixels (default scale//2)")
    g.add_argument("--border", choices=BORDER_MODES, default=d["border"], help="image border handling for blur/shift")
    g.add_argument("--snr_hsi", type=float, default=d["snr_hsi"], help="LR-HSI noise SNR in dB (0 = none)")
    g.add_argument("--snr_msi", type=float, default=d["snr_msi"], help="HR-MSI noise SNR in dB (0 = none)")
    g.add_argument(
        "--misreg",
        nargs=2,
        type=float,
        default=d["misreg"],
        metavar=("DY", "DX"),
        help="HR-pixel shift per misalignment level k of lrhsi{k}, k = 1..3",
    )
    g.add_argument("--key", default=d["key"], help="variable/dataset name of the cube in .mat/.h5/.npz files")
    g.add_argument(
        "--layout",
        choices=("hwc", "chw", "auto"),
        default=d["layout"],
        help="axis order of the stored cube (after MATLAB v7.3 axes are restored)",
    )


def add_data_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add all data flags (official names and defaults first) to ``parser``; returns it."""
    d = DATA_DEFAULTS
    g = parser.add_argument_group("data")
    g.add_argument(
        "--dataset",
        choices=("aviris", "cube", "synthetic", "realistic"),
        default=d["dataset"],
        help="official layout | own cubes simulated on the fly | built-in synthetic scenes | scenes of measured "
        "reflectance spectra (needs colour-science)",
    )
    g.add_argument("--root", default=d["root"], help="dataset root (entries of the split files are relative to it)")
    g.add_argument("--train_file", default=d["train_file"], help="training split list")
    g.add_argument("--val_file", default=d["val_file"], help="validation split list")
    g.add_argument("--test_file", default=d["test_file"], help="test split list")
    g.add_argument("--msi_bands", type=int, default=d["msi_bands"], help="HR-MSI bands (reads key hrmsi<M>)")
    g.add_argument(
        "--mis_pix",
        type=int,
        default=d["mis_pix"],
        choices=(0, 1, 2, 3),
        help="use the LR-HSI misaligned by this level (key lrhsi<k>)",
    )
    g.add_argument(
        "--mixed_align_opt",
        type=int,
        default=d["mixed_align_opt"],
        choices=(0, 1),
        help="1: each training sample draws one of the four LR-HSI variants",
    )
    g.add_argument("--crop_size", type=int, default=d["crop_size"], help="HR training crop (multiple of scale)")
    g.add_argument(
        "--image_size",
        type=int,
        default=d["image_size"],
        help="HR images are cut to this size (official [:256,:256]); synthetic scene size; 0 = as stored",
    )
    g.add_argument("--bands", type=int, default=d["bands"], help="HSI bands")
    _add(g, "--scale", type=int, default=d["scale"], help="spatial ratio HR/LR")
    _add(g, "--seed", type=int, default=d["seed"], help="random seed")
    g.add_argument("--data_seed", type=int, default=d["data_seed"],
                   help="seed of the generated scenes and of the simulated inputs (--dataset synthetic, realistic, "
                        "cube); default --seed. With it set, --seed drives only initialisation, batch order, "
                        "augmentation and training noise")
    _add(
        g,
        "--compat",
        choices=("official",),
        default=d["compat"],
        help="'official': official training crop grid (last offset excluded)",
    )
    g.add_argument(
        "--synthetic_scenes",
        nargs=3,
        type=int,
        default=d["synthetic_scenes"],
        metavar=("TRAIN", "VAL", "TEST"),
        help="number of generated scenes per split (--dataset synthetic and realistic)",
    )
    g.add_argument(
        "--unlabelled",
        type=int,
        default=d["unlabelled"],
        metavar="N",
        help="N extra training scenes (--dataset synthetic, realistic; their own seed stream) used as input pairs "
        "whose GT is never read: labelled by the frozen teacher (--kd_mode offline); with --kd_mode none their GT "
        "is the control's target",
    )
    add_degradation_args(parser)
    return parser


def data_seed_of(cfg: dict) -> int:
    """The seed the datasets draw their scenes and simulated noise from: ``--data_seed``, else ``--seed``."""
    value = cfg.get("data_seed")
    return int(cfg.get("seed", defaults.SEED) if value is None else value)


def degradation_from_cfg(cfg: dict, levels: int = 3) -> Degradation:
    """The ``Degradation`` described by the flag values in ``cfg`` (missing keys take ``DATA_DEFAULTS``)."""
    c = {**DATA_DEFAULTS, **cfg}
    return Degradation(
        ratio=int(c["scale"]),
        blur=c["blur"],
        sigma=float(c["blur_sigma"]),
        kernel_size=c["blur_size"],
        phase=c["phase"],
        border=c["border"],
        snr_hsi=float(c["snr_hsi"]),
        snr_msi=float(c["snr_msi"]),
        misreg=tuple(c["misreg"]),
        misreg_levels=levels,
    )
