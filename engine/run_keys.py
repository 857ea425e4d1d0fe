"""What each option of a run is: the one classification of the flags that ``--resume``, the run fingerprints
(``engine.fingerprint``) and ``benchmarks.kd`` (reuse of finished runs, pairing with the student alone) read.

Questions asked of a key (a flag's ``dest``):

- :func:`run_control`: steers one command (``--resume``, ``--overwrite``) and says nothing about the run.
- :func:`affects_result`: changes what the run computes. False for where and how it runs (device, workers, paths,
  logging) and for flags accepted for compatibility that have no effect. A key nobody classified (a flag removed
  since a run was saved) counts as affecting the result, so that it never matches silently.
- :func:`teacher_only`: only read when there is a teacher (``--kd_mode`` online or offline): what a run without a
  teacher computes does not depend on it, and the *recipe* (what a distilled run and its student alone share)
  leaves it out.
- :func:`strategy_only` / :func:`arch_only`: the one strategy or network family that reads the key (None: every
  one); runs of another strategy or network do not depend on it.
- :func:`recipe_free`: may differ between a distilled run and the student-alone run it is paired with.
- :func:`resume_may_change`: affects the result, yet a ``--resume`` may change it (a longer schedule, a
  different validation cadence, another recovery patience) with a warning; a resume refuses a change of any
  other result-affecting key.

Every answer is read from the options' declarations (``utils.config.Option``: ``control``, ``affects_result``,
``teacher_only``, ``strategy``, ``arch``, ``resume``), which each component writes beside its code, gathered by
``engine.flags.option_table``; a plugin's options are classified by their own declarations.
"""

from __future__ import annotations

import functools

from utils.config import Option

from .flags import option_table, registered

#: Besides the teacher-only keys, what may differ between a distilled run and the student alone it is paired with:
#: which regime and strategy distil, and the seeds (pairs are made per seed). The bench's pairing rule, not a
#: property of one option.
_PAIRING_AXES = frozenset({"kd_mode", "kd_strategy", "seed", "data_seed"})


@functools.lru_cache(maxsize=4)
def _table(counts: tuple[int, ...]) -> dict[str, Option]:
    return option_table("train")


def _option(key: str) -> Option | None:
    """The training option ``key`` (None: no flag has it); read again when a plugin registered more components."""
    return _table(registered()).get(key)


def run_control(key: str) -> bool:
    """Whether ``key`` only steers one command (never saved as part of what a run is)."""
    opt = _option(key)
    return opt is not None and opt.control


def affects_result(key: str) -> bool:
    """Whether ``key`` can change what a run computes (True for a key nobody classified)."""
    opt = _option(key)
    return opt is None or opt.affects_result


def teacher_only(key: str) -> bool:
    """Whether only a run with a teacher reads ``key``."""
    opt = _option(key)
    return opt is not None and opt.teacher_only


def strategy_only(key: str) -> str | None:
    """The one ``--kd_strategy`` that reads ``key``, or None when every strategy may."""
    opt = _option(key)
    return None if opt is None else opt.strategy


def arch_only(key: str) -> str | None:
    """The one ``--arch`` whose networks read ``key``, or None when every network family may."""
    opt = _option(key)
    return None if opt is None else opt.arch


def recipe_free(key: str) -> bool:
    """Whether ``key`` may differ between a distilled run and the student alone it is paired with."""
    return teacher_only(key) or key in _PAIRING_AXES


def resume_may_change(key: str) -> bool:
    """Whether a ``--resume`` may change ``key`` although it affects the result (with a warning)."""
    opt = _option(key)
    return not affects_result(key) or (opt is not None and opt.resume == "free")


def resume_fixed() -> tuple[str, ...]:
    """The keys a ``--resume`` can never change: the saved state holds networks of their values."""
    return tuple(name for name, opt in _table(registered()).items() if opt.resume == "fixed")


def classified(key: str) -> bool:
    """Whether ``key`` is a declared training option (the test of completeness asks this of every flag)."""
    return _option(key) is not None


__all__ = ["affects_result", "arch_only", "classified", "recipe_free", "resume_fixed", "resume_may_change",
           "run_control", "strategy_only", "teacher_only"]
