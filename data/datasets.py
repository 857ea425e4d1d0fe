"""The datasets and ``build_dataset``: official layout, own cubes on the fly, synthetic and realistic scenes.

All return the sample dict of ``data.sample.FusionDataset`` (docs/own-data.md).
"""

from __future__ import annotations

import os

import numpy as np

from .aviris import INPUTS, SUFFIXES, LayoutSpec, find_entry_files, load_entry, load_inputs, read_split
from .degrade import Degradation, simulate_scene, simulated_tiles, unusable_scene
from .formats import read_cube
from .options import DATA_DEFAULTS, DATASETS, data_seed_of, degradation_from_cfg
from .sample import LR_LEVELS, FusionDataset
from .sensors import default_srf_name, resolve_srf
from .spectral import resolve_wavelengths
from .synthetic import make_scene, scene_seed

#: The split list flag of each split of the file-based kinds (``aviris``, ``cube``).
SPLIT_FLAGS = {"train": "train_file", "val": "val_file", "test": "test_file", "unlabelled": "unlabelled_file"}
UNLABELLED_STREAM = 4  # key of the simulation noise of --dataset cube's unlabelled cubes
UNLABELLED_HINT = ("an unlabelled list holds input pairs whose GT is never read (docs/own-data.md, \"Unlabelled "
                   "input pairs\")")


def msi_srf(cfg: dict, wavelengths: np.ndarray) -> tuple[np.ndarray, str]:
    """The SRF (M, C) producing the ``msi_bands``-band HR-MSI: from ``cfg["srf"]`` (the entry with M bands)
    or the built-in ``default_srf_name(msi_bands)``. Returns (R, description)."""
    m = int(cfg["msi_bands"])
    specs = cfg.get("srf") or [default_srf_name(m)]
    specs = [specs] if isinstance(specs, str) else list(specs)
    found = []
    for spec in specs:
        r, desc = resolve_srf(spec, wavelengths)
        if r.shape[0] == m:
            return r, desc
        found.append(f"{desc} ({r.shape[0]} bands)")
    raise ValueError(f"--srf {specs}: none has --msi_bands {m} bands (found {', '.join(found)})")


def _levels(ds: FusionDataset) -> tuple[int, ...]:
    return LR_LEVELS if ds.train and ds.mixed else (ds.mis_pix,)


@DATASETS.register("aviris")
class AvirisDataset(FusionDataset):
    """The official layout (docs/csakd.md §1.2), or a dataset written by ``python -m data.prepare``.

    Official: ``dataset_joint`` in dataset.py. Files are read at each access (no cache).

    Split ``unlabelled`` (``--unlabelled_file``): entries of the input pair only (``<e>lrhsi.npz``,
    ``<e>hrmsi.npz``; for a real sensor a full-resolution acquisition, of which no HR-HSI exists), read by
    :meth:`load_inputs` without looking for a GT; ``without_gt`` names the entries that have none.
    """

    unlabelled_flag = "unlabelled_file"

    def __init__(self, cfg: dict, split: str):
        super().__init__(cfg, split)
        flag = SPLIT_FLAGS[split]
        self.root = cfg["root"]
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"--root {self.root}: no such folder (expected the dataset folder holding the "
                                    f"entries of --{flag}, e.g. <root>/train/Hama9_15GT.npz.npy)")
        self.where = f"--{flag} {cfg[flag]}"
        self.entries = read_split(cfg[flag], flag="--" + flag, root=self.root,
                                  hint=UNLABELLED_HINT if split == "unlabelled" else None)
        self.spec = LayoutSpec(
            int(cfg["bands"]), int(cfg["msi_bands"]), self.scale, int(cfg["image_size"] or 0)
        )
        if split == "unlabelled":
            self.without_gt = self._check_unlabelled()

    def _check_unlabelled(self) -> tuple[str, ...]:
        """The entries without a GT file, once every entry's input files are known to exist (else one error naming
        the list and the entry, and its GT when it holds nothing else: a labelled cube, not an input pair)."""
        without_gt = []
        for entry in self.entries:
            found, missing = find_entry_files(self.root, entry)
            if not set(INPUTS) <= set(found):
                gt_only = f" holds only a GT ({found['gt']}) and" if "gt" in found else ""
                absent = " and ".join(m for m in missing if not m.endswith(SUFFIXES["gt"]))
                raise FileNotFoundError(f"{self.where}: entry {entry!r}{gt_only} lacks {absent}; {UNLABELLED_HINT}: "
                                        f"<e>lrhsi.npz (key lrhsi) and <e>hrmsi.npz (key "
                                        f"hrmsi{self.spec.msi_bands})")
            if "gt" not in found:
                without_gt.append(entry)
        return tuple(without_gt)

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int, level: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
        entry = self.entries[index]
        gt, msi, lr = load_entry(self.root, entry, self.spec, level)
        return entry, gt, msi, lr

    def load_inputs(self, index: int, level: int) -> tuple[str, np.ndarray, np.ndarray]:
        entry = self.entries[index]
        try:
            msi, lr = load_inputs(self.root, entry, self.spec, level)
        except (FileNotFoundError, ValueError) as exc:
            raise type(exc)(f"{self.where}: {exc}") from None
        return entry, msi, lr


class _SimulatedDataset(FusionDataset):
    """Shared by the synthetic and cube datasets: images simulated in memory and cached."""

    def __init__(self, cfg: dict, split: str):
        super().__init__(cfg, split)
        self.deg: Degradation = degradation_from_cfg(cfg)
        self.msi_bands = int(cfg["msi_bands"])
        self.bands = int(cfg["bands"])
        self.seed = data_seed_of(cfg)  # the data's own seed: --data_seed (default --seed)
        self._cache: dict[int, tuple[str, np.ndarray, np.ndarray, dict[int, np.ndarray]]] = {}

    def load(self, index: int, level: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
        if index not in self._cache:
            self._cache[index] = self.simulate(index)
        name, gt, msi, lr = self._cache[index]
        return name, gt, msi, lr[level]

    def simulate(self, index: int) -> tuple[str, np.ndarray, np.ndarray, dict[int, np.ndarray]]:
        raise NotImplementedError


@DATASETS.register("synthetic")
class SyntheticDataset(_SimulatedDataset):
    """Built-in scenes (``data.synthetic``), no files: ``synthetic_scenes`` = (train, val, test) counts,
    HR size ``image_size`` (square), ``bands`` bands at ``wavelengths``, HR-MSI through ``msi_srf``
    and LR-HSI through the logged degradation; each split draws its scenes from its own seed stream
    (``unlabelled``: the ``--unlabelled`` N extra scenes)."""

    unlabelled_flag = "unlabelled"

    def __init__(self, cfg: dict, split: str):
        super().__init__(cfg, split)
        counts = list(cfg["synthetic_scenes"])
        if len(counts) != 3 or min(counts) < 0:
            raise ValueError(f"--synthetic_scenes must be three counts >= 0 (train val test), got {counts}")
        if split == "unlabelled":  # extra training inputs from a seed stream of their own (--unlabelled N)
            self.n = int(cfg.get("unlabelled") or 0)
            if self.n <= 0:
                raise ValueError(f"--unlabelled {cfg.get('unlabelled')}: expected a number of extra scenes > 0")
        else:
            self.n = int(counts[("train", "val", "test").index(split)])
        if self.n == 0:
            raise ValueError(f"--synthetic_scenes {counts}: the {split} split has no scenes")
        self.size = int(cfg["image_size"])
        if self.size <= 0 or self.size % self.scale:
            raise ValueError(
                f"--image_size {self.size} must be a positive multiple of the scale {self.scale} "
                "for synthetic scenes"
            )
        self.wavelengths = resolve_wavelengths(cfg.get("wavelengths"), self.bands)
        self.srf, self.srf_name = msi_srf(cfg, self.wavelengths)

    kind = "synthetic"

    def __len__(self) -> int:
        return self.n

    def make_cube(self, seed: int) -> np.ndarray:
        """The scene (H, W, C) of ``seed``."""
        return make_scene(seed, self.size, self.wavelengths)

    def simulate(self, index: int) -> tuple[str, np.ndarray, np.ndarray, dict[int, np.ndarray]]:
        seed = scene_seed(self.seed, self.split, index)
        cube = self.make_cube(seed)
        scene = simulate_scene(cube, [self.srf], self.deg, _levels(self), where=f"{self.kind} scene {index}")
        ((_, _, _, gt, msi, lr),) = simulated_tiles(scene, self.deg, 0, 0, (seed,))
        return f"{self.kind}/{self.split}_{index:04d}", gt, msi[self.msi_bands], lr


@DATASETS.register("realistic")
class RealisticDataset(SyntheticDataset):
    """Scenes of measured reflectance spectra (``data.realistic``, needs colour-science), otherwise exactly the
    synthetic dataset: ``synthetic_scenes`` counts, seed streams per split (scene-disjoint), size ``image_size``,
    HR-MSI through ``msi_srf`` (e.g. ``--srf camera:nikon5100@D65``), LR-HSI through the logged degradation."""

    kind = "realistic"

    def __init__(self, cfg: dict, split: str):
        super().__init__(cfg, split)
        from .realistic import scene_generator  # optional dependency: imported only for this dataset

        self._make = scene_generator(self.wavelengths)

    def make_cube(self, seed: int) -> np.ndarray:
        return self._make(seed, self.size)


@DATASETS.register("cube")
class CubeDataset(_SimulatedDataset):
    """The user's own HR-HSI cubes, simulated on the fly with the logged degradation.

    The split file lists cube paths (files or CAVE folders), relative to ``root`` unless absolute.
    Each cube is read once, simulated whole (so blurs see real neighbours, not tile borders) and
    cut into non-overlapping ``image_size`` tiles (0 = one tile per cube); constant tiles are skipped, and a
    cube that gives no tile at all (too small, constant) is an error naming it.
    Everything stays in memory: for large collections write the dataset once with ``data.prepare``
    and read it with ``dataset: aviris``.

    Split ``unlabelled`` (``--unlabelled_file``): cubes too, since a cube is what the input pairs are simulated
    from; their tiles' GT stays in memory and is never a target (``inputs_item``), and their simulation noise has
    a stream of its own (the same cube listed for training gives other noisy inputs).
    """

    unlabelled_flag = "unlabelled_file"

    def __init__(self, cfg: dict, split: str):
        super().__init__(cfg, split)
        flag = SPLIT_FLAGS[split]
        root = cfg["root"]
        tile = int(cfg["image_size"] or 0)
        hint = UNLABELLED_HINT + "; for --dataset cube, cube files" if split == "unlabelled" else None
        stream = (UNLABELLED_STREAM,) if split == "unlabelled" else ()
        self.items: list[tuple[str, np.ndarray, np.ndarray, dict[int, np.ndarray]]] = []
        for ci, rel in enumerate(read_split(cfg[flag], flag="--" + flag, root=root, hint=hint)):
            path = rel if os.path.isabs(rel) else os.path.join(root, rel)
            cube = read_cube(
                path, key=cfg.get("key"), layout=cfg.get("layout", "hwc"), wavelengths=cfg.get("wavelengths")
            )
            if cube.data.shape[-1] != self.bands:
                raise ValueError(f"{path}: the cube has {cube.data.shape[-1]} bands, --bands is {self.bands}")
            wl = cube.wavelengths if cube.wavelengths is not None else resolve_wavelengths(None, self.bands)
            srf, _ = msi_srf(cfg, wl)
            h, w = (s - s % self.scale for s in cube.data.shape[:2])
            scene = simulate_scene(cube.data[:h, :w], [srf], self.deg, _levels(self), where=path)
            stem = os.path.splitext(os.path.basename(os.path.normpath(rel)))[0]
            found, constant = len(self.items), 0
            for i, y, x, gt, msi, lr in simulated_tiles(scene, self.deg, tile, tile, (self.seed, *stream, ci)):
                if gt is None:
                    constant += 1
                else:
                    self.items.append((f"{stem}_{i}_y{y}x{x}", gt, msi[self.msi_bands], lr))
            if len(self.items) == found:  # a listed cube is never dropped silently
                raise unusable_scene(f"--{flag} {cfg[flag]}: {path}", (h, w), tile, "--image_size", constant)

    def __len__(self) -> int:
        return len(self.items)

    def simulate(self, index: int) -> tuple[str, np.ndarray, np.ndarray, dict[int, np.ndarray]]:
        return self.items[index]


def build_dataset(cfg: dict, split: str) -> FusionDataset:
    """The dataset of the kind ``cfg["dataset"]`` (:data:`~data.options.DATASETS`) for ``split`` ("train" | "val" |
    "test").

    ``cfg`` is a plain dict keyed by the flag names (``data.DATA_DEFAULTS`` and the defaults of the options the
    kinds declare fill missing keys).
    """
    base = {**DATA_DEFAULTS, **{o.name: o.default for o in DATASETS.options()}}  # the kinds' own options too
    cfg = {**base, **{k: v for k, v in cfg.items() if v is not None or k not in base}}
    return DATASETS.lookup(cfg["dataset"])(cfg, split)
