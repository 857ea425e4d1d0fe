"""One registry type for the components chosen by name: network families (``--arch``), distillation strategies
(``--kd_strategy``), dataset kinds (``--dataset``) and sensors (``--sensor``).

A component registers itself, with the options it reads, where it is defined::

    @STRATEGIES.register("mine", options=(Option("mine_weight", type=float, default=0.1),))
    class Mine(DistillationStrategy): ...

The command-line parsers take their choices and option groups from the registries when they are built, so a module
imported first (``--plugins``) adds a choice and its flags without any edit of this project.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Names → components of one kind, in registration order; a read-only mapping.

    ``kind`` names the component in messages (``"sensor"``), ``flag`` the option that chooses it (``"--sensor"``).
    """

    def __init__(self, kind: str, flag: str) -> None:
        self.kind, self.flag = kind, flag
        self._entries: dict[str, T] = {}
        self._options: dict[str, tuple[Any, ...]] = {}

    def register(self, name: str, options: Sequence[Any] = ()) -> Callable[[T], T]:
        """Decorator: make the decorated object selectable as ``flag name``, declaring the ``options``
        (``utils.config.Option``) it reads. A name registered twice is an error."""
        def add(obj: T) -> T:
            self.add(name, obj, options)
            return obj

        return add

    def add(self, name: str, obj: T, options: Sequence[Any] = ()) -> None:
        """Register ``obj`` under ``name`` (see :meth:`register`)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({self.flag})")
        self._entries[name] = obj
        self._options[name] = tuple(options)

    def lookup(self, name: str) -> T:
        """The component ``name``; an unknown name is a ValueError naming the flag, the choices and the closest."""
        if name in self._entries:
            return self._entries[name]
        close = difflib.get_close_matches(str(name), list(self._entries), n=1, cutoff=0.5)
        close = close or [n for n in self._entries if n.lower() == str(name).lower()]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{self.flag} {name!r}: unknown {self.kind}; expected one of {', '.join(self._entries)}"
                         f"{hint}")

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def options(self, name: str | None = None) -> list[Any]:
        """The options ``name`` declared, or (``name`` None) those of every entry, in registration order."""
        if name is not None:
            return list(self._options[name])
        return [o for opts in self._options.values() for o in opts]

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
