"""DataLoaders of the three splits, with the checks that turn bad data into one clear message."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from data import build_dataset, seed_worker

SPLIT_FLAGS = {"train": "train_file", "val": "val_file", "test": "test_file"}


def describe_split(cfg: dict, split: str) -> str:
    """How the user named a split, for messages: the split file, or the synthetic scene count."""
    if cfg.get("dataset") == "synthetic":
        return f"--dataset synthetic --synthetic_scenes {cfg.get('synthetic_scenes')}"
    flag = SPLIT_FLAGS[split]
    return f"--{flag} {cfg.get(flag)} (--root {cfg.get('root')})"


def check_dataset(dataset: Dataset, cfg: dict, split: str) -> None:
    """Raise a ValueError unless ``dataset`` is non-empty and its first sample has the configured shapes
    (``bands`` LR-HSI/GT bands, ``msi_bands`` HR-MSI bands, HR size = ``scale`` × LR size)."""
    where = f"{split} split ({describe_split(cfg, split)})"
    if len(dataset) == 0:
        raise ValueError(f"{where}: the split is empty; expected at least one image")
    sample = dataset[0]
    name = sample.get("name", "sample 0")
    lr, msi, gt = sample["lrhsi"], sample["hrmsi"], sample["gt"]
    for what, x, want, flag in (("LR-HSI", lr, cfg["bands"], "--bands"), ("GT", gt, cfg["bands"], "--bands"),
                                ("HR-MSI", msi, cfg["msi_bands"], "--msi_bands")):
        if x.shape[0] != want:
            raise ValueError(f"{where}: {name}: the {what} has {x.shape[0]} bands, but {flag} is {want} "
                             f"(shape {tuple(x.shape)}); set {flag} {x.shape[0]} or use matching data")
    s = cfg["scale"]
    if tuple(gt.shape[-2:]) != (s * lr.shape[-2], s * lr.shape[-1]) or msi.shape[-2:] != gt.shape[-2:]:
        raise ValueError(f"{where}: {name}: sizes do not match --scale {s}: LR-HSI {tuple(lr.shape[-2:])}, "
                         f"HR-MSI {tuple(msi.shape[-2:])}, GT {tuple(gt.shape[-2:])}")


def build_loader(cfg: dict, split: str, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None) -> DataLoader:
    """The checked DataLoader of ``split``; ``generator`` drives the shuffling and the worker seeds
    (``data.seed_worker``), so a seeded generator gives a reproducible order and augmentation."""
    dataset = build_dataset(cfg, split)
    check_dataset(dataset, cfg, split)
    workers = int(cfg.get("workers", 0))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      worker_init_fn=seed_worker, generator=generator, drop_last=False,
                      pin_memory=torch.cuda.is_available())
