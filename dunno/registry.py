"""One registry helper for every kind of named, pluggable object: detectors, calibrators,
regressors, backbones, generative models, checkpoint builders.

::

    DETECTORS = Registry("OOD detector", "dunno.detectors")

    @DETECTORS.register                     # under its ``name`` attribute
    class Energy(OODDetector): name = "energy"; ...

    DETECTORS.register("msp", MSP)          # or explicitly
    DETECTORS.create("energy", model)       # Energy(model)
    DETECTORS.available()                   # ["energy", "msp", ...], registration order
    "energy" in DETECTORS; DETECTORS["energy"]  # a read-only Mapping name -> object

**Plugins.** A third-party distribution adds objects without touching this code by declaring
entry points in the registry's group, e.g. in its ``pyproject.toml``::

    [project.entry-points."dunno.detectors"]
    my-detector = "my_package.detector:MyDetector"

The entry points of a group are listed (not imported) on the registry's first lookup; a
plugin's module is imported the first time its name is requested, and registered under the
entry point's name. A plugin that fails to import, or whose name clashes with another entry,
raises :class:`~dunno.errors.PluginError` naming the entry point and its distribution.

Unknown names raise ``ValueError("Unknown OOD detector 'x'. Available: energy, msp, ....")``.

:meth:`Registry.union` reads several registries as one (``DENSITY_MODELS`` is the
autoregressive and the latent-variable models), plugins of each included.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from dunno.errors import PluginError

__all__ = ["Registry"]

T = TypeVar("T")


def _describe(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    origin = f" of the distribution '{dist.name} {dist.version}'" if dist is not None else ""
    return (f"'{entry_point.name} = {entry_point.value}' (entry-point group "
            f"'{entry_point.group}'{origin})")


class Registry(Mapping[str, T], Generic[T]):
    """Named objects of one kind, plus the plugins of an entry-point group.

    Parameters
    ----------
    kind : str
        What the objects are, for messages: ``"OOD detector"`` gives "Unknown OOD detector
        'x'. Available: ...".
    entry_point_group : str, optional
        The :mod:`importlib.metadata` entry-point group whose entries are plugins (``None``:
        no plugins).
    base : type, optional
        Every object must be a subclass of ``base`` whose ``name`` attribute is the name it is
        registered under (the detectors, calibrators, regressors and backbones).
    check : callable, optional
        ``check(name, obj)`` raises ValueError when ``obj`` cannot be registered as ``name``;
        for rules that ``base`` does not express. Both run on every registration, plugins
        included.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None, *,
                 base: type | None = None,
                 check: Callable[[str, Any], None] | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._base = base
        self._check = check
        self._objects: dict[str, T] = {}
        self._plugins: dict[str, importlib.metadata.EntryPoint] | None = None  # not loaded yet
        self._parts: tuple[Registry, ...] = ()  # a union's registries (see union)

    @classmethod
    def union(cls, kind: str, *registries: Registry) -> Registry:
        """A read-only registry of ``kind`` over ``registries``: a name resolves in the one
        registry that has it (a name in two of them is an error), ``available()`` lists them
        in order. Register into the parts, never into the union."""
        view = cls(kind)
        view._parts = tuple(registries)
        return view

    def _check_subclass(self, name: str, obj: Any) -> None:
        if not (isinstance(obj, type) and issubclass(obj, self._base)):
            raise ValueError(f"{name!r} cannot be registered in the {self.kind} registry: it "
                             f"must be a subclass of {self._base.__name__}. Got {obj!r}.")
        if getattr(obj, "name", None) != name:
            raise ValueError(f"{obj.__name__} is named {getattr(obj, 'name', None)!r}; it "
                             f"cannot be registered in the {self.kind} registry as {name!r}.")

    def __repr__(self) -> str:
        group = f", {self.entry_point_group!r}" if self.entry_point_group else ""
        return f"Registry({self.kind!r}{group})"

    # ------------------------------------------------------------------ registration
    def register(self, name: Any = None, obj: Any = None) -> Any:
        """Register ``obj`` as ``name``; without ``obj``, a decorator that does.

        ``name`` defaults to ``obj.name``. All of these work::

            registry.register("msp", MSP)
            registry.register(obj=MSP)          # name from MSP.name

            @registry.register                   # name from the class's ``name``
            class MyDetector(OODDetector): ...

            @registry.register("generative/nade")
            def build(**config): ...

        A name already registered to another object is refused (ValueError); registering
        the same object again is a no-op. Returns ``obj`` (so decorated objects are
        unchanged).
        """
        if name is not None and not isinstance(name, str):
            if obj is not None:
                raise ValueError(f"Registry.register takes a name and an object; got "
                                 f"{name!r} and {obj!r}.")
            name, obj = None, name  # bare decorator: @registry.register
        if obj is None:
            def decorator(target):
                self.register(name, target)
                return target

            return decorator
        if name is None:
            name = getattr(obj, "name", None)
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"Registering {obj!r} as a {self.kind} needs a name: pass one, or give the "
                    f"object a non-empty 'name' attribute."
                )
        if not name:
            raise ValueError(f"The name of a {self.kind} must be a non-empty string.")
        if self._parts:
            raise ValueError(f"The {self.kind} registry is a union of others; register "
                             f"{_label(obj)} in one of them.")
        if self._base is not None:
            self._check_subclass(name, obj)
        if self._check is not None:
            self._check(name, obj)
        current = self._objects.get(name)
        if current is not None and current is not obj:
            raise ValueError(
                f"A {self.kind} named {name!r} is already registered ({_label(current)}); "
                f"choose another name for {_label(obj)}."
            )
        self._objects[name] = obj
        return obj

    def unregister(self, name: str) -> T:
        """Remove ``name`` (a test's temporary entry, say); returns what it was."""
        self._require(name)
        if self._parts:
            return self._part_of(name).unregister(name)
        if name not in self._objects:  # a plugin never looked up
            self.get(name)
        return self._objects.pop(name)

    # ------------------------------------------------------------------ lookup
    def get(self, name: str, default: Any = None) -> T:  # type: ignore[override]
        """The object registered as ``name``, loading a plugin on its first lookup.

        Unlike :meth:`dict.get`, an unknown name raises ValueError (listing the known ones);
        ``default`` exists only for the :class:`~collections.abc.Mapping` signature and is
        never returned.
        """
        self._require(name)
        if self._parts:
            return self._part_of(name).get(name)
        if name not in self._objects:
            self._load_plugin(name)
        return self._objects[name]

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``get(name)(*args, **kwargs)``: a new object of the class (or from the factory)
        registered as ``name``."""
        return self.get(name)(*args, **kwargs)

    def available(self) -> list[str]:
        """Every registered name (built-ins first, in registration order, then plugins)."""
        if self._parts:
            names = [n for part in self._parts for n in part.available()]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"The {self.kind} registry's parts share the name(s) {twice}; "
                                 "a name must be unique across them.")
            return names
        plugins = self._discover()
        return [*self._objects, *(n for n in plugins if n not in self._objects)]

    def refresh(self) -> None:
        """Forget the plugins seen so far and list the entry points again on the next lookup
        (after installing or removing a distribution in a running process)."""
        for part in self._parts:
            part.refresh()
        plugins = self._plugins or {}
        for name in plugins:
            self._objects.pop(name, None)
        self._plugins = None

    # ------------------------------------------------------------------ Mapping
    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        if self._parts:
            return any(name in part for part in self._parts)
        return isinstance(name, str) and (name in self._objects or name in self._discover())

    def __iter__(self) -> Iterator[str]:
        return iter(self.available())

    def __len__(self) -> int:
        return len(self.available())

    # ------------------------------------------------------------------ internals
    def _part_of(self, name: str) -> Registry:
        self.available()  # a name in two parts is an error
        return next(part for part in self._parts if name in part)

    def _require(self, name: Any) -> None:
        if name not in self:
            raise ValueError(
                f"Unknown {self.kind} {name!r}. Available: {', '.join(self.available())}."
            )

    def _discover(self) -> dict[str, importlib.metadata.EntryPoint]:
        """The group's entry points by name, listed once (no plugin module is imported)."""
        if self._plugins is not None:
            return self._plugins
        found: dict[str, importlib.metadata.EntryPoint] = {}
        if self.entry_point_group is not None:
            for entry_point in importlib.metadata.entry_points(group=self.entry_point_group):
                if entry_point.name in self._objects:
                    raise PluginError(
                        f"The {self.kind} plugin {_describe(entry_point)} uses the name "
                        f"{entry_point.name!r} of a registered {self.kind} "
                        f"({_label(self._objects[entry_point.name])}); rename the entry point."
                    )
                if entry_point.name in found:
                    first = found[entry_point.name]
                    if first.value == entry_point.value:  # one distribution seen twice on sys.path
                        continue
                    raise PluginError(
                        f"Two {self.kind} plugins are named {entry_point.name!r}: "
                        f"{_describe(first)} and {_describe(entry_point)}; uninstall or rename "
                        "one of them."
                    )
                found[entry_point.name] = entry_point
        self._plugins = found
        return found

    def _load_plugin(self, name: str) -> None:
        entry_point = self._discover()[name]
        try:
            obj = entry_point.load()
        except Exception as err:  # noqa: BLE001 - any failure of foreign code is reported
            raise PluginError(
                f"The {self.kind} plugin {_describe(entry_point)} could not be loaded: "
                f"{type(err).__name__}: {err}"
            ) from err
        try:
            self.register(name, obj)
        except ValueError as err:
            raise PluginError(
                f"The {self.kind} plugin {_describe(entry_point)} cannot be registered: {err}"
            ) from err


def _label(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else repr(obj)
