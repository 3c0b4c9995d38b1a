"""The cpu target's loops and branches: a control group (``compiler/loops.py``'s
``LoopPlan``) as a block of the entry point that calls its regions, each compiled
as a ``static`` function of the module (``region.c.j2``), with no Python between
steps.

A scan keeps its carries in two scratch buffers: step t reads one and its body
writes the other, then they swap; a sequence's slice and a stacked output's slice
are pointer offsets, so nothing is copied per step but the saved carries of a
loop whose gradient is taken. A while loop calls its condition region into a
byte before each step; a cond calls one of its two regions on the same arguments.
"""
from __future__ import annotations

from ..compiler.loops import LoopPlan, slice_bytes
from ..install_dirs import C_TEMPLATE_DIR
from .templates_cache import template


def _template(name: str):
    return template(C_TEMPLATE_DIR, name)


# a loop whose steps do less work than this runs on one thread: every parallel region of
# a step would wake the other threads again (GOMP_SPINCOUNT is short, see
# runtime/toolchain.py), which cost a small recurrent step 15x its serial time (the
# seqdigits training step, 2 cores: 11 ms with two threads, 0.7 ms with one)
SERIAL_STEP_WORK = 1 << 22


def _serial(lp: LoopPlan) -> bool:
    return lp.step_work < SERIAL_STEP_WORK


def _void(p: str) -> str:
    return f"(void*)({p})"


def _at(p: str, t: str, nbytes: int) -> str:
    return f"(void*)((char*)({p}) + {t} * {nbytes})"


def _carries(lp: LoopPlan, ins: list[str], outs: list[str]) -> list[dict]:
    return [{"off": off, "init": ins[k], "final": outs[k], "nbytes": lp.op.inputs[k].type.nbytes}
            for k, off in enumerate(lp.carry_offsets)]


def render_scan(lp: LoopPlan, ins, outs, scratch: str, regions: list[str]) -> str:
    op = lp.op
    nc, nx, n = op.attrs["carries"], op.attrs["sequences"], op.attrs["length"]
    ny = len(op.regions[0].results) - nc
    carries = _carries(lp, ins, outs)
    args = ([f"sf_cur + {c['off']}" for c in carries]
            + [_at(ins[nc + j], "sf_t", slice_bytes(op.inputs[nc + j])) for j in range(nx)]
            + [_void(p) for p in ins[nc + nx:]]
            + [f"sf_nxt + {c['off']}" for c in carries]
            + [_at(outs[nc + j], "sf_t", slice_bytes(op.outputs[nc + j])) for j in range(ny)])
    saved = [{"out": outs[nc + ny + k], "off": c["off"], "nbytes": c["nbytes"]}
             for k, c in enumerate(carries)] if op.attrs["save"] else []
    return _template("scan.c.j2").render(
        label=lp.label, scratch=scratch, carry_bytes=lp.carry_bytes, body_arena=lp.body_arena_offset,
        carries=carries, length=n, reverse=op.attrs["reverse"], saved=saved, args=args, body=regions[0],
        serial=_serial(lp))


def render_while(lp: LoopPlan, ins, outs, scratch: str, regions: list[str]) -> str:
    op = lp.op
    nc = op.attrs["carries"]
    carries = _carries(lp, ins, outs)
    cur = [f"sf_cur + {c['off']}" for c in carries]
    consts = [_void(p) for p in ins[nc:]]
    return _template("while.c.j2").render(
        label=lp.label, scratch=scratch, carry_bytes=lp.carry_bytes, body_arena=lp.body_arena_offset,
        carries=carries, max_iterations=op.attrs["max_iterations"], test_args=cur + consts + ["&sf_go"],
        args=cur + consts + [f"sf_nxt + {c['off']}" for c in carries], test=regions[0], body=regions[1],
        serial=_serial(lp))


def render_cond(lp: LoopPlan, ins, outs, scratch: str, regions: list[str]) -> str:
    return _template("cond.c.j2").render(label=lp.label, pred=ins[0], scratch=scratch,
                                         args=[_void(p) for p in ins[1:]] + [_void(p) for p in outs],
                                         then=regions[0], other=regions[1])


# how the cpu target runs each control op (its regions: render_region)
CONTROL = {"scan": render_scan, "while_loop": render_while, "cond": render_cond}


def render_region(name: str, label: str, calls: list[str]) -> str:
    return _template("region.c.j2").render(name=name, label=label, calls=calls)
