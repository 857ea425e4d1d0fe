"""Teacher labels where no GT exists (fusion form of data upcycling; no official counterpart; issue 18, method a).

Two signals a student cannot get from the GT, both against the frozen teacher's output (``--kd_mode offline``):

* ``--unlabelled N`` (built-in datasets: N extra scenes from their own seed stream) or ``--unlabelled_file LIST``
  (own data: a split list of input pairs, ``--dataset aviris``, or of cubes, ``--dataset cube``): training pairs
  whose GT is never read (:class:`UnlabelledInputs` returns the inputs only; an aviris entry needs no GT file).
  Each training step takes one batch of them besides the labelled batch; the student's loss adds
  ``--w_unlabelled``·SmoothL1(S(x_u), T(x_u)). For real sensors these pairs are full-resolution acquisitions (an
  LR-HSI and an HR-MSI of the same ground, with no HR-HSI). Their inputs are normalised as every input
  (x ↦ 2x − 1 of the stored [0, 1]); T(x_u) is in the teacher's output domain, its training GT's per-image
  min–max [−1, 1] (docs/distillation.md, "Teacher labels on pairs without GT").
* ``--kd_augment``: invertible-augmentation consistency on the labelled batch: a transform g (flip along height,
  along width, transpose, sign inversion of the [−1, 1] inputs, or a composition; :data:`TRANSFORMS`) drawn per
  step, applied to the student's inputs and undone on its output, matched to the teacher's output on the original
  view (teacher and student on the same batch): ``--w_augment``·SmoothL1(g⁻¹(S(g(x))), T(x)).

Teacher-free controls (``--kd_mode none``): the same extra pairs and the same augmentations with the GT as the
target where it exists (``--unlabelled``: the extra scenes' GT, i.e. more labelled data; ``--kd_augment``: the GT of
the labelled batch), and the student alone with the same number of updates (one update per labelled batch in
every arm).

The draws (which transform, the unlabelled order) are functions of (seed, step) or (seed, epoch) only, so they
move no other random stream: the arms of one seed still start, batch and noise alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .runtime import derive_seed

AUGMENT_STREAM = 37  # key of the per-step transform draw
UNLABELLED_STREAM = 4  # key of the unlabelled order per pass

#: Each transform as (flip height, flip width, transpose, invert sign); index 0 is the identity, never drawn.
TRANSFORMS = tuple((fh, fw, tr, inv) for inv in (False, True) for tr in (False, True) for fw in (False, True)
                   for fh in (False, True))


def apply(x: torch.Tensor, code: tuple[bool, bool, bool, bool]) -> torch.Tensor:
    """g(x) for (B, C, H, W) ``x``: flips along H, along W, then the H↔W transpose, then the sign inversion."""
    fh, fw, tr, inv = code
    dims = [d for d, on in ((-2, fh), (-1, fw)) if on]
    y = torch.flip(x, dims) if dims else x
    y = y.transpose(-2, -1) if tr else y
    return -y if inv else y


def undo(y: torch.Tensor, code: tuple[bool, bool, bool, bool]) -> torch.Tensor:
    """g⁻¹(y): the inverse of :func:`apply` (the steps in reverse order; each is its own inverse), exact."""
    fh, fw, tr, inv = code
    x = -y if inv else y
    x = x.transpose(-2, -1) if tr else x
    dims = [d for d, on in ((-2, fh), (-1, fw)) if on]
    return torch.flip(x, dims) if dims else x


def draw_transform(seed: int, step: int) -> tuple[bool, bool, bool, bool]:
    """The transform of training step ``step``: one of the 15 non-identity :data:`TRANSFORMS`, uniformly, from
    (seed, step) only."""
    return TRANSFORMS[1 + derive_seed(seed, AUGMENT_STREAM, step) % (len(TRANSFORMS) - 1)]


class UnlabelledInputs(Dataset):
    """The inputs of a dataset's samples without their GT: ``dataset.inputs_item(i)`` = {"lrhsi", "hrmsi", "name"}
    (:meth:`data.sample.FusionDataset.inputs_item`). ``with_gt``: also the GT (the teacher-free control only)."""

    def __init__(self, dataset: Any, with_gt: bool = False) -> None:
        self.dataset, self.with_gt = dataset, with_gt

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        if self.with_gt:
            item = self.dataset[index]
            return {k: item[k] for k in ("lrhsi", "hrmsi", "gt")}
        item = self.dataset.inputs_item(index)
        return {"lrhsi": item["lrhsi"], "hrmsi": item["hrmsi"]}

    def reseed(self, seed: int) -> None:
        self.dataset.reseed(seed)


class UnlabelledStream:
    """Batches of the unlabelled pairs, one per training step, endlessly: pass k of the set is shuffled and
    augmented from (seed, k) only, so a resumed run replays the same batches (after :meth:`skip`)."""

    def __init__(self, dataset: UnlabelledInputs, batch_size: int, seed: int) -> None:
        self.dataset, self.batch_size, self.seed = dataset, int(batch_size), int(seed)
        self.passes = 0
        self._it: Iterator[dict] | None = None

    def _new_pass(self) -> Iterator[dict]:
        order = torch.Generator().manual_seed(derive_seed(self.seed, UNLABELLED_STREAM, self.passes))
        self.dataset.reseed(derive_seed(self.seed, UNLABELLED_STREAM, self.passes, 1))
        self.passes += 1
        return iter(DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True, generator=order,
                               drop_last=len(self.dataset) >= self.batch_size, num_workers=0))

    def next(self) -> dict:
        for _ in range(2):
            if self._it is None:
                self._it = self._new_pass()
            batch = next(self._it, None)
            if batch is not None:
                return batch
            self._it = None
        raise ValueError("--unlabelled: the unlabelled split gave no batch")

    def restart(self, steps: int) -> None:
        """Start over and skip ``steps`` batches (a resumed run: the batches the run has already drawn)."""
        per_pass = max(1, len(self.dataset) // self.batch_size)  # drop_last when the set holds a whole batch
        self.passes, self._it = steps // per_pass, None
        for _ in range(steps % per_pass):
            self.next()


def unlabelled_stream(cfg: dict) -> UnlabelledStream | None:
    """The batches of the unlabelled pairs of a run (``--unlabelled`` or ``--unlabelled_file``; None without):
    their inputs, with their GT only for the teacher-free control (``--kd_mode none``). The first pair is checked
    now (bands, sizes; for the control, that every entry has a GT), before the run writes anything."""
    from data import build_dataset

    from .flags import unlabelled_flag
    from .loaders import check_dataset, describe_split

    if unlabelled_flag(cfg) is None:
        return None
    dataset = build_dataset(cfg, "unlabelled")
    inputs = UnlabelledInputs(dataset, with_gt=cfg["kd_mode"] == "none")
    if inputs.with_gt and dataset.without_gt:
        raise ValueError(f"{describe_split(cfg, 'unlabelled')}: {len(dataset.without_gt)} entries have no GT (first "
                         f"{dataset.without_gt[0]!r}); the teacher-free control (--kd_mode none) trains on the "
                         f"unlabelled pairs' GT: label them with a frozen teacher (--kd_mode offline), or list "
                         f"entries that have a GT")
    check_dataset(dataset, cfg, "unlabelled", None if inputs.with_gt else lambda: dataset.inputs_item(0))
    return UnlabelledStream(inputs, cfg["batch_size"], derive_seed(cfg["seed"], UNLABELLED_STREAM))


def consistency(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SmoothL1_β=1(out, target), mean over all elements; the target (teacher output or GT) detached."""
    return torch.nn.functional.smooth_l1_loss(out, target.detach())
