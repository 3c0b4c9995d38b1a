"""Reading an ONNX file as untrusted input: the protobuf parsed with a clear error
when it is truncated or malformed, opsets checked against what symfuse converts,
and external-data tensors read only from inside the model's directory."""
from __future__ import annotations

import os

import numpy as np

from .errors import OnnxError, OnnxMissingDependency, OnnxUnsupported

MIN_OPSET = 13
INSTALL = "pip install 'symfuse[onnx]'"


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise OnnxMissingDependency(f"reading and writing ONNX models needs the onnx package: {INSTALL}") from None
    return onnx


def read_model(source) -> tuple[object, str, str | None]:
    """(ModelProto, label for messages, directory of external data) from a path,
    ``bytes`` or an ``onnx.ModelProto``."""
    onnx = require_onnx()
    if isinstance(source, onnx.ModelProto):
        return upgrade(source, "<onnx model>"), "<onnx model>", None
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _parse(bytes(source), "<onnx bytes>"), "<onnx bytes>", None
    if not isinstance(source, (str, os.PathLike)):
        raise OnnxError(f"an ONNX model is a path, bytes or an onnx.ModelProto, got {type(source).__name__}")
    path = os.fspath(source)
    if not os.path.exists(path):
        raise OnnxError(f"{path}: no such file")
    if os.path.isdir(path):
        raise OnnxError(f"{path}: is a directory, not an ONNX file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise OnnxError(f"{path}: cannot read: {e.strerror}") from None
    return _parse(data, path), path, os.path.dirname(os.path.abspath(path))


def _parse(data: bytes, label: str):
    onnx = require_onnx()
    from google.protobuf.message import DecodeError
    if not data:
        raise OnnxError(f"{label}: the file is empty")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise OnnxError(f"{label}: not a valid ONNX model (the protobuf does not parse: {e}); "
                        "the file may be truncated or not an ONNX file") from None
    if not model.HasField("graph"):
        raise OnnxError(f"{label}: not a valid ONNX model (it has no graph); the file may be truncated "
                        "or not an ONNX file")
    return upgrade(model, label)


def upgrade(model, label: str):
    """The model itself when its default-domain opset is one symfuse converts; an
    older one upgraded to opset 13 by onnx's version converter (as onnxruntime
    reads old models); a newer one than the onnx package knows is refused."""
    onnx = require_onnx()
    newest = onnx.defs.onnx_opset_version()
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        if any(n.domain in ("", "ai.onnx") for n in model.graph.node):
            raise OnnxError(f"{label}: the model uses ops of the default ONNX domain but imports no opset of it")
        return model          # only other domains (ai.onnx.ml, training): each op is refused by name
    version = versions[0]
    if version > newest:
        raise OnnxUnsupported(f"{label}: opset {version} is newer than this onnx package knows (opset {newest})",
                              reason=f"opset {version} > {newest}")
    if version >= MIN_OPSET:
        return model
    from onnx import version_converter
    try:
        up = version_converter.convert_version(model, MIN_OPSET)
    except Exception as e:  # noqa: BLE001 -- the converter's own message says which op it could not adapt
        raise OnnxUnsupported(f"{label}: opset {version} is older than symfuse converts (opset {MIN_OPSET} to "
                              f"{newest}) and onnx's version converter could not upgrade it: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}",
                              reason=f"opset {version}: version converter failed") from None
    if _signature(up) != _signature(model):
        raise OnnxUnsupported(f"{label}: opset {version} is older than symfuse converts (opset {MIN_OPSET} to "
                              f"{newest}), and onnx's version converter changes the graph's inputs or outputs "
                              "when it upgrades this model", reason=f"opset {version}: upgrade changes the signature")
    prop = up.metadata_props.add()
    prop.key, prop.value = "symfuse.upgraded_from_opset", str(version)
    return up


def tensor_to_array(t, base_dir: str | None, label: str) -> np.ndarray:
    """A TensorProto as a numpy array; external data is read from inside ``base_dir``."""
    from onnx import numpy_helper
    what = f"{label}: tensor {t.name!r}"
    if t.data_location == t.EXTERNAL:
        return _external(t, base_dir, what)
    try:
        return numpy_helper.to_array(t)
    except Exception as e:  # noqa: BLE001 -- a malformed tensor: say which
        raise OnnxError(f"{what}: cannot be read ({type(e).__name__}: {e})") from None


def _external(t, base_dir: str | None, what: str) -> np.ndarray:
    from onnx import helper, numpy_helper
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    if base_dir is None:
        raise OnnxError(f"{what}: its data is in an external file ({loc!r}), which a model loaded from bytes "
                        "cannot name safely; load the model from its path")
    if not loc or os.path.isabs(loc) or loc.startswith(("/", "\\")) or ":" in loc or "\\" in loc:
        raise OnnxError(f"{what}: external data location {loc!r} must be a relative path inside the model's "
                        f"directory {base_dir}")
    root = os.path.realpath(base_dir)
    path = os.path.realpath(os.path.join(root, loc))
    if os.path.commonpath([root, path]) != root:
        raise OnnxError(f"{what}: external data location {loc!r} leaves the model's directory {base_dir} "
                        "(through '..' or a symbolic link); refused")
    if not os.path.isfile(path):
        raise OnnxError(f"{what}: external data file {loc!r} is missing in {base_dir}")
    dt = helper.tensor_dtype_to_np_dtype(t.data_type)
    count = int(np.prod(list(t.dims), dtype=np.int64))
    need = count * np.dtype(dt).itemsize
    try:
        offset, length = int(info.get("offset", 0)), int(info.get("length", need))
    except ValueError:
        raise OnnxError(f"{what}: external data offset/length are not integers") from None
    size = os.path.getsize(path)
    if offset < 0 or length != need or offset + length > size:
        raise OnnxError(f"{what}: external data {loc!r} holds bytes {offset}..{offset + length} of a "
                        f"{size}-byte file, the tensor needs {need} bytes")
    with open(path, "rb") as f:
        f.seek(offset)
        raw = f.read(length)
    copy = type(t)()
    copy.CopyFrom(t)
    del copy.external_data[:]
    copy.data_location = t.DEFAULT
    copy.raw_data = raw
    return numpy_helper.to_array(copy)


def _signature(model) -> list:
    """Names, element types and shapes of the graph's inputs and outputs."""
    return [(v.name, v.type.SerializeToString()) for v in (*model.graph.input, *model.graph.output)]
