"""Shared test fixtures."""

from __future__ import annotations

import signal

import pytest
import torch

# A job started in the background by a non-interactive shell (`cmd &`, nohup) inherits SIGINT ignored; Python then
# installs no handler, and neither do the processes the tests start, so every Ctrl-C test would fail for the
# wrong reason. Restore Python's handler (children reset a handled signal to its default at exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one thread: tiny shapes gain nothing from threads, and OpenMP threads on
    cores busy with other work stall."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
