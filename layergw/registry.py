"""One registry mechanism for measures and models: stable lowercase names to factories."""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


def import_object(target: str, what: str) -> Any:
    """The object ``"package.module:name"`` names, or ``"path/to/file.py:name"`` (a module loaded
    from a file of one's own; a relative path is taken from the working directory); a clear
    ValueError naming ``what`` when it cannot be imported."""
    import hashlib
    import sys
    from pathlib import Path

    module, sep, attr = target.partition(":") if isinstance(target, str) else ("", "", "")
    if not sep or not module or not attr:
        raise ValueError(f"{what} must be 'package.module:name' or 'path/to/file.py:name', got {target!r}")
    try:
        if not module.endswith(".py"):
            return getattr(importlib.import_module(module), attr)
        path = Path(module).expanduser().resolve()
        if not path.is_file():
            raise ImportError(f"no such file {path} (relative paths are taken from {Path.cwd()})")
        name = f"layergw_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, path)
            loaded = importlib.util.module_from_spec(spec)
            sys.modules[name] = loaded
            try:
                spec.loader.exec_module(loaded)  # type: ignore[union-attr]
            except BaseException:
                del sys.modules[name]  # a half-built module is never reused
                raise
        return getattr(sys.modules[name], attr)
    except Exception as e:  # noqa: BLE001 - any failure to import is the user's file or name
        raise ValueError(f"{what} {target!r} cannot be imported: {type(e).__name__}: {e}") from None


def suggest(word: str, options: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean ...?)' hint, or ''."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry(Generic[T]):
    """Maps names to factories; unknown names and parameters are ValueErrors naming the valid ones."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, Callable[..., T] | str] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        if name != name.lower() or not name:
            raise ValueError(f"{self.what} names are lowercase and non-empty, got {name!r}")

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items and self._items[name] is not factory:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._items[name] = factory
            return factory

        return deco

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:function"``, imported on first use (so registering
        a family whose module imports torch does not import torch)."""
        if ":" not in target:
            raise ValueError(f"lazy {self.what} target must be 'module:function', got {target!r}")
        self.register(name)(target)  # type: ignore[arg-type]

    def names(self) -> list[str]:
        return sorted(self._items)

    def factory(self, name: str) -> Callable[..., T]:
        if not isinstance(name, str) or name not in self._items:
            raise ValueError(
                f"unknown {self.what} {name!r}{suggest(str(name), self.names())}; "
                f"valid {self.what}s: {', '.join(self.names())}"
            )
        item = self._items[name]
        if isinstance(item, str):
            module, _, attr = item.partition(":")
            item = getattr(importlib.import_module(module), attr)
            self._items[name] = item
        return item

    def parameters(self, name: str) -> list[str]:
        sig = inspect.signature(self.factory(name))
        return [p for p in sig.parameters if p not in ("self", "args", "kwargs")]

    def get(self, name: str, **params: Any) -> T:
        factory = self.factory(name)
        valid = self.parameters(name)
        for key in params:
            if key not in valid:
                raise ValueError(
                    f"{self.what} {name!r} has no parameter {key!r}{suggest(key, valid)}; "
                    f"valid parameters: {', '.join(valid) or '(none)'}"
                )
        return factory(**params)

    def __contains__(self, name: object) -> bool:
        return name in self._items
