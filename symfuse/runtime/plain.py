"""Plain data to and from JSON: the graph cache's entry format.

An entry is read back from a directory that could have been tampered with, so
it is never unpickled: decoding builds only the types listed here (JSON's own,
tuples, bytes, numeric numpy dtypes, scalar types, scalars and arrays, run-time
sizes (their IR spelling, read by the IR's size reader), and the dataclasses in
``CLASSES``) and cannot run code. Anything else is refused when
encoding, so an entry that would not come back as it went in is never written.

Tagged values are one-key objects whose key starts with ``$``; a plain dict
with such a key, or with keys that are not strings, is stored as ``{"$d":
[[k, v], ...]}``.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import importlib
import json

import numpy as np

from ..errors import SymfuseError
from ..ir.symdim import SymInt, parse_dim

# tag -> "module:class" of the dataclasses an entry may hold (imported when decoded)
CLASSES = {
    "KernelInfo": "symfuse.compiler.kernel_info:KernelInfo",
    "LaunchSpec": "symfuse.compiler.kernel_info:LaunchSpec",
    "KernelResources": "symfuse.compiler.kernel_info:KernelResources",
    "ControlStep": "symfuse.compiler.kernel_info:ControlStep",
    "CollectiveStep": "symfuse.compiler.kernel_info:CollectiveStep",
}
_CLASS_TAG = {v.rsplit(":", 1)[1]: k for k, v in CLASSES.items()}
_NUMERIC_KINDS = "biufc"


class PlainDataError(ValueError):
    """A value is not plain data (encoding), or a document is not a valid entry (decoding)."""


def dumps(value) -> bytes:
    return json.dumps(_encode(value), separators=(",", ":"), allow_nan=True).encode("utf-8")


def loads(data: bytes):
    try:
        return json.loads(data.decode("utf-8"), object_hook=_decode_tagged)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise PlainDataError(f"not a plain-data document ({type(e).__name__}: {e})") from None


def _numeric_dtype(name) -> np.dtype:
    if not isinstance(name, str):
        raise PlainDataError(f"dtype name {name!r} is not a string")
    try:
        dt = np.dtype(name)
    except TypeError:
        raise PlainDataError(f"unknown dtype {name!r}") from None
    if dt.kind not in _NUMERIC_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise PlainDataError(f"dtype {name!r} is not a numeric dtype")
    return dt


def _encode(v):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, float)) and type(v) in (int, float):
        return v
    if type(v) is SymInt:                     # a run-time size: its IR spelling, read back by the IR's reader
        return {"$sym": repr(v)}
    if isinstance(v, list):
        return [_encode(x) for x in v]
    if isinstance(v, tuple):
        return {"$t": [_encode(x) for x in v]}
    if isinstance(v, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in v):
            return {k: _encode(x) for k, x in v.items()}
        return {"$d": [[_encode(k), _encode(x)] for k, x in v.items()]}
    if isinstance(v, (bytes, bytearray)):
        return {"$b": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, np.dtype):
        return {"$dtype": _numeric_dtype(v.str).str}
    if isinstance(v, type) and issubclass(v, np.generic):
        return {"$sctype": _numeric_dtype(np.dtype(v).str).str}
    if isinstance(v, np.ndarray):
        dt = _numeric_dtype(v.dtype.str)
        return {"$nd": [dt.str, list(v.shape), base64.b64encode(np.ascontiguousarray(v).tobytes()).decode("ascii")]}
    if isinstance(v, np.generic):
        dt = _numeric_dtype(v.dtype.str)
        return {"$np": [dt.str, base64.b64encode(v.tobytes()).decode("ascii")]}
    if dataclasses.is_dataclass(v) and type(v).__name__ in _CLASS_TAG:
        fields = {f.name: _encode(getattr(v, f.name)) for f in dataclasses.fields(v)}
        return {"$dc": [_CLASS_TAG[type(v).__name__], fields]}
    raise PlainDataError(f"{type(v).__module__}.{type(v).__qualname__} is not plain data")


@functools.lru_cache(maxsize=None)
def _dataclass(tag: str):
    module, name = CLASSES[tag].split(":")
    cls = getattr(importlib.import_module(module), name)
    return cls, frozenset(f.name for f in dataclasses.fields(cls))


def _b64(s) -> bytes:
    if not isinstance(s, str):
        raise PlainDataError("bytes must be base64 text")
    try:
        return base64.b64decode(s, validate=True)
    except ValueError:
        raise PlainDataError("bad base64 in bytes") from None


def _decode_tagged(obj: dict):
    if len(obj) != 1:
        return obj
    (tag, body), = obj.items()
    if not tag.startswith("$"):
        return obj
    if tag == "$t" and isinstance(body, list):
        return tuple(body)
    if tag == "$d" and isinstance(body, list) and all(isinstance(p, list) and len(p) == 2 for p in body):
        try:
            return {k: x for k, x in body}
        except TypeError:
            raise PlainDataError("unhashable dict key") from None
    if tag == "$b":
        return _b64(body)
    if tag == "$sym":
        if not isinstance(body, str) or len(body) > 512:
            raise PlainDataError("a run-time size must be a short string")
        try:
            return parse_dim(body)
        except SymfuseError as e:
            raise PlainDataError(f"bad run-time size: {e}") from None
    if tag == "$dtype":
        return _numeric_dtype(body)
    if tag == "$sctype":
        return _numeric_dtype(body).type
    if tag == "$nd" and isinstance(body, list) and len(body) == 3:
        dt, shape, data = _numeric_dtype(body[0]), body[1], _b64(body[2])
        if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
            raise PlainDataError(f"bad array shape {shape!r}")
        if int(np.prod(shape, dtype=object)) * dt.itemsize != len(data):
            raise PlainDataError(f"array data of {len(data)} bytes does not fill {dt}{shape}")
        return np.frombuffer(data, dt).reshape(shape).copy()
    if tag == "$np" and isinstance(body, list) and len(body) == 2:
        dt, data = _numeric_dtype(body[0]), _b64(body[1])
        if len(data) != dt.itemsize:
            raise PlainDataError(f"scalar of {len(data)} bytes is not a {dt}")
        return np.frombuffer(data, dt)[0]
    if tag == "$dc" and isinstance(body, list) and len(body) == 2 and body[0] in CLASSES:
        cls, names = _dataclass(body[0])
        fields = body[1]
        if not isinstance(fields, dict) or not names.issuperset(fields):
            raise PlainDataError(f"bad fields for {body[0]}")
        return cls(**fields)
    raise PlainDataError(f"unknown or malformed tag {tag!r}")
