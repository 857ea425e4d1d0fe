"""DataLoaders of the three splits, with the checks that turn bad data into one clear message, and the
samplers that split an epoch between the processes of a distributed run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data import build_dataset, seed_worker
from data.datasets import SPLIT_FLAGS

from .evaluate import validation_every


def describe_split(cfg: dict, split: str) -> str:
    """How the user named a split, for messages: the split file, or the synthetic scene count."""
    if split == "unlabelled" and cfg.get("unlabelled"):
        return f"--unlabelled {cfg['unlabelled']} extra scenes of --dataset {cfg.get('dataset')}"
    if cfg.get("dataset") in ("synthetic", "synthetic_pan"):
        return f"--dataset {cfg['dataset']} --synthetic_scenes {cfg.get('synthetic_scenes')}"
    flag = SPLIT_FLAGS[split]
    return f"--{flag} {cfg.get(flag)} (--root {cfg.get('root')})"


def check_dataset(dataset: Dataset, cfg: dict, split: str, first: Any = None) -> None:
    """Raise a ValueError unless ``dataset`` is non-empty and its first sample has the configured shapes
    (``bands`` LR-HSI/GT bands, ``msi_bands`` HR-MSI bands, HR size = ``scale`` × LR size) and, except in the
    test and unlabelled splits, a GT (full-resolution pansharpening samples have none). ``first``: a callable
    giving the sample to check (default ``dataset[0]``; a pair without GT is checked by its HR-MSI)."""
    where = f"{split} split ({describe_split(cfg, split)})"
    if len(dataset) == 0:
        raise ValueError(f"{where}: the split is empty; expected at least one image")
    sample = dataset[0] if first is None else first()
    name = sample.get("name", "sample 0")
    if "gt" not in sample and split not in ("test", "unlabelled"):  # full-resolution pansharpening: nothing to fit
        raise ValueError(f"{where}: {name}: the samples have no GT (full-resolution data); training and "
                         f"validation need reduced-resolution data with gt (--resolution reduced)")
    lr, msi = sample["lrhsi"], sample["hrmsi"]
    hr = sample.get("gt", msi)  # the HR grid: the GT's, or the HR-MSI's without GT
    checks = [("LR-HSI", lr, cfg["bands"], "--bands"), ("HR-MSI", msi, cfg["msi_bands"], "--msi_bands")]
    if "gt" in sample:
        checks.insert(1, ("GT", sample["gt"], cfg["bands"], "--bands"))
    for what, x, want, flag in checks:
        if x.shape[0] != want:
            raise ValueError(f"{where}: {name}: the {what} has {x.shape[0]} bands, but {flag} is {want} "
                             f"(shape {tuple(x.shape)}); set {flag} {x.shape[0]} or use matching data")
    s = cfg["scale"]
    if tuple(hr.shape[-2:]) != (s * lr.shape[-2], s * lr.shape[-1]) or msi.shape[-2:] != hr.shape[-2:]:
        raise ValueError(f"{where}: {name}: sizes do not match --scale {s}: LR-HSI {tuple(lr.shape[-2:])}, "
                         f"HR-MSI {tuple(msi.shape[-2:])}, GT {tuple(hr.shape[-2:])}")


class ShardedShuffle(Sampler[int]):
    """The training order of one process: a permutation of the ``n`` samples drawn from ``generator`` (seed
    it with (seed, epoch) before each epoch), padded by its own first indices to a multiple of
    ``world_size``; process ``rank`` takes positions rank, rank + W, … (the rule of torch's
    DistributedSampler, with the order owned by the caller's generator).

    Every process draws the same permutation, so the processes' k-th batches together are the block
    k·B·W … (k+1)·B·W − 1 of it (B = per-process batch). With one process this is exactly
    ``DataLoader(shuffle=True, generator=generator)``.
    """

    def __init__(self, n: int, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.generator, self.rank, self.world_size = n, generator, rank, world_size

    def __len__(self) -> int:
        return -(-self.n // self.world_size)

    def __iter__(self) -> Iterator[int]:
        # A generator function: the permutation is drawn when iteration starts, after the DataLoader has
        # drawn its worker base seed from the same generator (the order RandomSampler has).
        order = torch.randperm(self.n, generator=self.generator).tolist()
        padded = (order * (-(-len(self) * self.world_size // self.n)))[:len(self) * self.world_size]
        yield from padded[self.rank::self.world_size]


class ValidationShard(Sampler[int]):
    """The validation images of process ``rank``: of the images that single-process validation scores (all,
    or those in every ``every``-th batch of ``batch_size`` under ``--compat official``), positions
    rank, rank + W, …; no padding, so gathering the shards counts every image exactly once."""

    def __init__(self, n: int, batch_size: int, every: int = 1, rank: int = 0, world_size: int = 1) -> None:
        scored = [i for i in range(n) if (i // batch_size) % every == 0]
        self.indices = scored[rank::world_size]

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        yield from self.indices


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
                 generator: torch.Generator | None = None, sampler: Sampler | None = None) -> DataLoader:
    """The checked DataLoader of ``split``; ``generator`` drives the shuffling and the worker seeds
    (``data.seed_worker``), so a seeded generator gives a reproducible order and augmentation.
    ``sampler`` (e.g. :class:`ShardedShuffle`) replaces ``shuffle``."""
    dataset = build_dataset(cfg, split)
    check_dataset(dataset, cfg, split)
    return make_loader(dataset, cfg, batch_size, shuffle=shuffle, generator=generator, sampler=sampler)


def make_loader(dataset: Dataset, cfg: dict, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None, sampler: Sampler | None = None) -> DataLoader:
    """The DataLoader over an already checked ``dataset`` (``cfg["workers"]`` processes)."""
    workers = int(cfg.get("workers", 0))
    if workers > 0:
        dataset = _WorkerErrors(dataset)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, num_workers=workers,
                      worker_init_fn=seed_worker, generator=generator, drop_last=False,
                      pin_memory=torch.cuda.is_available())


def training_loaders(cfg: dict, generator: torch.Generator, rank: int = 0, world_size: int = 1
                     ) -> tuple[DataLoader, DataLoader]:
    """(train, val) loaders of process ``rank`` of ``world_size``, both splits checked.

    Train: ``--batch_size`` samples **per process** (the global batch is W × that, as in BasicSR), order
    :class:`ShardedShuffle` from ``generator``. Val: ``--val_batch_size`` per process over this process's
    :class:`ValidationShard` (every 5th batch of the single-process order under ``--compat official``).
    """
    train_set, val_set = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    check_dataset(train_set, cfg, "train")
    check_dataset(val_set, cfg, "val")
    every = validation_every(cfg)
    val_bs = cfg.get("val_batch_size") or cfg["batch_size"]
    train = make_loader(train_set, cfg, cfg["batch_size"], generator=generator,
                        sampler=ShardedShuffle(len(train_set), generator, rank, world_size))
    val = make_loader(val_set, cfg, val_bs, sampler=ValidationShard(len(val_set), val_bs, every, rank, world_size))
    return train, val
