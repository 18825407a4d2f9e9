"""Framework adapters (installed as ``bnbench.adapters``). Importing this imports no framework."""
from .base import Adapter, AdapterError, Gradients, Unavailable, Unsupported  # noqa: F401
from .registry import ADAPTERS, UnknownFramework, local_class, names  # noqa: F401
