"""The wire format between the suite and its worker processes (bnbench.timing.worker): every
message is a length-prefixed JSON header followed by a length-prefixed .npz payload, the inputs
and outputs of ``bnbench trace`` (a spec as JSON, arrays as .npz bytes).

The code here must stay importable by the oldest interpreter a worker runs under (Python 3.9).
"""
from __future__ import annotations

import io
import json
import struct
from typing import Any, Dict, Mapping, Optional, Tuple, Type

import numpy as np

PROTOCOL = 2


class WorkerError(RuntimeError):
    """The worker process failed in a way that is not one of the suite's own errors."""


def error_classes() -> Dict[str, Type[Exception]]:
    """The suite's own errors a worker sends back by name, raised again on the caller's side."""
    from bnbench.adapters.contract import Unavailable, Unsupported
    from bnbench.reference.model import BatchError
    from bnbench.reference.spec import ParameterError, SpecError

    return {cls.__name__: cls for cls in (Unavailable, Unsupported, BatchError, ParameterError, SpecError)}


def pack_arrays(arrays: Optional[Mapping[str, np.ndarray]]) -> bytes:
    if not arrays:
        return b""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    return buffer.getvalue()


def unpack_arrays(payload: bytes) -> Dict[str, np.ndarray]:
    if not payload:
        return {}
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def write_message(stream, header: Dict[str, Any], arrays: Optional[Mapping[str, np.ndarray]] = None) -> None:
    header_bytes = json.dumps(header).encode("utf-8")
    payload = pack_arrays(arrays)
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


def read_message(stream) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    (header_length,) = struct.unpack(">I", _read_exactly(stream, 4))
    header = json.loads(_read_exactly(stream, header_length).decode("utf-8"))
    (payload_length,) = struct.unpack(">Q", _read_exactly(stream, 8))
    return header, unpack_arrays(_read_exactly(stream, payload_length) if payload_length else b"")
