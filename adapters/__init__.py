"""Framework adapters (installed as ``bnbench.adapters``). Importing this imports no framework."""
from .base import Adapter, AdapterError, Gradients, Unavailable, Unsupported  # noqa: F401
from .registry import ADAPTERS, UnknownFramework, describe, get, names  # noqa: F401
