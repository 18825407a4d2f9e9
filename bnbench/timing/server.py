"""The worker side: ``python -m bnbench.timing.server IN OUT``, started by bnbench.timing.worker with
the interpreter of a framework's environment. It builds adapters by name, runs what the caller asks
(trace operations, timing bursts, profiles, conventions) and answers over the two pipes whose file
descriptors it is given (bnbench.timing.protocol); its stdout and stderr are the worker's log, so
whatever the framework prints, at import or later, never reaches the protocol.

The code here must stay importable by the oldest interpreter a worker runs under (Python 3.9).
"""
from __future__ import annotations

import os
import shutil
import sys
from typing import Any, Dict, List, Optional

import numpy as np

from bnbench.adapters import registry
from bnbench.equivalence import conventions
from bnbench.reference.spec import Spec
from bnbench.timing import kernels, steps
from bnbench.timing.peak import MatmulPeak
from bnbench.timing.protocol import PROTOCOL, WORKER_FOLDER_PREFIX, WorkerError, error_classes, read_message, write_message

ADAPTER_OPS = ("train_step", "gradients", "predict_proba", "state", "prepare_timing", "burst", "profile", "release")


def set_affinity(cores: List[int]) -> List[int]:
    """Every thread of this process onto ``cores`` (threads started later inherit it); the cores
    it runs on now."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:            # no /proc (Caffe's chroot): the main thread alone can be placed
        os.sched_setaffinity(0, cores)
        return sorted(os.sched_getaffinity(0))
    for task in tasks:
        try:
            os.sched_setaffinity(int(task), cores)
        except (OSError, ValueError):
            continue          # a thread that ended meanwhile
    return sorted(os.sched_getaffinity(0))


class _Server:
    def __init__(self) -> None:
        self.adapters: Dict[int, Any] = {}
        self.prepared: Dict[int, Any] = {}     # handle -> what is timed (steps.Prepared or steps.Bare)
        self.resident_before: Dict[int, Optional[int]] = {}   # handle -> KiB resident before it was built
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
        if op == "blas":
            blas, problem = kernels.loaded_blas()
            return {"blas": blas, "problem": problem}, None
        if op == "set_affinity":
            return {"cores": set_affinity([int(core) for core in header["cores"]])}, None
        if op == "conventions":
            return {"rows": conventions.measure(registry.local_class(header["framework"]))}, None
        if op == "build":
            adapter_class = registry.local_class(header["framework"])
            before = steps.resident_kib()
            adapter = adapter_class(Spec.from_dict(header["spec"]), arrays, mode=header["mode"], device=header["device"],
                                    variant=header.get("variant"), precision=header.get("precision"))
            handle = self._new_handle(adapter)
            self.resident_before[handle] = before
            return {"handle": handle}, None
        if op == "build_peak":
            peak = MatmulPeak(header["device"], header["dtype"], int(header.get("n") or 0), header.get("framework") or "")
            handle = self._new_handle(peak)
            self.prepared[handle] = steps.Bare(peak.step)
            return {"handle": handle, "flops": peak.flops, "n": peak.n, "library": peak.library}, None
        if op not in ADAPTER_OPS:
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
        if op == "prepare_timing":
            prepared, first, warmup = steps.prepare(adapter, arrays["X"], arrays["y"], int(header["warmup"]),
                                                    self.resident_before.get(header["handle"]))
            self.prepared[header["handle"]] = prepared
            return {"first_step": first, "warmup_seconds": warmup}, None
        if op == "burst":
            prepared = self.prepared.get(header["handle"])
            if prepared is None:
                raise WorkerError(f"handle {header['handle']!r} was not prepared for timing")
            return steps.burst(prepared, float(header["seconds"]), min_steps=int(header["min_steps"]),
                               max_steps=int(header["max_steps"]), how=header.get("how", "per_step"),
                               memory=bool(header.get("memory", False))), None
        del self.adapters[header["handle"]]      # op == "release"
        self.prepared.pop(header["handle"], None)
        self.resident_before.pop(header["handle"], None)
        return {}, None


def remove_own_folder() -> None:
    """The folder bnbench.timing.worker made for this worker (its working directory, holding its log)."""
    folder = os.getcwd()
    if os.path.basename(folder).startswith(WORKER_FOLDER_PREFIX):
        shutil.rmtree(folder, ignore_errors=True)


def serve(fd_in: int, fd_out: int) -> int:
    # The protocol's pipes are this process's alone: a compiler or helper a framework starts must
    # not hold them open after this process is gone.
    for fd in (fd_in, fd_out):
        os.set_inheritable(fd, False)
    protocol_in = os.fdopen(fd_in, "rb")
    protocol_out = os.fdopen(fd_out, "wb")
    server = _Server()
    known = error_classes()
    while True:
        try:
            header, arrays = read_message(protocol_in)
        except EOFError:        # the caller is gone without a word (killed): nobody else removes our folder
            remove_own_folder()
            return 0
        op = header.get("op")
        if op == "exit":
            write_message(protocol_out, {"ok": True})
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
        write_message(protocol_out, reply, out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m bnbench.timing.server FD_IN FD_OUT (started by bnbench.timing.worker)")
    sys.exit(serve(int(sys.argv[1]), int(sys.argv[2])))
