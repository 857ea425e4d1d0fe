"""Atomic file writes: a reader never sees a half-written checkpoint, result or dataset file.

Each writer writes to a temporary file in the destination's directory, flushes it to disk, then
renames it over the destination (``os.replace`` is atomic on POSIX and Windows within one file system).
A process killed at any moment leaves either the old file or the new one, plus at worst a stray
temporary file that the next write to that destination does not depend on.

Temporary names (the one rule): ``.<destination name>.tmp-<random>`` beside the destination, for files
and for staged folders alike (:func:`temp_name_prefix`); :func:`remove_stale_temps` deletes leftovers of
killed processes. An OS fault while writing (full disk, read-only or missing parent that cannot be
created, a parent path that is a file) raises :class:`WriteError` naming the destination and the OS
error; the temporary file is removed and the previous destination file is left as it was. The scripts
turn a WriteError into one line and a non-zero exit.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private (0600/0700) entries; the renamed ones should be as readable as any other
# output: the bits a plain open(path, "w") / os.mkdir(path) would give.
_FILE_MODE = 0o666 & ~_umask()
_FOLDER_MODE = 0o777 & ~_umask()


TEMP_MARK = ".tmp-"


class WriteError(OSError):
    """An OS fault while writing an output, as one line: ``cannot write <path>: <OS error> [<errno name>]``."""

    def __init__(self, path: str | os.PathLike, exc: OSError):
        code = errno.errorcode.get(exc.errno or 0, "")
        detail = f"{exc.strerror or exc}" + (f" [{code}]" if code else "")
        super().__init__(exc.errno, f"cannot write {os.fspath(path)}: {detail}")
        self.path, self.os_error = os.fspath(path), exc

    def __str__(self) -> str:
        return self.strerror


def temp_name_prefix(path: str | os.PathLike) -> str:
    """The name prefix of ``path``'s temporary files and staged folders: ``.<name>.tmp-``."""
    return f".{Path(path).name}{TEMP_MARK}"


def remove_stale_temps(folder: str | os.PathLike, of: str | os.PathLike | None = None) -> list[str]:
    """Delete the temporary files and staged folders (see the module docstring) anywhere under ``folder``,
    or, with ``of``, only those of the destination ``of`` beside it.

    Only for a folder no other process is writing to. Returns the removed paths.
    """
    removed = []
    prefix = temp_name_prefix(of) if of is not None else "."
    for parent, dirs, files in os.walk(folder):
        for name in [*files, *dirs]:
            if name.startswith(prefix) and TEMP_MARK in name:
                p = os.path.join(parent, name)
                shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.unlink(p)
                removed.append(p)
        dirs[:] = [d for d in dirs if os.path.join(parent, d) not in removed] if of is None else []
    return removed


def make_parent(path: str | os.PathLike) -> None:
    """Create ``path``'s parent folders; an OS fault raises :class:`WriteError` naming ``path``."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(path, exc) from None


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on success it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was; an OSError (full disk,
    unwritable folder, ...) becomes a :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_name_prefix(path), dir=path.parent)
    except OSError as exc:
        raise WriteError(path, exc) from None
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(path, exc) from None
        raise


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike) -> Iterator[str]:
    """Build a folder whole: yield an empty staging folder beside ``target``; on success it replaces ``target``.

    The swap renames the old ``target`` aside, the staged one into place, then deletes the old one, so a
    reader sees the old folder or the new one, never a mix. On an exception the staging folder is deleted
    and ``target`` is left as it was. OS faults raise :class:`WriteError` naming ``target``. Staging
    folders of ``target`` left by a killed process are deleted first.
    """
    target = Path(target)
    make_parent(target)
    remove_stale_temps(target.parent, of=target)
    try:
        stage = tempfile.mkdtemp(prefix=temp_name_prefix(target), dir=target.parent)
        os.chmod(stage, _FOLDER_MODE)
    except OSError as exc:
        raise WriteError(target, exc) from None
    try:
        yield stage
        _swap_in(stage, target)
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(exc, WriteError) and Path(exc.path).is_relative_to(stage):  # name the user's path
            raise WriteError(target / Path(exc.path).relative_to(stage), exc.os_error) from None
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(target, exc) from None
        raise


def _swap_in(stage: str, target: Path) -> None:
    """Move ``stage`` to ``target``, deleting what ``target`` held (put back if the move fails)."""
    if not os.path.lexists(target):
        os.replace(stage, target)
        return
    old = tempfile.mkdtemp(prefix=temp_name_prefix(target), dir=target.parent)
    aside = os.path.join(old, "old")
    os.replace(target, aside)
    try:
        os.replace(stage, target)
    except OSError:
        os.replace(aside, target)
        os.rmdir(old)
        raise
    shutil.rmtree(old, ignore_errors=True)


def atomic_write(path: str | os.PathLike, write: Callable[[IO], Any], mode: str = "wb") -> None:
    """Call ``write(f)`` on a temporary file and move it to ``path`` once complete."""
    with atomic_open(path, mode) as f:
        write(f)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
