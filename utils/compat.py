"""The one switch between the corrected behaviour and the official code's (docs/decisions.md).

``compat=None`` (default) fixes the official code's bugs; ``compat="official"`` keeps them, so that
official checkpoints reproduce official outputs and the official training can be re-run.
"""

from __future__ import annotations

COMPAT_MODES = (None, "official")


def check_compat(compat: str | None, where: str) -> None:
    """Raise a ``ValueError`` naming ``where`` unless ``compat`` is ``None`` or ``"official"``."""
    if compat not in COMPAT_MODES:
        raise ValueError(f"{where}: compat must be None or 'official', got {compat!r}")
