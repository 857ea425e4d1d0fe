"""Scene leakage of split lists, and a scene-disjoint split of the same entries (by flight line).

An AVIRIS entry names a patch of one flight line: ``train/Hama9_15`` is patch 15 of line ``Hama9``,
``train/Phoenix24`` patch 24 of line ``Phoenix`` (the folder is where the dataset stores the files, not
the split). The official lists (``configs/splits/aviris``) draw training, validation and test patches
from the same flight lines, so test scores measure interpolation within scenes the network was trained
on. :func:`scene_disjoint_split` regroups the same entries so that every flight line lies in one split.

    python -m data.splits configs/splits/aviris                                   # leakage counts
    python -m data.splits configs/splits/aviris --out configs/splits/aviris_scene_disjoint   # write the split
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
from collections.abc import Mapping, Sequence

from utils.fileio import atomic_write_text

from .aviris import read_split

SPLITS = ("train", "val", "test")
DISJOINT_SEED = 0  # the shipped configs/splits/aviris_scene_disjoint lists


def flight_line(entry: str) -> str:
    """The flight line of an entry: its file name without the folder and the trailing patch number
    (``train/Hama9_15`` → ``Hama9``, ``train/Phoenix24`` → ``Phoenix``)."""
    name = entry.strip().replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"_\d+$", "", name) if re.search(r"_\d+$", name) else re.sub(r"\d+$", "", name)


def leakage(splits: Mapping[str, Sequence[str]]) -> dict[str, dict[str, int]]:
    """For val and test: entries, flight lines, entries whose flight line also has training entries
    (``shared_line``) and entries stored in the dataset's ``train/`` folder (``in_train_folder``)."""
    train_lines = {flight_line(e) for e in splits["train"]}
    out = {}
    for name in SPLITS[1:]:
        entries = splits[name]
        out[name] = {
            "entries": len(entries),
            "lines": len({flight_line(e) for e in entries}),
            "shared_line": sum(flight_line(e) in train_lines for e in entries),
            "in_train_folder": sum(e.startswith("train/") for e in entries),
        }
    return out


def scene_disjoint_split(splits: Mapping[str, Sequence[str]], seed: int = DISJOINT_SEED) -> dict[str, list[str]]:
    """The entries of ``splits`` (train/val/test lists) regrouped so that no flight line is in two splits.

    Flight lines are shuffled with ``random.Random(seed)`` (after sorting, so the result depends only on
    the entries and the seed) and dealt whole: to test until it holds at least as many entries as the
    given test list, then to val likewise, the rest to train. Entries keep their order within a line.
    """
    by_line: dict[str, list[str]] = {}
    for name in SPLITS:
        for entry in splits[name]:
            by_line.setdefault(flight_line(entry), []).append(entry)
    lines = sorted(by_line)
    random.Random(seed).shuffle(lines)
    targets = {"test": len(splits["test"]), "val": len(splits["val"])}
    out: dict[str, list[str]] = {name: [] for name in SPLITS}
    for line in lines:
        name = next((n for n in ("test", "val") if len(out[n]) < targets[n]), "train")
        out[name].extend(by_line[line])
    return out


def read_splits(folder: str) -> dict[str, list[str]]:
    """``<folder>/{train,val,test}.txt``."""
    return {name: read_split(os.path.join(folder, f"{name}.txt"), flag=f"{name} list") for name in SPLITS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Scene leakage of split lists; write a scene-disjoint split.")
    parser.add_argument("folder", help="folder with train.txt, val.txt, test.txt")
    parser.add_argument("--out", default=None, help="write the scene-disjoint split here")
    parser.add_argument("--seed", type=int, default=DISJOINT_SEED, help="shuffle of the flight lines")
    args = parser.parse_args(argv)
    try:
        splits = read_splits(args.folder)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, c in leakage(splits).items():
        print(f"{args.folder} {name}: {c['entries']} entries of {c['lines']} flight lines; {c['shared_line']} "
              f"share a flight line with training entries; {c['in_train_folder']} are in the dataset's train/ folder")
    if args.out:
        disjoint = scene_disjoint_split(splits, args.seed)
        for name, entries in disjoint.items():
            atomic_write_text(os.path.join(args.out, f"{name}.txt"), "\n".join(entries) + "\n")
        for name, c in leakage(disjoint).items():
            print(f"{args.out} {name}: {c['entries']} entries of {c['lines']} flight lines; {c['shared_line']} share "
                  f"a flight line with training entries")
        print(f"{args.out} train: {len(disjoint['train'])} entries of "
              f"{len({flight_line(e) for e in disjoint['train']})} flight lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
