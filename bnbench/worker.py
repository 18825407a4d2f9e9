"""Adapters that run in another process: one mechanism for every framework that cannot share
the suite's interpreter (MXNet's numpy<1.24 venv, a Keras backend other than this process's,
Caffe's Python 3.9 chroot, ...).

The worker is ``python -m bnbench.worker`` started with the framework environment's interpreter.
It speaks the same inputs and outputs as ``bnbench trace``: a spec as JSON, arrays as .npz bytes.
Every message is a length-prefixed JSON header followed by a length-prefixed .npz payload, over
the worker's stdin and a private copy of its stdout; whatever the framework prints goes to stderr
(kept in a log that error messages quote). Workers are kept alive and shared per (interpreter,
environment variables) for the life of the calling process, so that the price of importing a
framework is paid once.

The code here must stay importable by the oldest interpreter a worker runs under (Python 3.9).
"""
from __future__ import annotations

import atexit
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple, Type

import numpy as np

PROTOCOL = 1


# --------------------------------------------------------------------------- wire format
def _pack_arrays(arrays: Optional[Mapping[str, np.ndarray]]) -> bytes:
    if not arrays:
        return b""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    return buffer.getvalue()


def _unpack_arrays(payload: bytes) -> Dict[str, np.ndarray]:
    if not payload:
        return {}
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _write_message(stream, header: Dict[str, Any], arrays: Optional[Mapping[str, np.ndarray]] = None) -> None:
    header_bytes = json.dumps(header).encode("utf-8")
    payload = _pack_arrays(arrays)
    stream.write(struct.pack(">I", len(header_bytes)) + header_bytes + struct.pack(">Q", len(payload)) + payload)
    stream.flush()


def _read_exactly(stream, n: int) -> bytes:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            raise EOFError("stream closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_message(stream) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    (header_length,) = struct.unpack(">I", _read_exactly(stream, 4))
    header = json.loads(_read_exactly(stream, header_length).decode("utf-8"))
    (payload_length,) = struct.unpack(">Q", _read_exactly(stream, 8))
    return header, _unpack_arrays(_read_exactly(stream, payload_length) if payload_length else b"")


# --------------------------------------------------------------------------- errors
class WorkerError(RuntimeError):
    """The worker process failed in a way that is not one of the suite's own errors."""


def _error_classes() -> Dict[str, Type[Exception]]:
    return {cls.__name__: cls for cls in (Unavailable, Unsupported, BatchError, ParameterError, SpecError)}


# --------------------------------------------------------------------------- the worker side
class _Server:
    def __init__(self) -> None:
        self.adapters: Dict[int, Any] = {}
        self.timed_steps: Dict[int, Any] = {}     # handle -> a step function that waits for its device
        self.next_handle = 1

    def _new_handle(self, obj: Any) -> int:
        handle = self.next_handle
        self.next_handle += 1
        self.adapters[handle] = obj
        return handle

    def handle(self, op: str, header: Dict[str, Any], arrays: Dict[str, np.ndarray]):
        if op == "hello":
            return {"protocol": PROTOCOL, "python": sys.version.split()[0], "numpy": np.__version__}, None
        if op == "probe":
            adapter = registry.local_class(header["framework"])
            reason = adapter.import_error()
            reply: Dict[str, Any] = {"import_error": reason, "version": None, "device_status": {}}
            if reason is None:
                reply["version"] = adapter.version()
                reply["device_status"] = {device: adapter.device_unavailable(device) for device in adapter.devices}
            return reply, None
        if op == "set_threads":
            return {"threads": registry.local_class(header["framework"]).set_threads(int(header["n_threads"]))}, None
        if op == "conventions":
            return {"rows": conventions.measure(registry.local_class(header["framework"]))}, None
        if op == "build":
            adapter_class = registry.local_class(header["framework"])
            spec = Spec.from_dict(header["spec"])
            adapter = adapter_class(spec, arrays, mode=header["mode"], device=header["device"],
                                    variant=header.get("variant"))
            return {"handle": self._new_handle(adapter)}, None
        if op == "build_peak":
            peak = MatmulPeak(header["device"], header["dtype"], int(header.get("n") or 0), header.get("framework") or "")
            handle = self._new_handle(peak)
            self.timed_steps[handle] = peak.step
            return {"handle": handle, "flops": peak.flops, "n": peak.n, "library": peak.library}, None
        if op not in ("train_step", "gradients", "predict_proba", "state", "time_steps", "prepare_timing", "burst",
                      "profile", "release"):
            raise WorkerError(f"unknown worker operation {op!r}")
        adapter = self.adapters.get(header.get("handle"))
        if adapter is None:
            raise WorkerError(f"no adapter with handle {header.get('handle')!r} in this worker (released or never built)")
        if op == "train_step":
            return {"loss": float(adapter.train_step(arrays["X"], arrays["y"]))}, None
        if op == "gradients":
            result = adapter.gradients(arrays["X"], arrays["y"])
            out = {"probs": np.asarray(result.probs)}
            out.update({f"grad/{name}": np.asarray(g) for name, g in result.grads.items()})
            return {"loss": float(result.loss), "names": list(result.grads)}, out
        if op == "predict_proba":
            return {}, {"probs": np.asarray(adapter.predict_proba(arrays["X"]))}
        if op == "state":
            state = adapter.state()
            return {"names": list(state)}, state
        if op == "profile":
            return {"profile": adapter.profile(arrays["X"], arrays["y"], int(header["steps"]))}, None
        if op == "time_steps":
            return {"seconds": _time_steps(adapter, arrays["X"], arrays["y"], int(header["warmup"]), int(header["steps"]))}, None
        if op == "prepare_timing":
            step, first, warmup = _prepare_timing(adapter, arrays["X"], arrays["y"], int(header["warmup"]))
            self.timed_steps[header["handle"]] = step
            return {"first_step": first, "warmup_seconds": warmup}, None
        if op == "burst":
            step = self.timed_steps.get(header["handle"])
            if step is None:
                raise WorkerError(f"handle {header['handle']!r} was not prepared for timing")
            return _burst(step, float(header["seconds"]), int(header["min_steps"]), int(header["max_steps"]),
                          bool(header.get("per_step", True))), None
        del self.adapters[header["handle"]]      # op == "release"
        self.timed_steps.pop(header["handle"], None)
        return {}, None


def _prepare_timing(adapter, X: np.ndarray, y: np.ndarray, warmup: int):
    """Put one batch on the device and return a step function that ends synchronised, the first
    step's seconds (compilation, tracing) and the warm-up's; both are reported apart from the
    steady state."""
    import time

    batch = adapter.to_device(X, y)

    def step() -> None:
        adapter.train_step_prepared(batch)
        adapter.sync()

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    return step, first, time.perf_counter() - start


def _burst(step, seconds: float, min_steps: int, max_steps: int, per_step: bool) -> Dict[str, Any]:
    """Steps until ``seconds`` have passed (at least ``min_steps``, at most ``max_steps``).

    per_step: every step timed on its own (the burst's median resists a step that an interrupt
    slowed); otherwise only the whole burst is timed (the bare measurement the timer's own
    overhead is checked against)."""
    import time

    clock = time.perf_counter
    if not per_step:
        start = clock()
        for _ in range(max(min_steps, 1)):
            step()
        return {"total": clock() - start, "count": max(min_steps, 1)}
    times = []
    burst_start = clock()
    while len(times) < max_steps:
        start = clock()
        step()
        end = clock()
        times.append(end - start)
        if len(times) >= min_steps and end - burst_start >= seconds:
            break
    return {"steps": times}


def _time_steps(adapter, X: np.ndarray, y: np.ndarray, warmup: int, steps: int):
    """Steady-state step times measured inside the worker (first call and warm-up excluded)."""
    step, first, _ = _prepare_timing(adapter, X, y, warmup)
    return {"first_step": first, "steps": _burst(step, 0.0, steps, steps, True)["steps"]}


def serve() -> int:
    # The protocol gets a private copy of stdout; fd 1 then points at stderr so that anything a
    # framework prints (C libraries included) cannot corrupt a message.
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    protocol_in = sys.stdin.buffer
    server = _Server()
    known = _error_classes()
    while True:
        try:
            header, arrays = _read_message(protocol_in)
        except EOFError:
            return 0
        op = header.get("op")
        if op == "exit":
            _write_message(protocol_out, {"ok": True})
            return 0
        try:
            reply, out = server.handle(op, header, arrays)
            reply["ok"] = True
        except Exception as error:  # every failure goes back to the caller, which re-raises it
            import traceback

            traceback.print_exc(file=sys.stderr)
            kind = type(error).__name__
            reply, out = {"ok": False, "error": kind if kind in known else "WorkerError",
                          "message": str(error) if kind in known else f"{kind}: {error}"}, None
        _write_message(protocol_out, reply, out)


# --------------------------------------------------------------------------- the caller side
# Where a worker runs is data that adapters declare (bnbench.adapters.placement); this module acts on it.
from bnbench.adapters.placement import Placement, environment_placement, environments_dir  # noqa: E402,F401
from bnbench import conventions
from bnbench.adapters import registry
from bnbench.adapters.base import Adapter, Gradients, Unavailable, Unsupported
from bnbench.peak import MatmulPeak
from bnbench.reference.model import BatchError
from bnbench.reference.spec import ParameterError, Spec, SpecError
class WorkerProcess:
    def __init__(self, placement: Placement):
        self.placement = placement
        env = dict(os.environ)
        env.update(dict(placement.env))
        env["BNBENCH_WORKER"] = "1"
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.log = tempfile.NamedTemporaryFile(prefix="bnbench-worker-", suffix=".log", delete=False)
        self.process = subprocess.Popen([placement.python, "-m", "bnbench.worker"], stdin=subprocess.PIPE,
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
                    _write_message(self.process.stdin, {"op": "release", "handle": self.pending_release.pop()})
                    _read_message(self.process.stdout)
                _write_message(self.process.stdin, dict(fields, op=op), arrays)
                reply, out = _read_message(self.process.stdout)
            except (EOFError, BrokenPipeError, OSError) as error:
                self.process.poll()
                raise WorkerError(f"the worker process in {self.placement.where} died during {op!r} "
                                  f"(exit status {self.process.returncode}, {type(error).__name__}); its log ends:\n"
                                  f"{self.log_tail()}") from None
        if not reply.get("ok"):
            cls = _error_classes().get(reply.get("error"), WorkerError)
            raise cls(reply.get("message", "unknown worker error"))
        return reply, out

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                with self.lock:
                    _write_message(self.process.stdin, {"op": "exit"})
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
    with _workers_lock:
        for worker in _workers.values():
            worker.close()
        _workers.clear()


def burst(worker: WorkerProcess, handle: int, seconds: float, *, min_steps: int = 1, max_steps: int = 10000,
          per_step: bool = True) -> Dict[str, Any]:
    reply, _ = worker.call("burst", handle=handle, seconds=seconds, min_steps=min_steps, max_steps=max_steps,
                           per_step=per_step)
    reply.pop("ok", None)
    return reply


def remote_class(local: Type, placement: Placement) -> Type:
    """An Adapter class with ``local``'s declared facts whose work runs in a worker process."""

    class RemoteAdapter(Adapter):
        name = local.name
        modes = local.modes
        best_mode = local.best_mode
        devices = local.devices
        requires = local.requires
        tuning = local.tuning
        alternatives = local.alternatives
        description = local.description
        worker_placement: ClassVar[Placement] = placement
        _probe_cache: ClassVar[Optional[Dict[str, Any]]] = None

        @classmethod
        def tuning_of(cls, mode: str) -> str:
            return local.tuning_of(mode)

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
        def unsupported(cls, spec, mode: str, device: str) -> Optional[str]:
            return local.unsupported(spec, mode, device)   # pure spec logic: no framework import

        @classmethod
        def known_departure(cls, spec, mode: str, device: str, m: int) -> Optional[str]:
            return local.known_departure(spec, mode, device, m)

        @classmethod
        def alternatives_of(cls, mode: str):
            return local.alternatives_of(mode)

        @classmethod
        def check_variant(cls, mode: str, variant: Optional[str], *, environment: bool = True) -> None:
            # the alternative's variables are the worker's: it checks them when it builds the adapter
            local.check_variant(mode, variant, environment=False)

        @classmethod
        def set_threads(cls, n_threads: int) -> int:
            reply, _ = cls._worker().call("set_threads", framework=cls.name, n_threads=n_threads)
            return reply["threads"]

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
            reply, _ = self._remote.call("build", params, framework=self.name, mode=self.mode,
                                         device=self.device, spec=self.spec.to_dict(), variant=self.variant)
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

        def time_steps(self, X: np.ndarray, y: np.ndarray, *, warmup: int = 5, steps: int = 20) -> Dict[str, Any]:
            """Steady-state step times measured by the worker itself (it owns the framework)."""
            X, y = self._check(X, y)
            reply, _ = self._remote.call("time_steps", {"X": X, "y": y}, handle=self._handle,
                                         warmup=warmup, steps=steps)
            return reply["seconds"]

        def prepare_timing(self, X: np.ndarray, y: np.ndarray, *, warmup: int = 3) -> Dict[str, Any]:
            """Put (X, y) on the device in the worker; the first step's and the warm-up's seconds."""
            X, y = self._check(X, y)
            reply, _ = self._remote.call("prepare_timing", {"X": X, "y": y}, handle=self._handle, warmup=warmup)
            return {"first_step": reply["first_step"], "warmup_seconds": reply["warmup_seconds"]}

        def profile(self, X: np.ndarray, y: np.ndarray, steps: int) -> Dict[str, object]:
            """The framework's own profile of ``steps`` steps, made in the worker."""
            X, y = self._check(X, y)
            reply, _ = self._remote.call("profile", {"X": X, "y": y}, handle=self._handle, steps=steps)
            return reply["profile"]

        def burst(self, seconds: float, *, min_steps: int = 1, max_steps: int = 10000, per_step: bool = True):
            """One burst of synchronised steps on the prepared batch, timed in the worker."""
            return burst(self._remote, self._handle, seconds, min_steps=min_steps, max_steps=max_steps, per_step=per_step)

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


if __name__ == "__main__":
    sys.exit(serve())
