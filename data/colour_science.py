"""The optional package colour-science (``pip install -r requirements-realistic.txt``), the source of the measured
spectra: reflectances for the realistic scenes (:mod:`data.realistic`), camera sensitivities and CIE illuminants
for the camera SRFs (:mod:`data.sensors`). Nothing is downloaded: the data ship with the package."""

from __future__ import annotations

from types import ModuleType

INSTALL_HINT = "pip install -r requirements-realistic.txt (colour-science, no torch)"


def colour_science() -> ModuleType:
    """The ``colour`` module, or one clear ValueError saying how to get it."""
    try:
        import colour
    except ImportError:
        raise ValueError(f"realistic scenes and camera SRFs need the optional package colour-science: "
                         f"{INSTALL_HINT}") from None
    return colour
