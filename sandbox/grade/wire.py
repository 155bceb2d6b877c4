"""What crosses between the grader and a submission's process: values encoded without pickle, in length-prefixed
frames.

The grader never unpickles anything a submission sends (unpickling runs code). A message is a JSON header and the
raw bytes of its tensors: tensors, numpy arrays, tuples, lists, dicts with string keys, None, booleans, numbers
and strings travel as themselves; a callable travels as a numbered reference that the other side calls back
through the channel (:class:`Callables`); anything else arrives as an :class:`Opaque` stand-in that only describes
it ("a generator"), so a check can say what came back without running it.

A frame is ``8 bytes (header length) + 8 bytes (payload length) + header + payload``, little-endian. Frames larger
than :data:`MAX_FRAME` are refused, as are headers nested deeper than :data:`MAX_DEPTH`: a submission that sends
either gets a failed test, not a grader that runs out of memory.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import IO, Any, Callable

import numpy as np
import torch

MAX_FRAME = 64 << 20
"""The largest frame read or written (64 MiB): far above any test's tensors (hw3 sends 800 kB at most)."""
MAX_DEPTH = 32

_DTYPES = {getattr(torch, n): n for n in ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8",
                                          "bool")}  # fmt: skip
_TORCH = {name: dtype for dtype, name in _DTYPES.items()}


class WireError(Exception):
    """A frame that cannot be read: truncated, too large, or not a message of this protocol."""


@dataclasses.dataclass(frozen=True)
class Opaque:
    """A value that cannot cross the boundary as itself (a module, a generator, a tensor of an unusual dtype...):
    ``kind`` describes it for the report."""

    kind: str

    def __repr__(self) -> str:
        return f"<{self.kind}>"


class Callables:
    """The callables one side has lent to the other, by number: the other side gets ``{"$fn": n}`` and calls back
    with ``n``. ``names`` maps callables that the other side already holds (a submission's own functions) to their
    name, sent as ``{"$named": name}`` so that no round trip is needed."""

    def __init__(self):
        self.lent: dict[int, Callable] = {}
        self.names: dict[int, str] = {}

    def lend(self, fn: Callable) -> int:
        key = id(fn)
        self.lent[key] = fn
        return key


def encode(value: Any, callables: Callables | None = None) -> tuple[dict | list | Any, list[bytes]]:
    """``(header, buffers)`` for ``value``: JSON-able structure plus the raw bytes of its arrays."""
    buffers: list[bytes] = []

    def enc(v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            return {"$opaque": "a structure nested too deep"}
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return v if abs(v) < 2**63 else {"$opaque": "an int too large to send"}
        if isinstance(v, float):
            return {"$float": repr(v)} if v != v or v in (float("inf"), float("-inf")) else v
        if isinstance(v, torch.Tensor):
            return tensor(v, "$t")
        if isinstance(v, np.ndarray):
            return tensor(torch.from_numpy(np.ascontiguousarray(v)), "$nd") if v.dtype != object else opaque(v)
        if isinstance(v, np.generic):
            return enc(v.item(), depth + 1)
        if isinstance(v, torch.Size):
            return {"$tuple": [int(x) for x in v]}
        if isinstance(v, tuple):
            return {"$tuple": [enc(x, depth + 1) for x in v]}
        if isinstance(v, list):
            return [enc(x, depth + 1) for x in v]
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {"$dict": {k: enc(x, depth + 1) for k, x in v.items()}}
        if isinstance(v, Opaque):
            return {"$opaque": v.kind}
        if callable(v) and callables is not None:
            if id(v) in callables.names:
                return {"$named": callables.names[id(v)]}
            return {"$fn": callables.lend(v)}
        return opaque(v)

    def tensor(t: torch.Tensor, tag: str) -> Any:
        name = _DTYPES.get(t.dtype)
        if name is None or t.is_sparse or t.device.type != "cpu":
            return opaque(t)
        data = t.detach().contiguous()
        raw = data.numpy().tobytes() if t.dtype != torch.bool else data.to(torch.uint8).numpy().tobytes()
        buffers.append(raw)
        return {tag: [len(buffers) - 1, name, list(t.shape), bool(t.requires_grad)]}

    return enc(value, 0), buffers


def tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors of a value (a tensor, or tuples and lists of them), in order: how both sides number a result's
    tensors for the gradient's round trip."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors_in(v)]
    return []


def opaque(v: Any) -> dict:
    if isinstance(v, torch.Tensor):
        return {"$opaque": f"a {str(v.dtype).removeprefix('torch.')} tensor of shape {tuple(v.shape)}"}
    return {"$opaque": f"a {type(v).__name__}"}


def decode(header: Any, buffers: list[bytes], call: Callable[[int], Callable] | None = None,
           named: Callable[[str], Callable] | None = None) -> Any:  # fmt: skip
    """The value of ``(header, buffers)``. ``call(n)`` makes the stand-in for a lent callable ``{"$fn": n}``;
    ``named(name)`` finds a callable this side holds by name. Raises :class:`WireError` on a malformed header."""

    def dec(h: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError("a message nested too deep")
        if h is None or isinstance(h, (bool, int, float, str)):
            return h
        if isinstance(h, list):
            return [dec(x, depth + 1) for x in h]
        if not isinstance(h, dict) or len(h) != 1:
            raise WireError("not a message of this protocol")
        ((tag, body),) = h.items()
        if tag in ("$t", "$nd"):
            index, name, shape, requires_grad = body
            if name not in _TORCH or not 0 <= index < len(buffers):
                raise WireError(f"a tensor of unknown dtype {name!r}")
            dtype = _TORCH[name]
            np_dtype = np.uint8 if dtype == torch.bool else torch.empty(0, dtype=dtype).numpy().dtype
            array = np.frombuffer(buffers[index], dtype=np_dtype)
            if array.size != int(np.prod(shape, dtype=np.int64)):
                raise WireError("a tensor whose bytes do not match its shape")
            t = torch.from_numpy(array.copy()).reshape(shape)
            t = t.bool() if dtype == torch.bool else t
            if tag == "$nd":
                return t.numpy()
            return t.requires_grad_() if requires_grad and t.is_floating_point() else t
        if tag == "$float":
            return float(body)
        if tag == "$tuple":
            return tuple(dec(x, depth + 1) for x in body)
        if tag == "$dict":
            return {str(k): dec(v, depth + 1) for k, v in body.items()}
        if tag == "$opaque":
            return Opaque(str(body)[:200])
        if tag == "$fn":
            return call(int(body)) if call is not None else Opaque("a function of the other side")
        if tag == "$named" and named is not None:
            return named(str(body))
        raise WireError(f"unknown tag {tag!r}")

    return dec(header, 0)


def write_frame(stream: IO[bytes], message: dict, buffers: list[bytes] = ()) -> None:
    """Write one message (a JSON-able dict) and its buffers as a frame, then flush."""
    head = json.dumps(message, allow_nan=False).encode()
    sizes = [len(b) for b in buffers]
    meta = json.dumps(sizes).encode()
    payload_len = len(meta) + 8 + sum(sizes)
    if len(head) + payload_len > MAX_FRAME:
        raise WireError(f"a message of {len(head) + payload_len:,} bytes is larger than the limit")
    stream.write(struct.pack("<QQ", len(head), payload_len) + head + struct.pack("<Q", len(meta)) + meta)
    for b in buffers:
        stream.write(b)
    stream.flush()


def read_frame(stream: IO[bytes]) -> tuple[dict, list[bytes]]:
    """Read one frame from a blocking stream: ``(message, buffers)``. Raises :class:`EOFError` at the end of the
    stream and :class:`WireError` on anything malformed."""
    buffer = bytearray(_read(stream, 16))
    buffer += _read(stream, _size(buffer) - 16)
    return take_frame(buffer)


def take_frame(buffer: bytearray) -> tuple[dict, list[bytes]] | None:
    """The first whole frame of ``buffer`` as ``(message, buffers)``, removed from it, or None while it is
    incomplete. Raises :class:`WireError` as soon as its sizes say it is not one."""
    if len(buffer) < 16 or len(buffer) < (total := _size(buffer)):
        return None
    head_len = struct.unpack("<Q", buffer[:8])[0]
    head, payload = bytes(buffer[16 : 16 + head_len]), bytes(buffer[16 + head_len : total])
    del buffer[:total]
    (meta_len,) = struct.unpack("<Q", payload[:8])
    try:
        message = json.loads(head)
        sizes = json.loads(payload[8 : 8 + meta_len])
    except (ValueError, UnicodeDecodeError) as err:
        raise WireError(f"not JSON: {err}") from None
    if not isinstance(message, dict) or not isinstance(sizes, list) or not all(isinstance(s, int) for s in sizes):
        raise WireError("not a message of this protocol")
    buffers, at = [], 8 + meta_len
    for size in sizes:
        if size < 0 or at + size > len(payload):
            raise WireError("a frame whose buffers do not add up")
        buffers.append(payload[at : at + size])
        at += size
    return message, buffers


def _size(buffer: bytearray) -> int:
    """The length of the frame that starts ``buffer`` (its first 16 bytes), checked against the limit."""
    head_len, payload_len = struct.unpack("<QQ", buffer[:16])
    if head_len + payload_len > MAX_FRAME or payload_len < 8:
        raise WireError("a frame larger than the limit, or malformed")
    return 16 + head_len + payload_len


def _read(stream: IO[bytes], n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the other side closed the channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
