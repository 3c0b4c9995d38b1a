"""The ``<name>.params`` file of an exported function: its shared variables'
values in one binary file that C reads without Python (never pickle).

Layout (little-endian, docs/export.md):

    offset  size  field
    0       8     magic  b"SFPARAM\\0"
    8       4     u32 format version (1)
    12      4     u32 count of variables
    16      8     u64 layout fingerprint (FNV-1a 64 of ``layout_text``)
    24      8     u64 data offset (from the start of the file, a multiple of 64)
    32      8     u64 data bytes
    40      4     u32 CRC-32 (zlib's) of the data bytes
    44      4     u32 reserved, 0
    48      ...   per variable: u32 name length, the name (UTF-8, no NUL),
                  u8 dtype code, u8 ndim, u16 reserved 0, u64 dims[ndim],
                  u64 offset (from the data offset, a multiple of 64), u64 bytes
    data offset   the values, C order, each at its offset

The fingerprint covers the names, dtypes and shapes in order: a file fits every
export with the same parameter layout (the same model rebuilt with other flags),
and a file of another model is refused before its data is read.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

MAGIC = b"SFPARAM\0"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sIIQQQII")
ALIGN = 64

# dtype codes shared by the params file, the manifest and the C header (SF_DTYPE_*)
DTYPE_CODES = {"float16": 1, "float32": 2, "float64": 3, "int8": 4, "int16": 5, "int32": 6, "int64": 7,
               "uint8": 8, "uint32": 9, "uint64": 10, "bool": 11}


class ParamsError(ValueError):
    """A params file that cannot be read: not one, damaged, or of another model."""


def layout_text(entries) -> str:
    """The text the fingerprint hashes: ``name:dtype:d0xd1...`` per variable, one a line."""
    return "".join(f"{name}:{dtype}:{'x'.join(map(str, shape))}\n" for name, dtype, shape in entries)


def fingerprint(entries) -> int:
    """FNV-1a 64 of ``layout_text(entries)`` (entries: (name, dtype name, shape))."""
    h = 0xcbf29ce484222325
    for b in layout_text(entries).encode("utf-8"):
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def _pad(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def write_params(path: str, named_arrays) -> int:
    """Write ``[(name, array)]`` to ``path``; returns the layout fingerprint."""
    entries = [(name, str(np.dtype(a.dtype)), tuple(a.shape)) for name, a in named_arrays]
    table, offset = b"", 0
    offsets = []
    for (name, dtype, shape), (_, a) in zip(entries, named_arrays):
        raw = name.encode("utf-8")
        table += struct.pack("<I", len(raw)) + raw + struct.pack("<BBH", DTYPE_CODES[dtype], len(shape), 0)
        table += struct.pack(f"<{len(shape)}Q", *shape) + struct.pack("<QQ", offset, a.nbytes)
        offsets.append(offset)
        offset = _pad(offset + a.nbytes)
    data = bytearray(offset)
    for off, (_, a) in zip(offsets, named_arrays):
        data[off:off + a.nbytes] = np.ascontiguousarray(a).tobytes()
    data_offset = _pad(HEADER.size + len(table))
    fp = fingerprint(entries)
    head = HEADER.pack(MAGIC, FORMAT_VERSION, len(entries), fp, data_offset, len(data), zlib.crc32(data), 0)
    with open(path, "wb") as fh:
        fh.write(head + table + bytes(data_offset - HEADER.size - len(table)) + data)
    return fp


def read_params(path: str) -> dict[str, np.ndarray]:
    """The variables of a params file by name (what C's ``<name>_save_params`` writes too)."""
    with open(path, "rb") as fh:
        blob = fh.read()
    if len(blob) < HEADER.size:
        raise ParamsError(f"{path}: truncated ({len(blob)} bytes, the header alone is {HEADER.size})")
    magic, version, count, fp, data_offset, data_bytes, crc, _ = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise ParamsError(f"{path}: not a symfuse params file (magic {magic!r})")
    if version != FORMAT_VERSION:
        raise ParamsError(f"{path}: format version {version}, this reader knows {FORMAT_VERSION}")
    if len(blob) < data_offset + data_bytes:
        raise ParamsError(f"{path}: truncated ({len(blob)} bytes, {data_offset + data_bytes} expected)")
    data = blob[data_offset:data_offset + data_bytes]
    if zlib.crc32(data) != crc:
        raise ParamsError(f"{path}: checksum mismatch: the data is damaged")
    names = {v: k for k, v in DTYPE_CODES.items()}
    out, pos = {}, HEADER.size
    try:
        for _ in range(count):
            (n,) = struct.unpack_from("<I", blob, pos)
            name = blob[pos + 4:pos + 4 + n].decode("utf-8")
            pos += 4 + n
            code, ndim, _ = struct.unpack_from("<BBH", blob, pos)
            shape = struct.unpack_from(f"<{ndim}Q", blob, pos + 4)
            off, nbytes = struct.unpack_from("<QQ", blob, pos + 4 + 8 * ndim)
            pos += 4 + 8 * ndim + 16
            arr = np.frombuffer(data, np.dtype(names[code]), count=int(np.prod(shape, dtype=np.int64)), offset=off)
            if arr.nbytes != nbytes:
                raise ParamsError(f"{path}: variable {name!r} holds {nbytes} bytes, its shape says {arr.nbytes}")
            out[name] = arr.reshape(shape).copy()
    except (struct.error, KeyError, UnicodeDecodeError, ValueError) as e:
        raise ParamsError(f"{path}: damaged variable table ({e})") from None
    if fingerprint([(k, str(v.dtype), v.shape) for k, v in out.items()]) != fp:
        raise ParamsError(f"{path}: the variable table does not match the header's fingerprint")
    return out
