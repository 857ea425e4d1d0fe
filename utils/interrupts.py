"""Stopping on SIGINT (Ctrl-C) or SIGTERM (what cluster schedulers send before they kill a job) without losing
work or leaving half-written files (official counterpart: none; Ctrl-C there ends in a traceback and loses the
epoch).

Training (:class:`StopSignals`): the first signal only asks for a stop: the training loop finishes the step it
is in, saves a resumable state (mid-epoch: with its position in the epoch) and raises :class:`Interrupted`;
the script prints its one line and exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM). A
second signal before that state is complete stops at once: :class:`Interrupted` is raised where the process
is, and an interrupted state write removes its temporary file (``utils.fileio``), so ``state.pth`` is the
previous complete state. Signals after the state is saved end the process at once with the same exit code.

While a script imports its packages (torch alone takes seconds), :class:`StartingUp` makes the signals end the
process with one line and 128 + the signal number: nothing has been written yet, and a traceback through the
import machinery would say nothing.

The one-shot scripts (:class:`StopAtOnce`: ``test_CSAKD.py``, ``data.prepare``) stop at once with one line;
their outputs are staged and appear whole or not at all.

A signal that the process ignores when the handlers are installed (SIGINT of a job started in the background
by a non-interactive shell) stays ignored. Only the process that installed the handlers reacts: DataLoader
workers forked from it ignore the signals (a terminal's Ctrl-C reaches the whole process group) and are shut
down by the main process as usual.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """The run stopped on a signal; ``exit_code`` is 128 + the signal number. ``str()`` is the one line to print."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum, self.exit_code = signum, 128 + signum


def interrupt_in(exc: BaseException) -> Interrupted | None:
    """The :class:`Interrupted` that ``exc`` is or was raised from (a library that wraps every error of a callback,
    as torch.onnx's exporter does, turns a signal's stop into its own exception type), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Interrupted):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopSignals:
    """Context manager (the training loop's): SIGINT and SIGTERM request a stop (``requested``: the first
    signal number or None) instead of ending the process; the previous handlers come back on exit.

    Installed only in the main thread of the main interpreter (Python delivers signals there only); elsewhere
    it is inert and a signal acts as it would without it.
    """

    def __init__(self, announce: Callable[[str], None] = print) -> None:
        self.announce = announce  # how the first signal is acknowledged (the training log: engine.runtime.log)
        self.requested: int | None = None
        self.saved = False  # set once the stop state is complete: further signals end the process at once
        self._owner = os.getpid()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                if signal.getsignal(s) is not signal.SIG_IGN:  # e.g. SIGINT of a background job: stays ignored
                    self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._owner:  # a forked DataLoader worker: the main process stops it
            return
        if self.saved:
            raise SystemExit(128 + signum)
        if self.requested is None:
            self.requested = signum
            self.announce(f"{signal_name(signum)} received: stopping after this step with a resumable state "
                f"(send it again to stop at once without saving)")
            return
        raise Interrupted(signum, f"interrupted by a second {signal_name(signum)} before the state was saved; "
                                  f"the last saved state is intact: continue with --resume")


class StopAtOnce(StopSignals):
    """For the one-shot scripts (``test_CSAKD.py``, ``data.prepare``): SIGINT and SIGTERM raise
    :class:`Interrupted` with ``message`` where the process is; staged outputs are then deleted by their
    writers (``utils.fileio.staged_folder``), so nothing half-written stays."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() == self._owner:
            raise Interrupted(signum, f"interrupted by {signal_name(signum)}: {self.message}")


class StartingUp(StopSignals):
    """Context manager around a script's imports: SIGINT and SIGTERM print one line and exit with 128 + the signal
    number (``SystemExit``, so no traceback); the previous handlers come back on exit. Only stdlib modules are
    imported before it, so it is in place within milliseconds of the interpreter's start."""

    def __init__(self, script: str) -> None:
        super().__init__()
        self.script = script

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() == self._owner:
            print(f"{self.script}: interrupted by {signal_name(signum)} while starting: nothing was written",
                  file=sys.stderr)
            raise SystemExit(128 + signum)
