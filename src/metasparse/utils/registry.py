"""One registry type for every "name → thing" table (problems, presets, modalities, experiments, …)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Generic, TypeVar

from metasparse.errors import ConfigError

T = TypeVar("T")
_MISSING = object()


class Registry(MutableMapping[str, T], Generic[T]):
    """Named entries in registration order; unknown names raise one clear ``ConfigError``.

    ``register`` is a decorator for classes and functions, ``add`` stores a value. It is a mapping, so
    tests can ``monkeypatch.setitem`` an entry.
    """

    def __init__(self, what: str, hint: str = "") -> None:
        self.what = what
        self.hint = hint
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            return self.add(name, obj)

        return decorate

    def add(self, name: str, obj: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = obj
        return obj

    def get(self, name: str, default=_MISSING) -> T:  # type: ignore[override]
        """The entry; an unknown name is a ``ConfigError`` unless a default is given (as for a dict)."""
        try:
            return self._entries[name]
        except KeyError:
            if default is not _MISSING:
                return default
            hint = f"; {self.hint}" if self.hint else ""
            raise ConfigError(f"unknown {self.what} {name!r} (known: {', '.join(self._entries)}){hint}") from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __setitem__(self, name: str, obj: T) -> None:
        self._entries[name] = obj

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
