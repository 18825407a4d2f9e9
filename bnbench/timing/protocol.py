"""The wire format between the suite and its worker processes (bnbench.timing.worker): every
message is the protocol's magic, a length-prefixed JSON header and a length-prefixed .npz payload,
the inputs and outputs of ``bnbench trace`` (a spec as JSON, arrays as .npz bytes). A message that
does not start with the magic, or announces a header past ``MAX_HEADER_BYTES``, is refused with the
bytes received quoted (``ProtocolError``): never read as a length ("hell" would be 1.7 GB).

The code here must stay importable by the oldest interpreter a worker runs under (Python 3.9).
"""
from __future__ import annotations

import io
import json
import struct
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Type

import numpy as np

PROTOCOL = 3
# the folder a worker runs in, made by its caller, removed by the caller or, when the caller is gone, by the worker
WORKER_FOLDER_PREFIX = "bnbench-worker-"
MAGIC = b"BNB3"
MAX_HEADER_BYTES = 64 << 20
MAX_PAYLOAD_BYTES = 1 << 40


class WorkerError(RuntimeError):
    """The worker process failed in a way that is not one of the suite's own errors."""


class WorkerFault(WorkerError):
    """The worker process itself failed: it died, ran past its deadline or broke the protocol. Its
    message says which, in words a results row can carry ("timed out after 31 s in 'burst'")."""


class ProtocolError(WorkerFault):
    """Bytes on the protocol stream that are not a message of this protocol."""


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


def encode_message(header: Dict[str, Any], arrays: Optional[Mapping[str, np.ndarray]] = None) -> bytes:
    header_bytes = json.dumps(header).encode("utf-8")
    payload = pack_arrays(arrays)
    return MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes + struct.pack(">Q", len(payload)) + payload


def write_message(stream, header: Dict[str, Any], arrays: Optional[Mapping[str, np.ndarray]] = None) -> None:
    stream.write(encode_message(header, arrays))
    stream.flush()


def _read_exactly(read: Callable[[int], bytes], n: int) -> bytes:
    chunks = []
    while n:
        chunk = read(min(n, 1 << 24))
        if not chunk:
            raise EOFError("stream closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _refuse(received: bytes, read: Callable[[int], bytes], what: str) -> ProtocolError:
    """The error for bytes that are not the protocol's, quoting them (and what else came at once)."""
    try:
        received += read(60)
    except Exception:       # the quote is what arrived; nothing more is waited for
        pass
    return ProtocolError(f"{what}: {received[:64]!r}")


def read_message(stream, read: Optional[Callable[[int], bytes]] = None) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """The next message from ``stream`` (or through ``read(n)``: up to n bytes, b"" at the end)."""
    read = read or stream.read
    magic = _read_exactly(read, len(MAGIC))
    if magic != MAGIC:
        raise _refuse(magic, read, "wrote bytes that are not a message of the protocol to its stream")
    raw_length = _read_exactly(read, 4)
    (header_length,) = struct.unpack(">I", raw_length)
    if header_length > MAX_HEADER_BYTES:
        raise _refuse(magic + raw_length, read, f"announced a header of {header_length} bytes")
    raw_header = _read_exactly(read, header_length)
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except ValueError:
        raise ProtocolError(f"sent a header that is not JSON: {raw_header[:64]!r}") from None
    (payload_length,) = struct.unpack(">Q", _read_exactly(read, 8))
    if payload_length > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"announced a payload of {payload_length} bytes")
    return header, unpack_arrays(_read_exactly(read, payload_length) if payload_length else b"")
