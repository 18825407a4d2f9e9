"""Framework adapters (installed as ``bnbench.adapters``): the contract (``contract``), each
framework's declaration (``declaration``), the allocator settings of a kept form (``allocator``),
profiler hooks (``profiling``), many models in one program (``many``), where an adapter runs when
not in this process (``placement``), the registry that finds them (``registry``) and one module
per framework. Importing this imports no framework."""
from .contract import Adapter, AdapterError, Gradients, Unavailable, Unsupported  # noqa: F401
from .registry import ADAPTERS, UnknownFramework, local_class, names  # noqa: F401
