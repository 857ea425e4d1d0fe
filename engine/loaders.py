"""DataLoaders of the three splits, with the checks that turn bad data into one clear message."""

from __future__ import annotations

from typing import Any

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


_MARK = "<<csakd-data-error>>"  # delimits the message inside the traceback text a worker sends back


class WorkerDataError(ValueError):
    """A data error raised in a DataLoader worker, carried back as the same one line as with ``--workers 0``.

    PyTorch re-raises a worker's exception as ``type(exc)(<"Caught ... Original Traceback" text>)``; this
    class takes its own message back out of that text.
    """

    def __init__(self, text: str):
        # in the worker the text is _MARK + message; back in the main process, torch's traceback text
        super().__init__(text.rsplit(_MARK, 1)[-1].rstrip("\n") if _MARK in text[1:] else text)


class _WorkerErrors(Dataset):
    """Forwards to ``dataset``; its data errors (ValueError, OSError) leave the worker as WorkerDataError."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except (ValueError, OSError) as exc:
            raise WorkerDataError(_MARK + str(exc)) from None

    def __getattr__(self, name: str) -> Any:  # e.g. reseed() of the training set
        if name == "dataset":  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)


def build_loader(cfg: dict, split: str, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None) -> DataLoader:
    """The checked DataLoader of ``split``; ``generator`` drives the shuffling and the worker seeds
    (``data.seed_worker``), so a seeded generator gives a reproducible order and augmentation."""
    dataset = build_dataset(cfg, split)
    check_dataset(dataset, cfg, split)
    workers = int(cfg.get("workers", 0))
    if workers > 0:
        dataset = _WorkerErrors(dataset)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      worker_init_fn=seed_worker, generator=generator, drop_last=False,
                      pin_memory=torch.cuda.is_available())
