"""Atomic file writes: a reader never sees a half-written checkpoint, result or dataset file; and what may be
removed: only files that this program wrote, never anyone else's.

Each writer writes to a temporary file in the destination's directory, flushes it to disk, then
renames it over the destination (``os.replace`` is atomic on POSIX and Windows within one file system).
A process killed at any moment leaves either the old file or the new one, plus at worst a stray
temporary file that the next write to that destination does not depend on.

Temporary names (the one rule): ``.<destination name>.tmp-<host>-<pid>-<random>`` beside the destination, for
files and for staged folders alike (:func:`temp_name_prefix`). The host tag and pid are the owner marker:
:func:`remove_stale_temps` deletes a temporary only when its owner is certainly gone (this host, no such
process), so a live writer's file is never taken away, and a file that merely looks like a temporary (a user's
``.notes.md.tmp-draft``) is never touched. An OS fault while writing (full disk, read-only or missing parent that
cannot be created, a parent path that is a file) raises :class:`WriteError` naming the destination and the OS
error; the temporary file is removed and the previous destination file is left as it was. The scripts
turn a WriteError into one line and a non-zero exit.

Output folders written whole (:func:`staged_folder`: ``test_CSAKD.py --results``, ``data.prepare --out``) carry
an owner record, :data:`OWNER_FILE`, listing every file the tool wrote. Such a folder is replaced only if it is
empty or everything in it is listed in its record (a user's file added later, or the inputs of the run, make it
refused before any work); one writer at a time holds its lock (:class:`FolderLock`, ``.<name>.lock`` beside it).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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


HOST = socket.gethostname()
_HOST_TAG = hashlib.sha256(HOST.encode()).hexdigest()[:8]
_OWNED_TEMP = re.compile(r"\.tmp-([0-9a-f]{8})-([0-9]+)-")
OWNER_FILE = ".csakd-output.json"  # in a staged folder: {"tool", "files": [every file it wrote, relative]}


def temp_name_prefix(path: str | os.PathLike, pid: int | None = None) -> str:
    """The name prefix of ``path``'s temporary files and staged folders written by this process (or ``pid``):
    ``.<name>.tmp-<host tag>-<pid>-`` (the owner marker)."""
    return f".{Path(path).name}{TEMP_MARK}{_HOST_TAG}-{os.getpid() if pid is None else pid}-"


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _owner_gone(name: str) -> bool:
    """Whether ``name`` is a temporary of this program whose writer is certainly gone (this host, dead pid)."""
    found = _OWNED_TEMP.search(name)
    if not found or found.group(1) != _HOST_TAG:
        return False  # not ours, or another host's: its writer cannot be checked from here
    pid = int(found.group(2))
    return pid != os.getpid() and not process_alive(pid)


def remove_stale_temps(folder: str | os.PathLike, of: str | os.PathLike | None = None) -> list[str]:
    """Delete the temporary files and staged folders directly in ``folder`` (not below it) whose owner is gone
    (see the module docstring), or, with ``of``, only those of the destination ``of`` beside it. Returns the
    removed paths."""
    removed = []
    prefix = f".{Path(of).name}{TEMP_MARK}" if of is not None else "."
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for name in sorted(os.listdir(folder)):
            if name.startswith(prefix) and TEMP_MARK in name and _owner_gone(name):
                p = os.path.join(folder, name)
                shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
                removed.append(p)
    return removed


class FolderLocked(ValueError):
    """A folder is in use by another live process (the message names it)."""


class FolderLock:
    """An exclusive lock on a folder: ``lock_file`` holds {pid, host, started, command} of the holder.

    Created atomically (written completely under a temporary name, then hard-linked to ``lock_file``, which fails
    if the name exists; where the file system has no hard links, created with ``O_EXCL``), so two processes can
    never both hold it. A lock whose process is gone (same host, no such pid; or the pid of the process asking,
    as after a container restart) is stale and taken over with a note; a live holder is named in the refusal.
    ``what`` names the folder in messages (``run folder X``, ``--results X``), ``kind`` the holder (``run``),
    ``way_out`` what else the user can do."""

    def __init__(self, lock_file: str, what: str, kind: str = "process", way_out: str = "choose another folder"):
        self.lock_file, self.what, self.kind, self.way_out = lock_file, what, kind, way_out
        self.held = False

    def acquire(self, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> None:
        record = {"pid": os.getpid(), "host": HOST, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                  "command": " ".join(sys.argv)}
        while not self._create(json.dumps(record) + "\n"):
            holder = self._read()
            if holder is None:
                continue  # released meanwhile: try again
            if not self._stale(holder):
                raise FolderLocked(f"{self.what} is in use by another {self.kind} ({describe_holder(holder)}); "
                                   f"wait for it, stop it, or {self.way_out} (if no such {self.kind} exists, delete "
                                   f"{self.lock_file})")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lock_file)
            log(f"note: took over the lock of a {self.kind} that ended without releasing it "
                f"({describe_holder(holder)})")
        self.held = True

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lock_file)
            self.held = False

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    close = release  # contextlib.closing

    def _create(self, text: str) -> bool:
        """Write ``text`` to the lock file unless it exists (False): a complete file appears at once or not at all."""
        folder = os.path.dirname(self.lock_file) or "."
        try:
            fd, tmp = tempfile.mkstemp(prefix=temp_name_prefix(self.lock_file), dir=folder)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                os.link(tmp, self.lock_file)
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links: exclusive creation (briefly empty)
                with os.fdopen(os.open(self.lock_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "w") as f:
                    f.write(text)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except FileExistsError:
            return False
        except OSError as exc:
            raise WriteError(self.lock_file, exc) from None
        return True

    def _read(self) -> dict[str, Any] | None:
        try:
            with open(self.lock_file, encoding="utf-8") as f:
                holder = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise FolderLocked(f"{self.what} is locked by {self.lock_file}, which cannot be read ({exc}); if no "
                               f"{self.kind} is using this folder, delete it") from None
        return holder if isinstance(holder, dict) else {"pid": None, "host": None, "command": repr(holder)}

    @staticmethod
    def _stale(holder: Mapping[str, Any]) -> bool:
        """Whether the holder is certainly gone: on this host, and its pid does not exist or is this process's
        own (which holds no lock yet: the pid of a previous incarnation, e.g. a restarted container)."""
        pid = holder.get("pid")
        if holder.get("host") != HOST or not isinstance(pid, int):
            return False
        return pid == os.getpid() or not process_alive(pid)


def describe_holder(holder: Mapping[str, Any]) -> str:
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
            f"{holder.get('command')}")


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


def owned_files(folder: str | os.PathLike) -> list[str]:
    """Every file and symlink under ``folder``, relative, sorted (what a replacement of ``folder`` would delete)."""
    found = []
    for parent, dirs, files in os.walk(folder):
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(parent, d)))]:
            found.append(os.path.relpath(os.path.join(parent, name), folder))
    return sorted(found)


def check_replaceable(target: str | os.PathLike, what: str, tool: str, inputs: Sequence[str] = ()) -> None:
    """Refuse (ValueError, one line) a ``target`` that :func:`staged_folder` may not replace: one that is or holds
    an input, is not a folder, or holds a file that ``tool``'s owner record there does not list."""
    real = os.path.realpath(target)
    for path in inputs:
        found = os.path.realpath(path)
        if found == real or found.startswith(real.rstrip(os.sep) + os.sep):
            raise ValueError(f"{what}: holds the input {path}; the folder is replaced whole, which would delete it; "
                             f"write to another folder")
    if not os.path.lexists(target):
        return
    if not os.path.isdir(target) or os.path.islink(target):
        raise ValueError(f"{what}: exists and is not a folder")
    record = _read_owner(os.path.join(target, OWNER_FILE))
    listed = set(record.get("files", [])) if record.get("tool") == tool else set()
    foreign = [f for f in owned_files(target) if f not in listed and f != OWNER_FILE]
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise ValueError(f"{what}: holds other files ({shown}) that {tool} did not write; it would be replaced "
                         f"whole by this run's outputs, so give an empty or new folder")


def _read_owner(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and isinstance(record.get("files", []), list) else {}


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike, what: str, tool: str, inputs: Sequence[str] = ()) -> Iterator[str]:
    """Build a folder whole: yield an empty staging folder beside ``target``; on success it replaces ``target``.

    First (before the caller's work): the folder's lock is taken (:class:`FolderLock`, ``.<name>.lock`` beside it,
    held to the end: a second writer is refused naming the first) and ``target`` is checked
    (:func:`check_replaceable`: ``what`` names it in messages, ``tool`` owns it, ``inputs`` must not be in it).
    The swap renames the old ``target`` aside, the staged one into place, then deletes the old one, so a
    reader sees the old folder or the new one, never a mix; the new one holds the owner record :data:`OWNER_FILE`.
    On an exception the staging folder is deleted and ``target`` is left as it was. OS faults raise
    :class:`WriteError` naming ``target``. Staging folders of ``target`` whose writer is gone are deleted first.
    """
    target = Path(target)
    make_parent(target)
    lock = FolderLock(os.path.join(target.parent, f".{target.name}.lock"), what, way_out="give another folder")
    try:
        lock.acquire()
    except WriteError as exc:  # the user's path, not the lock's
        raise WriteError(target, exc.os_error) from None
    with contextlib.closing(lock):
        check_replaceable(target, what, tool, inputs)
        remove_stale_temps(target.parent, of=target)
        try:
            stage = tempfile.mkdtemp(prefix=temp_name_prefix(target), dir=target.parent)
            os.chmod(stage, _FOLDER_MODE)
        except OSError as exc:
            raise WriteError(target, exc) from None
        try:
            yield stage
            files = owned_files(stage)
            atomic_write_json(os.path.join(stage, OWNER_FILE), {"tool": tool, "files": files})
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


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move a complete temporary file (``tmp``, named by :func:`temp_name_prefix`, beside ``path``) to ``path``,
    with the mode a plain ``open(path, "w")`` would give; an OS fault raises :class:`WriteError` naming ``path``."""
    try:
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except OSError as exc:
        raise WriteError(path, exc) from None


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


def sha256_of(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, or of a folder's files' bytes in sorted path order (a CAVE scene)."""
    h = hashlib.sha256()
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs) if os.path.isdir(path) else [path]
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
