"""Data options (``utils.config.Option``): the official CLI names and defaults, plus the simulation / synthetic-data
options, and :data:`DATASETS`, the dataset kinds ``--dataset`` chooses from (``data/datasets.py`` registers them).

``DATA_DEFAULTS`` holds every key ``build_dataset`` reads; ``add_data_args(parser)`` adds the matching
flags so ``args = vars(parser.parse_args())`` is a valid ``cfg``. ``seed`` and ``compat`` are shared with the
networks and the training scripts: they are added only if the parser does not have them.
"""

from __future__ import annotations

import argparse

from utils import defaults
from utils.config import Option, Range, add_options
from utils.registry import Registry

from .degrade import BLUR_KINDS, BORDER_MODES, Degradation

#: Dataset kinds: name → class ``(cfg, split) -> FusionDataset``, with the options the kind alone reads.
DATASETS: Registry = Registry("dataset kind", "--dataset")

DATA = "data"
DEGRADATION = "degradation (Wald's protocol)"
_POSITIVE, _NON_NEGATIVE, _SNR = Range(1), Range(0), Range(0, high=300)


def _data(name: str, **kw) -> Option:
    return Option(name, group=DATA, **kw)


def _split_list(split: str) -> Option:
    return _data(f"{split}_file", default=f"./data/{split}.txt", beside_config=True,
                 help=f"{'training' if split == 'train' else 'validation' if split == 'val' else 'test'} split list")


# Official flags first (train_CSAKD.py / test_CSAKD.py), then this project's.
DATA_OPTIONS = (
    _data("dataset", choices=DATASETS, default="aviris",
          help="official layout | own cubes simulated on the fly | built-in synthetic scenes | scenes of measured "
               "reflectance spectra (needs colour-science) | PanCollection files (pansharpening) | built-in scenes "
               "through a WV3-like sensor (pansharpening)"),
    _data("root", default="../../Fusion_data", help="dataset root (entries of the split files are relative to it)"),
    *(_split_list(split) for split in ("train", "val", "test")),
    _data("msi_bands", type=int, default=defaults.MSI_BANDS, range=_POSITIVE, help="HR-MSI bands (reads key hrmsi<M>)"),
    _data("mis_pix", type=int, default=0, choices=(0, 1, 2, 3),
          help="use the LR-HSI misaligned by this level (key lrhsi<k>)"),
    _data("mixed_align_opt", type=int, default=0, choices=(0, 1),
          help="1: each training sample draws one of the four LR-HSI variants"),
    _data("crop_size", type=int, default=128, range=_POSITIVE, help="HR training crop (multiple of scale)"),
    _data("image_size", type=int, default=256, range=_NON_NEGATIVE,
          help="HR images are cut to this size (official [:256,:256]); synthetic scene size; 0 = as stored"),
    _data("bands", type=int, default=defaults.BANDS, range=_POSITIVE, help="HSI bands"),
    _data("scale", type=int, default=defaults.SCALE, range=_POSITIVE, help="spatial ratio HR/LR"),
    _data("data_seed", type=int,
          help="seed of the generated scenes and of the simulated inputs (--dataset synthetic, realistic, cube, "
               "synthetic_pan); "
               "default --seed. With it set, --seed drives only initialisation, batch order, augmentation and "
               "training noise"),
    _data("synthetic_scenes", type=int, nargs=3, default=[32, 8, 8], metavar=("TRAIN", "VAL", "TEST"),
          range=_NON_NEGATIVE,
          help="number of generated scenes per split (--dataset synthetic, realistic and synthetic_pan)"),
    _data("unlabelled", type=int, default=0, metavar="N", range=_NON_NEGATIVE,
          help="N extra training scenes (--dataset synthetic, realistic; their own seed stream) used as input pairs "
               "whose GT is never read: labelled by the frozen teacher (--kd_mode offline); with --kd_mode none "
               "their GT is the control's target"),
    _data("unlabelled_file", metavar="LIST", beside_config=True,
          help="split list of own input pairs whose GT is never read, the --unlabelled of --dataset aviris (entries "
               "of <e>lrhsi.npz and <e>hrmsi.npz, no GT: e.g. full-resolution acquisitions) and cube (cubes, "
               "simulated); labelled as --unlabelled is"),
)


def _degradation(name: str, **kw) -> Option:
    return Option(name, group=DEGRADATION, **kw)


#: The simulated LR-HSI / HR-MSI pair (shared by the datasets and ``data.prepare``).
DEGRADATION_OPTIONS = (
    _degradation("wavelengths",
                 help="band centres in nm when the file has none: preset aviris172|visible31, 'lo:hi', or a "
                      "text/CSV file (default: aviris172 for 172 bands, visible31 for 31)"),
    _degradation("srf", nargs="+",
                 help="HR-MSI spectral responses: built-in rgb|msN (ms4, ms6, ...), a measured camera "
                      "camera:nikon5100|sigma_sdmerrill[@ILLUMINANT] (colour-science), or CSV files (wavelength, "
                      "band1, ...); default: datasets ms<msi_bands> (rgb for 3 bands), data.prepare ms4 ms6"),
    _degradation("blur", choices=BLUR_KINDS, default="gaussian", help="spatial blur kernel"),
    _degradation("blur_sigma", type=float, default=2.0, range=_NON_NEGATIVE, help="Gaussian σ in HR pixels"),
    _degradation("blur_size", type=int, range=_POSITIVE, help="Gaussian taps (odd; default 2·ceil(3σ)+1)"),
    _degradation("phase", type=int, range=_NON_NEGATIVE, help="decimation phase in HR pixels (default scale//2)"),
    _degradation("border", choices=BORDER_MODES, default="reflect", help="image border handling for blur/shift"),
    _degradation("snr_hsi", type=float, default=0.0, range=_SNR, help="LR-HSI noise SNR in dB (0 = none)"),
    _degradation("snr_msi", type=float, default=0.0, range=_SNR, help="HR-MSI noise SNR in dB (0 = none)"),
    _degradation("misreg", type=float, nargs=2, default=[1.0, 1.0], metavar=("DY", "DX"), range=_NON_NEGATIVE,
                 help="HR-pixel shift per misalignment level k of lrhsi{k}, k = 1..3"),
    _degradation("key", help="variable/dataset name of the cube in .mat/.h5/.npz files"),
    _degradation("layout", choices=("hwc", "chw", "auto"), default="hwc",
                 help="axis order of the stored cube (after MATLAB v7.3 axes are restored)"),
)

#: Read by the datasets, owned by the run (``--seed``) and the networks (``--compat``; here: the official training
#: crop grid, last offset excluded); added by :func:`add_data_args` to a parser without them.
_SHARED = (Option("seed", type=int, default=defaults.SEED, group=DATA, help="random seed"),
           Option("compat", choices=("official",), group=DATA,
                  help="'official': official training crop grid (last offset excluded)"))

#: Every key ``build_dataset`` reads, at its default.
DATA_DEFAULTS: dict = {o.name: o.default for o in (*DATA_OPTIONS, *_SHARED, *DEGRADATION_OPTIONS)}


def _add_missing(parser: argparse.ArgumentParser, options: tuple[Option, ...]) -> argparse.ArgumentParser:
    have = {a.dest for a in parser._actions}
    return add_options(parser, [o for o in options if o.name not in have])


def add_degradation_args(parser: argparse.ArgumentParser) -> None:
    """Flags of the simulated LR-HSI / HR-MSI pair (shared by ``add_data_args`` and ``data.prepare``)."""
    _add_missing(parser, DEGRADATION_OPTIONS)


def add_data_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add all data flags (official names and defaults first) to ``parser`` (a flag it has already, such as a
    script's own ``--seed``, is kept); returns it."""
    return _add_missing(parser, (*DATA_OPTIONS, *_SHARED, *DEGRADATION_OPTIONS))


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
