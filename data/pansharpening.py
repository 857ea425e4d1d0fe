"""Pansharpening datasets: PanCollection files (``--dataset pancollection``) and the built-in scenes seen through a
WV3-like sensor (``--dataset synthetic_pan``), both as the codebase's fusion samples (docs/pansharpening.md).

Mapping onto the fusion API: LR-HSI ← ``ms`` (C = 4 or 8 bands, h×w), HR-MSI ← ``pan`` (``--msi_bands 1``,
H×W = ratio·h × ratio·w), target ← ``gt`` (C, H, W). Every key is divided by the sensor scale (2047; GF2 1023;
``--img_range`` overrides) and mapped x ↦ 2x − 1, never clipped (``lms`` overshoots); the sample's ``maxv`` is
that scale and ``minv`` 0, so DN = (x + 1)/2 · maxv as for any sample (``FusionDataset.gt_range``).
Validation and test samples also carry ``"lms"`` (C, H, W), the MS on the PAN grid by the 23-tap interpolator
(the file's own ``lms`` when it has one), the EXP baseline of the field. ``--resolution full`` gives the
full-resolution (FR) examples: no ``"gt"`` key, test split only.
"""

from __future__ import annotations

import os

import numpy as np

from utils.config import Option, Range

from .options import DATASETS, data_seed_of
from .pancollection import PanCollectionFile
from .resample import interp23tap
from .sample import FusionDataset
from .sensors import SENSORS, get_sensor
from .synthetic import make_scene, scene_seed
from .wald import PAN_BLURS, reduced_resolution_example, scene_acquisition

PANSHARPENING = "pansharpening"
RESOLUTIONS = ("reduced", "full")
#: Sampling of the built-in scenes (nm): every WV3 MS band and the PAN lie inside 400–1040 nm.
SCENE_WAVELENGTHS = np.arange(400.0, 1041.0, 10.0)
SPLIT_FLAGS = {"train": "train_file", "val": "val_file", "test": "test_file"}


def _option(name: str, **kw) -> Option:
    return Option(name, group=PANSHARPENING, **kw)


#: Read by both kinds (declared once, with the first registration: a flag is declared in one place).
SENSOR = _option("sensor", choices=SENSORS,
                 help="pansharpening sensor: MS band count, DN scale and MTF gains (--dataset synthetic_pan: default "
                      "WV3; pancollection: required unless --img_range)")
SHARED_OPTIONS = (
    SENSOR,
    _option("img_range", type=float, range=Range(0, open_low=True),
            help="pansharpening: the DN that maps to 1.0 before x -> 2x-1 (default the sensor's scale: 2047, "
                 "GF2 1023)"),
    _option("resolution", choices=RESOLUTIONS, default="reduced",
            help="pansharpening examples: reduced (Wald's protocol, with gt) or full (the acquired pair, no gt: test "
                 "split only)"),
)
PAN_BLUR = _option("pan_blur", choices=PAN_BLURS, default="bicubic",
                   help="--dataset synthetic_pan: PAN degradation of the reduced-resolution examples (bicubic = the "
                        "toolbox's imresize; mtf = the sensor's PAN MTF, then 2::4)")


def _hwc(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 0, -1)


class PansharpeningDataset(FusionDataset):
    """Shared by the pansharpening kinds: the checks of the flags against the sensor and the split, the
    normalisation by the sensor scale and the sample of one example {key: (C, H, W) DN} (:meth:`example`)."""

    task = "pansharpening"

    def __init__(self, cfg: dict, split: str, sensor: str | None):
        super().__init__(cfg, split)
        if split == "unlabelled":
            raise ValueError("--unlabelled: the pansharpening datasets have no unlabelled split")
        if self.mis_pix or self.mixed:
            raise ValueError(f"--mis_pix {self.mis_pix} / --mixed_align_opt {int(self.mixed)}: pansharpening data "
                             f"has no misaligned MS variants; expected 0")
        self.sensor = sensor
        self.full = cfg["resolution"] == "full"
        if self.full and split != "test":
            raise ValueError(f"--resolution full: full-resolution examples have no gt, so they are for testing only "
                             f"(test_CSAKD.py --resolution full); the {split} split needs --resolution reduced")
        given = cfg.get("img_range")
        self.img_range = float(given) if given is not None else (get_sensor(sensor).scale if sensor else None)
        if sensor is not None and self.img_range is None:
            raise ValueError(f"--sensor {sensor}: no DN scale known (PanCollection has no such data); pass "
                             f"--img_range (the DN of 1.0)")
        self.bands, self.msi_bands = int(cfg["bands"]), int(cfg["msi_bands"])
        if self.msi_bands != 1:
            raise ValueError(f"--msi_bands {self.msi_bands}: pansharpening's HR input is the one-band PAN; "
                             f"expected --msi_bands 1")

    def check_bands(self, found: int, where: str) -> None:
        """One ValueError unless ``--bands`` equals the MS band count ``found`` (of the sensor or the file)."""
        if self.bands != found:
            raise ValueError(f"--bands {self.bands}: {where} has {found} MS bands; expected --bands {found}")

    def example(self, index: int) -> tuple[str, dict[str, np.ndarray]]:
        """(name, {key: (C, H, W) float64 DN}): ``ms``, ``pan``, ``lms`` (optional) and, at RR, ``gt``."""
        raise NotImplementedError

    def gt_range(self, gt: np.ndarray | None) -> tuple[float, float]:
        return self.img_range, 0.0

    def __getitem__(self, index: int) -> dict:
        name, ex = self.example(index)
        if not self.train and "lms" not in ex:
            ex = {**ex, "lms": interp23tap(ex["ms"], self.ratio)}
        unit = {k: _hwc(ex[k] / self.img_range).astype(np.float32)
                for k in ("ms", "pan", *(() if self.train else ("lms",)))}
        gt = None if self.full else _hwc(ex["gt"])
        return self.make_sample(name, gt, unit.pop("pan"), unit.pop("ms"), unit)

    def inputs_item(self, index: int) -> dict:
        raise ValueError("--unlabelled: the pansharpening datasets have no unlabelled inputs")


@DATASETS.register("pancollection", options=SHARED_OPTIONS)
class PanCollectionDataset(PansharpeningDataset):
    """PanCollection files (``data.pancollection``): the split flags name the files themselves (``--train_file
    train_wv3.h5 --val_file valid_wv3.h5 --test_file test_wv3_multiExm1.h5``, relative to ``--root`` unless
    absolute; .h5 N×C×H×W or a per-example .mat), read one example at a time. Training: a random ``crop_size``
    crop (PanCollection tiles are 64: crop 64 = the whole tile) and the usual flips and rotations."""

    def __init__(self, cfg: dict, split: str):
        super().__init__(cfg, split, cfg.get("sensor"))
        flag = SPLIT_FLAGS[split]
        rel = str(cfg[flag])
        path = rel if os.path.isabs(rel) else os.path.join(str(cfg["root"]), rel)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--{flag} {rel}: no such file {path} (expected a PanCollection .h5 or .mat, "
                                    f"relative to --root {cfg['root']})")
        if self.sensor is None and self.img_range is None:
            raise ValueError(f"--dataset pancollection: pass --sensor (one of {', '.join(SENSORS)}) or --img_range "
                             f"(the DN of 1.0) for {path}")
        self.file = PanCollectionFile(path, self.sensor, self.img_range)
        self._check_file(path)

    def _check_file(self, path: str) -> None:
        f = self.file
        if f.full and not self.full:
            what = "pass --resolution full" if self.split == "test" else \
                "training and validation need reduced-resolution files (with gt)"
            raise ValueError(f"{path}: a full-resolution file (no 'gt'): {what}")
        if self.full and not f.full:
            raise ValueError(f"{path}: a reduced-resolution file (has 'gt'), read with --resolution full; pass "
                             f"--resolution reduced, or the full-resolution file")
        if f.ratio != self.scale:
            raise ValueError(f"--scale {self.scale}: {path} has a PAN/MS ratio of {f.ratio}; expected --scale "
                             f"{f.ratio}")
        self.check_bands(f.bands, path)

    def __len__(self) -> int:
        return len(self.file)

    def example(self, index: int) -> tuple[str, dict[str, np.ndarray]]:
        stem = os.path.splitext(os.path.basename(self.file.path))[0]
        return f"{stem}_{index:04d}", self.file.example(index)


@DATASETS.register("synthetic_pan", options=(PAN_BLUR,))
class SyntheticPanDataset(PansharpeningDataset):
    """Built-in scenes (``data.synthetic.make_scene`` at :data:`SCENE_WAVELENGTHS`) through the WV3-like sensor
    (``data.wald.scene_acquisition``: integer DN), no files. ``image_size`` is the scene, i.e. the FR PAN size (a
    multiple of 4·scale); ``synthetic_scenes`` the (train, val, test) counts, each split drawn from its own seed
    stream of ``--data_seed`` as ``--dataset synthetic``. RR example (``reduced_resolution_example``): gt = the FR
    MS; a 256 scene gives gt 8×64×64, ms 8×16×16, pan 64×64. ``--resolution full``: the FR pair itself (ms
    8×64×64, pan 256×256, lms = interp23tap(ms)). Examples are simulated once and kept in memory."""

    def __init__(self, cfg: dict, split: str):
        super().__init__(cfg, split, cfg.get("sensor") or "WV3")
        self.check_bands(get_sensor(self.sensor).bands, f"--sensor {self.sensor}")
        counts = list(cfg["synthetic_scenes"])
        if len(counts) != 3 or min(counts) < 0:
            raise ValueError(f"--synthetic_scenes must be three counts >= 0 (train val test), got {counts}")
        self.n = int(counts[("train", "val", "test").index(split)])
        if self.n == 0:
            raise ValueError(f"--synthetic_scenes {counts}: the {split} split has no scenes")
        self.size = int(cfg["image_size"])
        step = self.scale * self.scale
        if self.size <= 0 or self.size % step:
            raise ValueError(f"--image_size {self.size}: the scene (FR PAN) size must be a positive multiple of "
                             f"{step} (scale² for the MS of the reduced-resolution example)")
        self.pan_blur = cfg["pan_blur"]
        self.seed = data_seed_of(cfg)
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.n

    def example(self, index: int) -> tuple[str, dict[str, np.ndarray]]:
        if index not in self._cache:
            self._cache[index] = self.simulate(index)
        return f"synthetic_pan/{self.split}_{index:04d}", self._cache[index]

    def simulate(self, index: int) -> dict[str, np.ndarray]:
        """Example ``index`` of the split: {key: (C, H, W) float64 DN} (FR: ms, pan, lms; RR: gt, ms, lms, pan)."""
        cube = make_scene(scene_seed(self.seed, self.split, index), self.size, SCENE_WAVELENGTHS)
        ms, pan = scene_acquisition(cube, SCENE_WAVELENGTHS, self.sensor, self.scale)
        if self.full:
            return {"ms": ms, "pan": pan, "lms": interp23tap(ms, self.scale)}
        ex = reduced_resolution_example(ms, pan, self.sensor, self.scale, self.pan_blur)
        if self.train:
            del ex["lms"]  # training crops do not use it
        return ex
