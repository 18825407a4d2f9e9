"""Which adapters exist, found without importing any framework.

Adapter modules import their framework lazily, so importing an adapter class is cheap; only
``import_error()`` / ``describe(probe=True)`` actually import a framework.
"""
from __future__ import annotations

import importlib
from typing import Dict, List, Optional, Type

from .base import Adapter

# name -> "module:Class". Order is the order of tables and listings.
ADAPTERS: Dict[str, str] = {
    "numpy": "bnbench.adapters.numpy_adapter:NumpyAdapter",
    "torch": "bnbench.adapters.torch_adapter:TorchAdapter",
    "tensorflow": "bnbench.adapters.tensorflow_adapter:TensorflowAdapter",
    "jax": "bnbench.adapters.jax_adapter:JaxAdapter",
}


class UnknownFramework(KeyError):
    def __str__(self) -> str:
        return f"unknown framework {self.args[0]!r}; known: {', '.join(ADAPTERS)}"


def names() -> List[str]:
    return list(ADAPTERS)


def get(name: str) -> Type[Adapter]:
    try:
        target = ADAPTERS[name]
    except KeyError:
        raise UnknownFramework(name) from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def describe(name: str, *, probe: bool = True) -> Dict[str, object]:
    """One row of ``bnbench frameworks``: name, modes, devices, availability and the reason.

    With ``probe`` the framework is imported (a broken install is then 'unavailable' with the
    error); without, only its presence is checked.
    """
    adapter = get(name)
    reason: Optional[str] = adapter.import_error() if probe else adapter.missing_requirement()
    row: Dict[str, object] = {
        "name": name,
        "modes": list(adapter.modes),
        "devices": list(adapter.devices),
        "available": reason is None,
        "reason": reason,
        "version": None,
        "device_status": {},
        "tuning": dict(adapter.tuning),
    }
    if reason is None and probe:
        row["version"] = adapter.version()
        row["device_status"] = {device: adapter.device_unavailable(device) for device in adapter.devices}
    return row
