"""From raw arrays to the sample dict: normalisation (docs/csakd.md §1.3), crops and augmentation (§1.4).

Every dataset of this package subclasses ``FusionDataset`` and only says how to load an image; the
sample contract, crops, flips/rotations, misalignment choice and the RNG live here, once.

Reproducible augmentation: each dataset owns a ``random.Random`` seeded from ``cfg["seed"]`` and the
split (official: Python ``random`` seeded 1029). With DataLoader workers, pass
``worker_init_fn=data.seed_worker`` and a seeded ``generator=torch.Generator().manual_seed(seed)``:
each worker then reseeds its dataset copy from the worker seed torch derives from that generator,
so the augmentation stream is a function of the seed (different per worker and per epoch), and
identical between runs with the same seed and the same ``num_workers``.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch.utils.data import Dataset

from utils import defaults

SPLITS = ("train", "val", "test", "unlabelled")  # unlabelled: extra training inputs whose GT is never read
LR_LEVELS = (0, 1, 2, 3)  # aligned + the three misaligned LR-HSIs of the official layout


def normalise_gt(gt: np.ndarray, where: str = "GT", value_range: tuple[float, float] | None = None
                 ) -> tuple[np.ndarray, float, float]:
    """Min–max to [−1, 1]: y = 2·(GT − minv)/(maxv − minv) − 1 over all bands and pixels.

    ``value_range`` (maxv, minv) defaults to the image's own max and min (per-image, the HSI rule); a dataset
    passes a fixed one instead (pansharpening: (sensor scale, 0), i.e. y = 2·DN/scale − 1).
    Returns (y float32 same shape, maxv, minv) with maxv/minv in the GT's raw units (for raw-unit RMSE).
    Official: the GT normalisation of ``dataset_joint.__getitem__`` in dataset.py.
    """
    maxv, minv = value_range if value_range is not None else (float(gt.max()), float(gt.min()))
    if not maxv > minv:
        raise ValueError(f"{where}: GT is constant ({minv}), cannot be min-max normalised")
    y = (gt.astype(np.float32) - np.float32(minv)) * np.float32(2.0 / (maxv - minv)) - np.float32(1.0)
    return y, maxv, minv


def to_signed(x: np.ndarray) -> np.ndarray:
    """[0, 1] → [−1, 1] by x ↦ 2x − 1 (LR-HSI and HR-MSI, official: assumed pre-scaled to [0, 1])."""
    return x.astype(np.float32) * np.float32(2.0) - np.float32(1.0)


def crop_offsets(size: int, crop: int, scale: int, compat: str | None = None) -> list[int]:
    """Allowed HR crop offsets along one axis: multiples of ``scale`` from 0 to ``size − crop``.

    The last offset ``size − crop`` is included by default; ``compat="official"`` excludes it as the
    official ``range(0, 256 − 128, 4)`` does (docs/decisions.md #6). When that leaves no offset (crop =
    size) the official grid falls back to [0] instead of failing.
    """
    if crop % scale:
        raise ValueError(f"--crop_size {crop} must be divisible by the scale {scale} (LR crop = crop/scale)")
    if crop > size:
        raise ValueError(f"--crop_size {crop} is larger than the image ({size} pixels)")
    stop = size - crop + (0 if compat == "official" else 1)
    return list(range(0, stop, scale)) or [0]


def augment(rng: random.Random, *arrays: np.ndarray) -> list[np.ndarray]:
    """Apply one random flip/rotation draw identically to every (H, W, C) array (official order):
    p=0.5 flip along width; p=0.5 flip along height; p=0.5 rotate by 90°·k, k uniform in {1, 2, 3}."""
    out = list(arrays)
    if rng.random() < 0.5:
        out = [a[:, ::-1] for a in out]
    if rng.random() < 0.5:
        out = [a[::-1] for a in out]
    if rng.random() < 0.5:
        k = rng.randint(1, 3)
        out = [np.rot90(a, k, axes=(0, 1)) for a in out]
    return out


def normalise_compat(compat: str | None) -> str | None:
    """``None`` (corrected defaults) or ``"official"``; the strings "", "none", "default" mean None."""
    if compat in (None, "", "none", "None", "default"):
        return None
    if compat != "official":
        raise ValueError(f"--compat must be 'official' or empty, got {compat!r}")
    return "official"


def _chw(a: np.ndarray) -> torch.Tensor:
    # an explicit copy: flipped views of size-1 axes count as contiguous yet keep negative strides
    return torch.from_numpy(np.array(a.transpose(2, 0, 1), dtype=np.float32, order="C", copy=True))


class FusionDataset(Dataset):
    """Base of all datasets: turns ``load(index, level)`` into the sample dict (docs/own-data.md).

    Sample: {"lrhsi": (C, h, w), "hrmsi": (M, H, W), "gt": (C, H, W) float32 tensors in [−1, 1],
    "name": str, "maxv": float, "minv": float} with H = scale·h; DN = (x + 1)/2·(maxv − minv) + minv. Train
    split: one random crop of ``crop_size`` (offsets from ``crop_offsets``) plus ``augment``; val/test: the full
    image. LR-HSI variant: ``lrhsi{mis_pix}``; with ``mixed_align_opt`` = 1 a training sample draws one of
    the four variants uniformly. Pansharpening samples (``data.pansharpening``) also carry ``"lms"`` (val/test),
    and full-resolution ones have no ``"gt"``.

    Class attributes a loop may branch on: ``task`` ("fusion" here, "pansharpening"), ``sensor`` (None, or the
    pansharpening sensor's name), ``full`` (True: full-resolution samples without GT); ``ratio`` is the HR/LR
    ratio (= ``scale``). ``unlabelled_flag``: the flag that gives a kind its ``unlabelled`` split (input pairs whose
    GT is never read): ``"unlabelled"`` (N extra built-in scenes), ``"unlabelled_file"`` (a split list of own
    data), None (none).
    """

    task = "fusion"
    sensor: str | None = None
    full = False
    unlabelled_flag: str | None = None
    without_gt: tuple[str, ...] = ()  # the names of the samples that have no GT (unlabelled input pairs)

    def __init__(self, cfg: dict, split: str):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        self.split = split
        self.train = split in ("train", "unlabelled")  # random crops and augmentation
        self.scale = int(cfg.get("scale", defaults.SCALE))
        self.crop_size = int(cfg.get("crop_size", 128))
        self.mis_pix = int(cfg.get("mis_pix", 0))
        self.mixed = bool(int(cfg.get("mixed_align_opt", 0)))
        self.compat = normalise_compat(cfg.get("compat"))
        if self.mis_pix not in LR_LEVELS:
            raise ValueError(f"--mis_pix must be one of {LR_LEVELS}, got {self.mis_pix}")
        self.reseed(int(cfg.get("seed", defaults.SEED)) * 10 + SPLITS.index(split))

    @property
    def ratio(self) -> int:
        """The HR/LR ratio of the samples (``scale``; PanCollection: 4)."""
        return self.scale

    def reseed(self, seed: int) -> None:
        """Restart the augmentation RNG (called by ``seed_worker`` in each DataLoader worker)."""
        self.rng = random.Random(seed)

    def load(self, index: int, level: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
        """(name, GT (H, W, C) raw units, HR-MSI (H, W, M) in [0, 1], LR-HSI of level ``level`` (H/r, W/r, C))
        as numpy arrays."""
        raise NotImplementedError

    def gt_range(self, gt: np.ndarray | None) -> tuple[float, float]:
        """(maxv, minv): the raw values that the GT's −1 and 1 stand for, the one normalisation hook. Default: the
        image's own max and min (per-image min–max, official), NaN without a GT (none exists); pansharpening:
        (sensor scale, 0.0)."""
        return (float(gt.max()), float(gt.min())) if gt is not None else (math.nan, math.nan)

    def load_inputs(self, index: int, level: int) -> tuple[str, np.ndarray, np.ndarray]:
        """(name, HR-MSI (H, W, M), LR-HSI (H/r, W/r, C)), both in [0, 1]: :meth:`load` with its GT discarded
        untouched; a kind whose inputs exist without a GT (a file layout) reads only them."""
        name, _, msi, lr = self.load(index, level)
        return name, msi, lr

    def __getitem__(self, index: int) -> dict:
        level = self.rng.choice(LR_LEVELS) if self.train and self.mixed else self.mis_pix
        return self.make_sample(*self.load(index, level))

    def make_sample(self, name: str, gt: np.ndarray | None, msi: np.ndarray, lr: np.ndarray,
                    extra: dict[str, np.ndarray] | None = None) -> dict:
        """The sample dict of loaded arrays (:meth:`load`'s), normalised, cropped and augmented for training.

        ``gt`` None: a sample without GT (full-resolution pansharpening). ``extra``: more HR arrays (H, W, C) in
        [0, 1] (pansharpening ``lms``), mapped to [−1, 1] like the inputs and cropped/augmented with them.
        """
        maxv, minv = self.gt_range(gt)
        hr = {"hrmsi": to_signed(msi), **{k: to_signed(v) for k, v in (extra or {}).items()}}
        if gt is not None:
            hr["gt"] = normalise_gt(gt, where=name, value_range=(maxv, minv))[0]
        lr = to_signed(lr)
        if self.train:
            keys = sorted(hr, key=lambda k: k != "gt")  # the GT first: its size decides the crop (as before)
            cropped, lr = self._crop([hr[k] for k in keys], lr, name)
            *cropped, lr = augment(self.rng, *cropped, lr)
            hr = dict(zip(keys, cropped, strict=True))
        sample = {"lrhsi": _chw(lr), "hrmsi": _chw(hr.pop("hrmsi"))}
        if "gt" in hr:
            sample["gt"] = _chw(hr.pop("gt"))
        sample.update({k: _chw(v) for k, v in hr.items()})
        return {**sample, "name": name, "maxv": maxv, "minv": minv}

    def inputs_item(self, index: int) -> dict:
        """The inputs of sample ``index`` without its GT, for pairs whose GT is never read (``--unlabelled``):
        {"lrhsi", "hrmsi", "name"} as :meth:`__getitem__`'s (the same crop and augmentation draws, on the inputs
        only), read by :meth:`load_inputs`."""
        level = self.rng.choice(LR_LEVELS) if self.train and self.mixed else self.mis_pix
        name, msi, lr = self.load_inputs(index, level)
        sample = self.make_sample(name, None, msi, lr)  # the same crop and augmentation draws as with a GT
        return {k: sample[k] for k in ("lrhsi", "hrmsi", "name")}

    def _crop(self, hr: list[np.ndarray], lr: np.ndarray, name: str) -> tuple[list[np.ndarray], np.ndarray]:
        """One random ``crop_size`` window of the HR arrays ``hr`` (the first one's size) and the LR window under it."""
        c, s = self.crop_size, self.scale
        try:
            y0 = self.rng.choice(crop_offsets(hr[0].shape[0], c, s, self.compat))
            x0 = self.rng.choice(crop_offsets(hr[0].shape[1], c, s, self.compat))
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        window = (slice(y0, y0 + c), slice(x0, x0 + c))
        lr_win = (slice(y0 // s, (y0 + c) // s), slice(x0 // s, (x0 + c) // s))
        return [a[window] for a in hr], lr[lr_win]


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoader: reseed the worker's dataset copy from the worker seed, which
    torch derives from the DataLoader's ``generator`` (torch itself seeds ``random``/numpy in workers)."""
    info = torch.utils.data.get_worker_info()
    if info is None:
        return
    ds = info.dataset
    while not hasattr(ds, "reseed") and hasattr(ds, "dataset"):  # Subset and similar wrappers
        ds = ds.dataset
    if hasattr(ds, "reseed"):
        ds.reseed(info.seed)
