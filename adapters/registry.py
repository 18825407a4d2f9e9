"""Which adapters exist, found without importing any framework.

Adapter modules import their framework lazily, so importing an adapter class is cheap; only
``import_error()`` (and bnbench.timing.frameworks.describe(probe=True)) actually import a framework.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Dict, List, Type

from .contract import Adapter


def _discover() -> Dict[str, str]:
    """name -> "module:Class" of every adapter class in this package, found by importing its
    modules (which import no framework). The reference (numpy) first, then the frameworks that
    run, then those that cannot run here, each group by name."""
    found = {}
    for module_info in pkgutil.iter_modules([os.path.dirname(os.path.abspath(__file__))]):
        if module_info.name in _NOT_ADAPTERS:
            continue
        module = importlib.import_module(f"{__package__}.{module_info.name}")
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, Adapter) and value.__module__ == module.__name__
                    and "name" in vars(value)):
                if value.name in found:
                    raise RuntimeError(f"two adapters are called {value.name!r}: {found[value.name]} and "
                                       f"{module.__name__}:{value.__name__}")
                found[value.name] = (value, f"{module.__name__}:{value.__name__}")
    order = sorted(found.values(), key=lambda pair: (pair[0].name != "numpy", not pair[0].modes, pair[0].name))
    return {adapter.name: target for adapter, target in order}


_NOT_ADAPTERS = ("registry",)   # every other module is looked into: a class that declares a name is an adapter
# name -> "module:Class", in the order of tables and listings
ADAPTERS: Dict[str, str] = _discover()


class UnknownFramework(KeyError):
    def __str__(self) -> str:
        return f"unknown framework {self.args[0]!r}; known: {', '.join(ADAPTERS)}"


def names() -> List[str]:
    return list(ADAPTERS)


def local_class(name: str) -> Type[Adapter]:
    """The adapter class itself, to run in this process."""
    try:
        target = ADAPTERS[name]
    except KeyError:
        raise UnknownFramework(name) from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)
