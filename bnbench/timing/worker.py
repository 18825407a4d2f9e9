"""Adapters that run in another process: one mechanism for every framework that cannot share
the suite's interpreter (MXNet's numpy<1.24 venv, a Keras backend other than this process's,
Caffe's Python 3.9 chroot, ...), and for every participant of a timing run, which runs in a
worker of its own.

The worker is ``python -m bnbench.timing.server`` started with the framework environment's
interpreter; it speaks bnbench.timing.protocol over two pipes of its own, and whatever the framework
prints goes to a log that error messages quote. Every call has a deadline: a worker that dies, hangs
or breaks the protocol raises ``WorkerFault`` and is killed, and its log and folder are removed.
Workers are kept alive and shared per (interpreter, environment variables) for the life of the
calling process, so that the price of importing a framework is paid once.
"""
from __future__ import annotations

import atexit
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Type

import numpy as np

from bnbench.adapters.contract import Adapter, Gradients
from bnbench.adapters.placement import Placement, environment_placement, environments_dir  # noqa: F401
from bnbench.reference.io import private_directory
from bnbench.timing.kernels import without_overrides
from bnbench.timing.protocol import (  # noqa: F401
    PROTOCOL,
    WORKER_FOLDER_PREFIX,
    ProtocolError,
    WorkerError,
    WorkerFault,
    encode_message,
    error_classes,
    read_message,
)
from bnbench.timing.runner import InWorker

# Every call to a worker has a deadline. Starting, building, verifying, profiling: generous (a
# framework's first import and compilation took up to a few minutes here), and configurable
# (``--worker-deadline``, or this variable). A burst gets its own, from its expected length
# (``burst_deadline``).
DEADLINE_VARIABLE = "BNBENCH_WORKER_DEADLINE_S"
DEFAULT_DEADLINE_S = 900.0
BURST_DEADLINE_MARGIN = 10.0
# 20 s was too tight on a loaded machine: in CI, beside the other tests, the GPU dry run's baseline
# (torch:compiled, queued, 2.8 ms a step) passed 21.5 s in a 0.15 s burst of round 2. A hung
# worker is still found within a minute.
BURST_DEADLINE_CONSTANT_S = 60.0
EXIT_WAIT_S = 10.0


def call_deadline() -> float:
    """The deadline of a call to a worker other than a burst, in seconds."""
    text = os.environ.get(DEADLINE_VARIABLE)
    if not text:
        return DEFAULT_DEADLINE_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{DEADLINE_VARIABLE}={text!r} must be a positive number of seconds")
    return value


def burst_deadline(seconds: float, min_steps: int, step_s: Optional[float]) -> float:
    """A burst's deadline: its expected length (``seconds``, or ``min_steps`` steps of ``step_s``
    where those take longer) times a margin, plus a constant for a step that pays a late cost."""
    expected = max(float(seconds), min_steps * float(step_s or 0.0))
    return BURST_DEADLINE_MARGIN * expected + BURST_DEADLINE_CONSTANT_S


class _PastDeadline(Exception):
    pass


def _exit_status(returncode: Optional[int]) -> str:
    if returncode is None:
        return "closed its protocol stream"
    if returncode < 0:
        try:
            return f"died from signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"died from signal {-returncode}"
    return f"died with exit status {returncode}"


class WorkerProcess:
    """One worker: ``python -m bnbench.timing.server IN OUT``, started in a folder of its own (so
    that nothing in the caller's directory is imported) and in a process group of its own (so that a
    worker past its deadline is killed with whatever it started). The protocol runs over two pipes
    of its own, passed as file descriptors: the worker's stdout and stderr go to its log, so nothing
    a framework prints, at import or later, can reach the protocol."""

    def __init__(self, placement: Placement):
        self.placement = placement
        self.fault: Optional[str] = None
        self.lock = threading.Lock()
        self.pending_release: List[int] = []     # handles of adapters garbage-collected since the last call
        self.folder = tempfile.mkdtemp(prefix=WORKER_FOLDER_PREFIX)
        self.log_path = os.path.join(self.folder, "worker.log")
        env = dict(os.environ)
        # a timed process runs the machine's own kernels: the environment's overrides are removed
        # and said (bnbench.timing.kernels); the placement's own variables still apply
        self.kernel_overrides_removed: Dict[str, str] = {}
        if placement.native_kernels:
            env, self.kernel_overrides_removed = without_overrides(env)
        env.update(dict(placement.env))
        env["BNBENCH_WORKER"] = "1"
        env.setdefault("PYTHONUNBUFFERED", "1")
        to_worker, from_us = os.pipe()
        to_us, from_worker = os.pipe()
        try:
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    [placement.python, "-m", "bnbench.timing.server", str(to_worker), str(from_worker)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=self.folder,
                    pass_fds=(to_worker, from_worker), start_new_session=True)
        except BaseException:
            for fd in (from_us, to_us):
                os.close(fd)
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        finally:
            os.close(to_worker)
            os.close(from_worker)
        self._send_fd, self._receive_fd = from_us, to_us
        os.set_blocking(self._send_fd, False)
        try:
            reply, _ = self.call("hello")
            if reply.get("protocol") != PROTOCOL:
                raise WorkerError(f"worker in {placement.where} speaks protocol {reply.get('protocol')}, expected {PROTOCOL}")
        except BaseException:
            self.close(wait_s=0.0)
            raise
        self.python_version = reply["python"]

    @property
    def alive(self) -> bool:
        return self.fault is None and self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, "r", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:]).strip()
        except OSError:
            return ""

    # ---- the two streams, each step against the call's deadline
    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [self._send_fd], [], remaining)[1]:
                raise _PastDeadline()
            try:
                view = view[os.write(self._send_fd, view):]
            except BlockingIOError:
                continue

    def _receiver(self, deadline: float):
        def read(n: int) -> bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._receive_fd], [], [], remaining)[0]:
                raise _PastDeadline()
            return os.read(self._receive_fd, n)
        return read

    def _exchange(self, header: Dict[str, Any], arrays, deadline: float):
        self._send(encode_message(header, arrays), deadline)
        return read_message(None, self._receiver(deadline))

    def call(self, op: str, arrays: Optional[Mapping[str, np.ndarray]] = None, *, deadline_s: Optional[float] = None,
             **fields: Any):
        """Send ``op`` and wait for the reply, ``deadline_s`` at most (default ``call_deadline()``).
        A worker that dies, runs past the deadline (it is then killed) or breaks the protocol raises
        WorkerFault, whose ``reason`` says which in a few words."""
        limit = call_deadline() if deadline_s is None else float(deadline_s)
        with self.lock:
            if self.fault is not None:
                raise self._faulted(self.fault, op, tail=False)
            deadline = time.monotonic() + limit
            try:
                while self.pending_release:
                    self._exchange({"op": "release", "handle": self.pending_release.pop()}, None, deadline)
                reply, out = self._exchange(dict(fields, op=op), arrays, deadline)
            except _PastDeadline:
                self._kill()
                raise self._faulted(f"timed out after {limit:.3g} s", op) from None
            except ProtocolError as error:
                self._kill()
                raise self._faulted(str(error), op) from None
            except (EOFError, OSError):
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._kill()
                raise self._faulted(_exit_status(self.process.returncode), op) from None
        if not reply.get("ok"):
            cls = error_classes().get(reply.get("error"), WorkerError)
            raise cls(reply.get("message", "unknown worker error"))
        return reply, out

    def _faulted(self, what: str, op: str, tail: bool = True) -> WorkerFault:
        """The error of a worker that failed (and its log and folder removed, the tail quoted)."""
        first = self.fault is None
        self.fault = self.fault or what
        log = self.log_tail() if tail and first else ""
        if first:
            self._release_files()
        error = WorkerFault(f"{self.placement.where or self.placement.python}: the worker {what} during {op!r}"
                            + (f"; its log ends:\n{log}" if log else ""))
        error.reason = f"{what} in {op!r}"
        return error

    def _kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            self.process.kill()
        try:
            self.process.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            pass

    def _release_files(self) -> None:
        for fd in (self._send_fd, self._receive_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._send_fd = self._receive_fd = -1
        shutil.rmtree(self.folder, ignore_errors=True)

    def ask_to_exit(self) -> None:
        """Tell the worker to exit, without waiting for it."""
        if self.alive:
            try:
                with self.lock:
                    self._send(encode_message({"op": "exit"}), time.monotonic() + 1.0)
            except Exception:
                self._kill()

    def finish_closing(self, wait_s: float = EXIT_WAIT_S) -> None:
        """Wait for the worker to exit (killing it, and what it started, after ``wait_s``), and
        remove its log and folder."""
        try:
            self.process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            self._kill()
        if self.fault is None:
            self.fault = "closed"
            self._release_files()

    def close(self, wait_s: float = EXIT_WAIT_S) -> None:
        self.ask_to_exit()
        self.finish_closing(wait_s)


_workers: Dict[Placement, WorkerProcess] = {}
_workers_lock = threading.Lock()


def worker_for(placement: Placement) -> WorkerProcess:
    with _workers_lock:
        worker = _workers.get(placement)
        if worker is None or not worker.alive:
            if worker is not None:
                worker.finish_closing(0.0)     # a dead one's log and folder go with it
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
                with private_directory() as folder:     # never the caller's directory, which -c puts on sys.path
                    done = subprocess.run([cls.worker_placement.python, "-c", script, cls.name], capture_output=True,
                                          text=True, timeout=60, env=dict(os.environ, **dict(cls.worker_placement.env)),
                                          cwd=folder)
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

        def runner(self) -> InWorker:
            """Its timed steps, prepared in the worker (``prepare_timing``), for the rounds to burst."""
            return InWorker(self._remote, self._handle, owner=self)

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
