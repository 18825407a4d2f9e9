"""Which frameworks the equivalence suite covers.

BNBENCH_FRAMEWORKS="numpy,torch" names the frameworks that MUST be tested: an unknown name is a
usage error and a named framework that cannot be imported fails its tests (a run can never pass
while testing nothing). Unset (or "all"), every registered adapter is tried and the ones missing
here are skipped with the reason.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import List, Tuple

import pytest

from bnbench.adapters import ADAPTERS
from bnbench.timing.frameworks import get

DTYPES = ("float64", "float32")

# JAX compiles every primitive afresh for each new shape, op by op in eager mode: the first case
# of a 3-layer network took 5.5 s, the next ones with its shapes 0.1-0.3 s. A compilation cache on
# disk for the session (JAX's persistent cache, every program kept) lets the other pytest worker
# and the commands the tests start (verify, compare, tunelog: they inherit the variables) load
# what one of them compiled: the float64 battery of jax took 18.2 s cold and 5.6 s from it. Only
# compilation is shared: the programs are XLA's own. The benchmark commands never set it, so the
# compile times they publish are cold.
JAX_CACHE_VARIABLES = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def pytest_configure(config):
    """The session's JAX cache, made once by the controlling process before pytest-xdist starts
    its workers (they inherit the environment); kept where the caller named one already."""
    if hasattr(config, "workerinput") or "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    config.bnbench_jax_cache = tempfile.mkdtemp(prefix="bnbench-tests-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = config.bnbench_jax_cache
    for name, value in JAX_CACHE_VARIABLES.items():
        os.environ.setdefault(name, value)


def pytest_sessionfinish(session):
    """The workers this pytest process started, closed before it reports its end rather than left
    to atexit: a CI run (2026-12-08) left 10 workers' folders in /tmp, their pytest-xdist process
    ended before its atexit hooks had closed them."""
    from bnbench.timing.worker import close_workers
    close_workers()


def pytest_unconfigure(config):
    cache = getattr(config, "bnbench_jax_cache", None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)


def selected_frameworks() -> Tuple[List[str], bool]:
    value = os.environ.get("BNBENCH_FRAMEWORKS", "").strip()
    if value in ("", "all"):
        return list(ADAPTERS), False
    chosen = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in ADAPTERS]
    if unknown:
        raise pytest.UsageError(f"BNBENCH_FRAMEWORKS names unknown framework(s) {', '.join(unknown)}; known: {', '.join(ADAPTERS)}")
    return chosen, True


def adapter_cases():
    """(framework, mode, device) for every selected adapter; device support is checked at run time."""
    frameworks, _ = selected_frameworks()
    return [(name, mode, device) for name in frameworks for mode in get(name).modes for device in get(name).devices]


def require_adapter(name: str, device: str = "cpu"):
    """The adapter class, or a skip (unselected run) / failure (framework named in BNBENCH_FRAMEWORKS)."""
    _, strict = selected_frameworks()
    adapter = get(name)
    problem = adapter.import_error()
    if problem:
        if strict:
            pytest.fail(f"BNBENCH_FRAMEWORKS requires {name}, but it is not usable here: {problem}")
        pytest.skip(f"{name}: {problem}")
    problem = adapter.device_unavailable(device)
    if problem:
        pytest.skip(f"{name} on {device}: {problem}")
    return adapter


def pytest_report_header(config):
    frameworks, strict = selected_frameworks()
    return f"bnbench frameworks: {', '.join(frameworks)} ({'required' if strict else 'skipped when missing'})"


def pytest_collection_modifyitems(config, items):
    """The slow cases (a whole command's run: up to 3 minutes each) first, so that with the cases
    shared out over workers (`make test`: pytest-xdist) they run side by side from the start and
    the short ones fill the end, instead of one of them running alone while another worker idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
