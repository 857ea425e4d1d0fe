"""benchmarks/measure.py: the peak RSS of ``run_in_child`` is the child's own work, not the parent's peak (a
spawned child is forked from the parent, and on Linux its ``ru_maxrss`` starts at the parent's peak)."""

from __future__ import annotations

import pytest

from benchmarks.measure import MIB, run_in_child

CHILD_MIB = 64


def allocate(mib: int) -> dict:
    """Touch ``mib`` MiB in the child (a module-level function: the spawned child imports it)."""
    block = bytearray(mib * MIB)
    block[::4096] = b"\x01" * len(block[::4096])  # every page resident
    return {"allocated_mib": mib}


def test_child_peak_excludes_the_parents_peak():
    parent = bytearray(768 * MIB)
    parent[::4096] = b"\x01" * len(parent[::4096])
    del parent  # the parent's peak stays at ≥ 768 MiB
    result = run_in_child(allocate, threads=1, mib=CHILD_MIB)
    if not result["peak_rss_reset"]:
        pytest.skip("this kernel cannot reset the peak RSS (/proc/self/clear_refs)")
    assert result["allocated_mib"] == CHILD_MIB
    assert result["rss_before_mib"] + CHILD_MIB * 0.9 <= result["peak_rss_mib"] < 700
