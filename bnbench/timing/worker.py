"""Adapters that run in another process: one mechanism for every framework that cannot share
the suite's interpreter (MXNet's numpy<1.24 venv, a Keras backend other than this process's,
Caffe's Python 3.9 chroot, ...), and for every participant of a timing run, which runs in a
worker of its own.

The worker is ``python -m bnbench.timing.server`` started with the framework environment's
interpreter; it speaks bnbench.timing.protocol over its stdin and a private copy of its stdout,
and whatever the framework prints goes to stderr (kept in a log that error messages quote).
Workers are kept alive and shared per (interpreter, environment variables) for the life of the
calling process, so that the price of importing a framework is paid once.
"""
from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
import threading
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Type

import numpy as np

from bnbench.adapters.contract import Adapter, Gradients
from bnbench.adapters.placement import Placement, environment_placement, environments_dir  # noqa: F401
from bnbench.timing.protocol import PROTOCOL, WorkerError, error_classes, read_message, write_message


class WorkerProcess:
    def __init__(self, placement: Placement):
        self.placement = placement
        env = dict(os.environ)
        env.update(dict(placement.env))
        env["BNBENCH_WORKER"] = "1"
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.log = tempfile.NamedTemporaryFile(prefix="bnbench-worker-", suffix=".log", delete=False)
        self.process = subprocess.Popen([placement.python, "-m", "bnbench.timing.server"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, env=env)
        self.lock = threading.Lock()
        self.pending_release = []       # handles of adapters garbage-collected since the last call
        reply, _ = self.call("hello")
        if reply.get("protocol") != PROTOCOL:
            raise WorkerError(f"worker in {placement.where} speaks protocol {reply.get('protocol')}, expected {PROTOCOL}")
        self.python_version = reply["python"]

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log.name, "r", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:]).strip()
        except OSError:
            return ""

    def call(self, op: str, arrays: Optional[Mapping[str, np.ndarray]] = None, **fields: Any):
        with self.lock:
            try:
                while self.pending_release:
                    write_message(self.process.stdin, {"op": "release", "handle": self.pending_release.pop()})
                    read_message(self.process.stdout)
                write_message(self.process.stdin, dict(fields, op=op), arrays)
                reply, out = read_message(self.process.stdout)
            except (EOFError, BrokenPipeError, OSError) as error:
                self.process.poll()
                raise WorkerError(f"the worker process in {self.placement.where} died during {op!r} "
                                  f"(exit status {self.process.returncode}, {type(error).__name__}); its log ends:\n"
                                  f"{self.log_tail()}") from None
        if not reply.get("ok"):
            cls = error_classes().get(reply.get("error"), WorkerError)
            raise cls(reply.get("message", "unknown worker error"))
        return reply, out

    def ask_to_exit(self) -> None:
        """Tell the worker to exit, without waiting for it."""
        if self.process.poll() is None:
            try:
                with self.lock:
                    write_message(self.process.stdin, {"op": "exit"})
            except Exception:
                self.process.kill()

    def finish_closing(self) -> None:
        """Wait for the worker to exit (killing it after 10 s), and remove its log."""
        try:
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


_workers: Dict[Placement, WorkerProcess] = {}
_workers_lock = threading.Lock()


def worker_for(placement: Placement) -> WorkerProcess:
    with _workers_lock:
        worker = _workers.get(placement)
        if worker is None or worker.process.poll() is not None:
            worker = WorkerProcess(placement)
            _workers[placement] = worker
        return worker


@atexit.register
def close_workers() -> None:
    # every worker told first, then waited for: frameworks that take seconds to tear down
    # (TensorFlow, MindSpore) do so together, not one after another (every framework at medium:
    # 8.0 s to 4.7-5.0 s for all 18 workers)
    with _workers_lock:
        for worker in _workers.values():
            worker.ask_to_exit()
        for worker in _workers.values():
            worker.finish_closing()
        _workers.clear()


def remote_class(local: Type, placement: Placement) -> Type:
    """An Adapter class whose work runs in a worker process at ``placement``: the same declaration
    object as ``local`` (every declared fact, none copied by hand), and ``local``'s own answers to
    the questions that need no framework (what it cannot express, its flags, its alternatives)."""

    class RemoteAdapter(Adapter):
        declaration = local.declaration
        worker_placement: ClassVar[Placement] = placement
        _probe_cache: ClassVar[Optional[Dict[str, Any]]] = None

        # ---- pure declaration logic of the framework's own class: no framework imported
        tuning_of = staticmethod(local.tuning_of)
        unsupported = staticmethod(local.unsupported)
        known_departure = staticmethod(local.known_departure)
        alternatives_of = staticmethod(local.alternatives_of)
        precision_unavailable = staticmethod(local.precision_unavailable)
        has_profiler = staticmethod(local.has_profiler)

        @classmethod
        def check_variant(cls, mode: str, variant: Optional[str], *, environment: bool = True) -> None:
            # the alternative's variables are the worker's: it checks them when it builds the adapter
            local.check_variant(mode, variant, environment=False)

        # ---- what the worker answers
        @classmethod
        def _worker(cls) -> WorkerProcess:
            return worker_for(cls.worker_placement)

        @classmethod
        def _probe(cls) -> Dict[str, Any]:
            if cls._probe_cache is None:
                missing = cls.worker_placement.missing()
                if missing:
                    cls._probe_cache = {"import_error": missing, "version": None, "device_status": {}}
                else:
                    try:
                        cls._probe_cache, _ = cls._worker().call("probe", framework=cls.name)
                    except WorkerError as error:
                        first = (str(error).splitlines() or [""])[0]
                        cls._probe_cache = {"import_error": first, "version": None, "device_status": {}}
            return cls._probe_cache

        @classmethod
        def missing_requirement(cls) -> Optional[str]:
            return cls.worker_placement.missing()

        @classmethod
        def import_error(cls) -> Optional[str]:
            return cls._probe()["import_error"]

        @classmethod
        def version(cls) -> str:
            return cls._probe()["version"] or "unknown"

        @classmethod
        def installed_version(cls) -> Optional[str]:
            """From the package metadata of the worker's environment, without starting a worker
            or importing the framework (a short interpreter run where it is another one)."""
            if cls.worker_placement.python == sys.executable:
                return local.installed_version()
            if cls.worker_placement.missing():
                return None
            script = ("import sys; from bnbench.adapters.registry import local_class; "
                      "print(local_class(sys.argv[1]).installed_version() or '')")
            try:
                done = subprocess.run([cls.worker_placement.python, "-c", script, cls.name], capture_output=True,
                                      text=True, timeout=60, env=dict(os.environ, **dict(cls.worker_placement.env)))
            except (OSError, subprocess.SubprocessError):
                return None
            return done.stdout.strip() or None if done.returncode == 0 else None

        @classmethod
        def device_unavailable(cls, device: str) -> Optional[str]:
            if device not in cls.devices:
                return super().device_unavailable(device)
            return cls._probe()["device_status"].get(device)

        @classmethod
        def set_threads(cls, n_threads: int) -> int:
            reply, _ = cls._worker().call("set_threads", framework=cls.name, n_threads=n_threads)
            return reply["threads"]

        @classmethod
        def set_affinity(cls, cores: List[int]) -> List[int]:
            """Every thread of the worker onto ``cores``; the cores it runs on now."""
            reply, _ = cls._worker().call("set_affinity", cores=list(cores))
            return reply["cores"]

        @classmethod
        def measured_conventions(cls):
            """Rows of `bnbench conventions`, probed and analysed in the worker (probes are callables)."""
            reply, _ = cls._worker().call("conventions", framework=cls.name)
            return reply["rows"]

        @property
        def worker(self) -> WorkerProcess:
            """The worker process this adapter's model lives in (others may be built there too)."""
            return self._remote

        def _build(self, params: Dict[str, np.ndarray]) -> None:
            self._handle = None
            self._remote = self._worker()
            reply, _ = self._remote.call("build", params, framework=self.name, mode=self.mode, device=self.device,
                                         spec=self.spec.to_dict(), variant=self.variant, precision=self.precision)
            self._handle = reply["handle"]

        def train_step(self, X: np.ndarray, y: np.ndarray) -> float:
            X, y = self._check(X, y)
            reply, _ = self._remote.call("train_step", {"X": X, "y": y}, handle=self._handle)
            return reply["loss"]

        def gradients(self, X: np.ndarray, y: np.ndarray) -> Gradients:
            X, y = self._check(X, y)
            reply, out = self._remote.call("gradients", {"X": X, "y": y}, handle=self._handle)
            return Gradients(reply["loss"], out["probs"], {name: out[f"grad/{name}"] for name in reply["names"]})

        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            X, _ = self._check(X, None, training=False)
            _, out = self._remote.call("predict_proba", {"X": X}, handle=self._handle)
            return out["probs"]

        def state(self) -> Dict[str, np.ndarray]:
            reply, out = self._remote.call("state", handle=self._handle)
            return {name: out[name] for name in reply["names"]}

        def prepare_timing(self, X: np.ndarray, y: np.ndarray, *, warmup: int = 3) -> Dict[str, Any]:
            """Put (X, y) on the device in the worker (bnbench.timing.steps.prepare); the first
            step's and the warm-up's seconds."""
            X, y = self._check(X, y)
            reply, _ = self._remote.call("prepare_timing", {"X": X, "y": y}, handle=self._handle, warmup=warmup)
            return {"first_step": reply["first_step"], "warmup_seconds": reply["warmup_seconds"]}

        def profile(self, X: np.ndarray, y: np.ndarray, steps: int) -> Dict[str, object]:
            """The framework's own profile of ``steps`` steps, made in the worker."""
            X, y = self._check(X, y)
            reply, _ = self._remote.call("profile", {"X": X, "y": y}, handle=self._handle, steps=steps)
            return reply["profile"]

        def burst(self, seconds: float, *, min_steps: int = 1, max_steps: int = 10000, how: str = "per_step",
                  memory: bool = False) -> Dict[str, Any]:
            """One burst on the prepared batch, timed in the worker (bnbench.timing.steps.burst)."""
            reply, _ = self._remote.call("burst", handle=self._handle, seconds=seconds, min_steps=min_steps,
                                         max_steps=max_steps, how=how, memory=memory)
            reply.pop("ok", None)
            return reply

        def __del__(self) -> None:
            # Never talk to the worker from here (a collection can run in the middle of a call):
            # the release travels with the next call.
            handle = getattr(self, "_handle", None)
            remote = getattr(self, "_remote", None)
            if handle is not None and remote is not None:
                remote.pending_release.append(handle)

    RemoteAdapter.__name__ = RemoteAdapter.__qualname__ = f"Remote{local.__name__}"
    RemoteAdapter.local = local
    return RemoteAdapter
