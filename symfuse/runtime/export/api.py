"""The generated C API of an export: names checked and escaped, the tables of
inputs, outputs and parameters, and how each result of the compiled schedule
reaches the caller or the handle (``templates/c/export_api.*.j2``).

User strings (the function's, inputs', outputs' and shared variables' names)
never reach C as written: the export's name must be a C identifier, and every
other name is emitted as a C string literal whose bytes outside a small safe set
are octal escapes, and in comments only as letters, digits and ``_.:-``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from ...install_dirs import C_TEMPLATE_DIR
from ...ir.symdim import is_symbolic
from .params import DTYPE_CODES

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_SAFE_C = re.compile(rb"[A-Za-z0-9 _.:/-]")
FUNCTIONS = ("create", "destroy", "run", "get_param", "set_param", "load_params", "save_params", "last_error",
             "param_updated") + tuple(f.format(k) for k in ("input", "output", "param") for f in
                                      ("num_{}s", "{}_name", "{}_dtype", "{}_ndim", "{}_shape", "{}_bytes"))


# the API of an export whose function has a run-time size (the batch)
SIZED_FUNCTIONS = ("max_batch", "input_bytes_for", "output_bytes_for")


def export_name(name: str | None, function_name: str) -> str:
    """The C prefix and file stem: ``name``, checked, or the function's name with
    every character a C identifier cannot hold made ``_``."""
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_]", "_", function_name)[:64]
        if not NAME.match(name):
            name = "sf_" + name[:61]
    if not isinstance(name, str) or not NAME.match(name):
        raise InputError(f"export: name {name!r} must be a C identifier: letters, digits and '_', starting with "
                         f"a letter or '_', at most 64 characters")
    if name == "sf":        # sf_<function> would be the generated code's own sf_ names (sf_param_updated)
        raise InputError("export: name 'sf' is reserved for the generated code's own names; choose another")
    return name


def c_string(text: str) -> str:
    """``text`` as a C string literal that holds its UTF-8 bytes exactly."""
    out = []
    for b in text.encode("utf-8"):
        ch = bytes([b])
        out.append(ch.decode() if _SAFE_C.match(ch) else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def comment_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", text)[:80] or "_"


def unique_names(names, fallback: str) -> list[str]:
    """Names for lookup by name: unnamed ones get ``fallback<i>``, a repeated one ``<name>#<i>``."""
    out, seen = [], set()
    for i, n in enumerate(names):
        n = n if isinstance(n, str) and n else f"{fallback}{i}"
        if n in seen:
            n = f"{n}#{i}"
        seen.add(n)
        out.append(n)
    return out


@dataclass
class Tensor:
    name: str
    dtype: str          # numpy name
    shape: tuple        # ints, or run-time sizes (SymInt) of a function compiled with one

    @property
    def bytes(self):
        """Its size in bytes: an int, or with a run-time size an expression (C when printed)."""
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    @property
    def sized(self) -> bool:
        return is_symbolic(self.shape)

    def manifest(self, **extra) -> dict:
        shape = [d if type(d) is int else repr(d) for d in self.shape]
        b = self.bytes
        return {"name": self.name, "dtype": self.dtype, "shape": shape, "bytes": b if type(b) is int else repr(b),
                **extra}


def _tensor_rows(tensors: list[Tensor], dims: list[int], updated=None) -> list[dict]:
    """Rows of a tensor table. A run-time size is -1 in ``shape``; ``bytes`` is then
    the size at 1 row (the table's), ``bytes_c`` the C expression over the size."""
    rows = []
    for i, t in enumerate(tensors):
        shape = [d if type(d) is int else -1 for d in t.shape]
        b = t.bytes
        rows.append({"c_name": c_string(t.name), "comment": comment_safe(t.name), "dtype": t.dtype,
                     "code": DTYPE_CODES[t.dtype], "ndim": len(t.shape), "dims_at": len(dims),
                     "shape": shape, "shape_text": ",".join(map(repr, t.shape)),
                     "bytes": b if type(b) is int else b.evaluate({n: 1 for n in b.names}), "bytes_c": str(b),
                     "sized": type(b) is not int, "updated": int(bool(updated and updated[i]))})
        dims.extend(shape)
    return rows


def sized_context(inputs: list[Tensor], sizes) -> dict | None:
    """How the C API finds a call's run-time size (one name per export): from the
    bytes of the first input whose shape has it as its only run-time dimension."""
    if sizes is None:
        return None
    if len(sizes.names) != 1:
        raise InputError(f"export: the function has the run-time sizes {', '.join(sizes.names)}; an export "
                         "takes one (the batch)")
    name = sizes.names[0]
    for i, t in enumerate(inputs):
        dims = [d for d in t.shape if type(d) is not int]
        if dims and all(repr(d) == name for d in dims) and len(dims) == 1:
            return {"name": name, "max": sizes.maximum, "input": i, "input_name": comment_safe(t.name),
                    "unit": t.bytes.evaluate({name: 1}), "specialize": list(sizes.specialize)}
    raise InputError(f"export: no input has the run-time size {name!r} as its only run-time dimension")


def bindings(run, n_outputs: int, update_vars: list[int], tensors) -> tuple[list, list, list]:
    """(slots, copies, constants) of the run function. A result slot used by one
    result only is written straight into the caller's output or the parameter's
    next buffer; any other result (two results of one slot, a parameter or an
    input returned as is, a constant) is copied there after the schedule ran."""
    outputs, params = tensors
    uses: dict[int, list[int]] = {}
    for r, (kind, x) in enumerate(run.result_plan):
        if kind == "slot":
            uses.setdefault(x, []).append(r)

    def target(r):
        return f"out[{r}]" if r < n_outputs else f"h->next[{update_vars[r - n_outputs]}]"

    slots = []
    for k, (shape, dt) in enumerate(run.slots):
        single = uses.get(k, [])
        direct = len(single) == 1
        bind = (f"(void *){target(single[0])}" if direct else f"h->slot[{k}]")
        nbytes = math.prod(shape) * np.dtype(dt).itemsize
        # a handle's own slot of a run-time size grows with the calls (bytes_c: its C expression)
        slots.append({"bind": bind, "internal": int(not direct), "bytes_c": str(nbytes),
                      "bytes": nbytes if type(nbytes) is int else 0})
    copies, consts = [], []
    for r, (kind, x) in enumerate(run.result_plan):
        t = outputs[r] if r < n_outputs else params[update_vars[r - n_outputs]]
        if kind == "slot":
            if slots[x]["internal"]:
                copies.append({"dst": target(r), "src": f"h->slot[{x}]", "bytes": t.bytes})
        elif kind == "param":
            copies.append({"dst": target(r), "src": f"args[{x}]", "bytes": t.bytes})
        else:
            arr = np.ascontiguousarray(np.asarray(x, dtype=t.dtype).reshape(-1))
            consts.append(_constant(arr, t.dtype))
            copies.append({"dst": target(r), "src": f"sf_const{len(consts) - 1}", "bytes": t.bytes})
    return slots, copies, consts


def _constant(arr: np.ndarray, dtype: str) -> dict:
    """A constant result as bytes (exact for every dtype, float16 included)."""
    raw = arr.astype(np.dtype(dtype)).tobytes()
    return {"ctype": "unsigned char", "size": max(len(raw), 1), "data": ", ".join(map(str, raw)) or "0"}


def crc_table() -> str:
    rows = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if c & 1 else c >> 1
        rows.append(f"0x{c:08x}u")
    return ", ".join(rows)


def context(name: str, version: str, inputs, outputs, params, updated, fp: int, arena_bytes: int,
            sizes=None) -> dict:
    """What every target's header and API source are rendered from: the names and the tensor tables."""
    dims: list[int] = []
    ins, outs = _tensor_rows(inputs, dims), _tensor_rows(outputs, dims)
    pars = _tensor_rows(params, dims, updated)
    return dict(name=name, upper=name.upper(), guard=f"SYMFUSE_EXPORT_{name.upper()}_H", version=version,
                inputs=ins, outputs=outs, params=pars, dims=dims, updated_count=sum(map(bool, updated)),
                fingerprint=f"{fp:016x}", arena_bytes=arena_bytes, crc_table=crc_table(),
                functions=FUNCTIONS + (SIZED_FUNCTIONS if sizes else ()), cuda=None,
                sized=sized_context(inputs, sizes))


def render(name: str, version: str, inputs, outputs, params, updated, run, update_vars, fp: int):
    """(header, API source) of the cpu export."""
    from ...codegen.templates_cache import template
    ctx = context(name, version, inputs, outputs, params, updated, fp, run.arena_bytes, run.sizes)
    arena = run.arena_bytes
    # an arena that follows the run-time size is made at the first run and grows with the runs
    ctx.update(arena_c=str(arena), arena_sized=type(arena) is not int, arena_bytes=arena if type(arena) is int else 0)
    slots, copies, consts = bindings(run, len(outputs), update_vars, (outputs, params))
    ctx.update(slots=slots, copies=copies, consts=consts, nargs=len(inputs) + len(params) + len(slots),
               nparams=len(inputs) + len(params))
    return (template(C_TEMPLATE_DIR, "export_api.h.j2").render(**ctx),
            template(C_TEMPLATE_DIR, "export_api.c.j2").render(**ctx))
