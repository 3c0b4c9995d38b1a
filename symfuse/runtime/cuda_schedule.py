"""Running a GPU launch schedule that holds loops and branches (``ControlStep``):
the part both executors share (the emulator's, ``cuda_program.py``, and PyCUDA's,
``cuda_exec.py``). They supply device memory operations on addresses; this runs
the steps.

A scan's carries live in the two carry buffers of its scratch: each step's body
reads one and writes the other (their roles swap), its sequences' slices and
stacked outputs' slices are addresses offset by the step, and its body's own
intermediates use the body arena after them. A while loop's condition region
writes one byte, which the host reads before each step; a cond's predicate is
read the same way. Body launches are issued from the host once per step.

A collective (``CollectiveStep``) is run by the host between launches: its
operands are read back, the op's reference runs the collective through mpi4py
(the same MPI path as the interpreter), and its results are written to device
memory. NCCL on the device would keep the data there; it needs a GPU to be
built and tested (docs/distributed.md).
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from ..compiler.kernel_info import CollectiveStep, ControlStep, KernelInfo
from ..ir.symdim import SymInt, concrete


class Frame(NamedTuple):
    """Where a schedule's refs point: its parameters, results and arena (addresses)."""
    params: list
    results: list
    arena: int


def launched_kernels(kernels) -> list[KernelInfo]:
    """Every kernel with launches, the bodies of loops (listed as their ``parts``) included."""
    out = []
    for k in kernels:
        if k.parts and not k.launches and k.kind != "multi":
            out += launched_kernels(k.parts)
        else:
            out.append(k)
    return out


GRID_YZ_MAX = 65535


def at_sizes(schedule, env, cap: int) -> list:
    """The schedule of a program with run-time sizes at one call's sizes (``env``):
    refs with their offsets and bytes evaluated, each ``("dim", name)`` ref the
    size's value, and each grid dimension that follows a size evaluated and capped
    (``cap`` blocks on x: every kernel loops grid-stride, so any grid is right)."""
    out = []
    for item in schedule:
        if isinstance(item, ControlStep):
            fields = {f.name: concrete(getattr(item, f.name), env) for f in dataclasses.fields(item)
                      if f.name not in ("op", "bodies")}
            out.append(dataclasses.replace(item, **fields,
                                           bodies=tuple(tuple(at_sizes(b, env, cap)) for b in item.bodies)))
        elif isinstance(item, CollectiveStep):
            out.append(dataclasses.replace(item, ins=tuple(_ref_at(r, env) for r in item.ins),
                                           outs=tuple(_ref_at(r, env) for r in item.outs)))
        else:
            launch, refs = item
            if any(type(g) is SymInt for g in launch.grid):
                launch = dataclasses.replace(launch, grid=tuple(
                    max(1, min(g.evaluate(env), c)) if type(g) is SymInt else g
                    for g, c in zip(launch.grid, (cap, GRID_YZ_MAX, GRID_YZ_MAX))))
            out.append((launch, [_ref_at(r, env) for r in refs]))
    return out


def _ref_at(ref, env):
    kind, x, nbytes, dt = ref
    if kind == "dim":
        return ("scalar", env[x], 0, dt)
    return (kind, concrete(x, env), concrete(nbytes, env), dt)


def has_control(schedule) -> bool:
    return any(isinstance(item, (ControlStep, CollectiveStep)) for item in schedule)


def has_host_decisions(schedule) -> bool:
    """A while loop, cond or collective at any depth: the host reads device memory to go on."""
    for item in schedule:
        if isinstance(item, CollectiveStep):
            return True
        if isinstance(item, ControlStep):
            if item.op != "scan" or any(has_host_decisions(b) for b in item.bodies):
                return True
    return False


class ScheduleRunner:
    """Subclasses give ``copy(dst, src, nbytes)``, ``flag(address) -> bool``,
    ``launch(launch, args)``, ``const_address(k)``, ``flag_address``, and for
    collectives ``read(address, nbytes) -> bytes`` and ``write(address, data)``."""

    flag_address = 0

    def address(self, ref, frame: Frame):
        kind, x, _, dt = ref
        if kind == "param":
            return np.uintp(frame.params[x])
        if kind == "result":
            return np.uintp(frame.results[x])
        if kind == "arena":
            return np.uintp(frame.arena + x)
        if kind == "const":
            return np.uintp(self.const_address(x))
        if kind == "null":
            return np.uintp(0)
        return dt(x)                     # a scalar argument

    def run_schedule(self, schedule, frame: Frame) -> None:
        for item in schedule:
            if isinstance(item, ControlStep):
                getattr(self, "_" + item.op)(item, frame)
            elif isinstance(item, CollectiveStep):
                self._collective(item, frame)
            else:
                launch, refs = item
                self.launch(launch, [self.address(r, frame) for r in refs])

    def _collective(self, st: CollectiveStep, frame: Frame) -> None:
        from ..ir.core import OPS
        opdef = OPS[st.op]
        outs = [int(self.address(r, frame)) for r in st.outs]
        xs = [np.frombuffer(self.read(int(self.address(r, frame)), r[2]), r[3]) for r in st.ins]
        res = opdef.ref(xs, dict(st.attrs))
        for address, r, y in zip(outs, st.outs, res if isinstance(res, tuple) else (res,)):
            data = np.ascontiguousarray(y, r[3]).tobytes()
            if len(data) != r[2]:
                raise RuntimeError(f"{st.op}: {len(data)} bytes for a {r[2]}-byte result")
            self.write(address, data)

    def _carries_in(self, st, ins, cur):
        for k, off in enumerate(st.carry_offsets):
            self.copy(cur + off, ins[k], st.carry_nbytes[k])

    def _carries_out(self, st, outs, cur):
        for k, off in enumerate(st.carry_offsets):
            self.copy(outs[k], cur + off, st.carry_nbytes[k])

    def _scan(self, st: ControlStep, frame: Frame) -> None:
        ins = [int(self.address(r, frame)) for r in st.ins]
        outs = [int(self.address(r, frame)) for r in st.outs]
        nc, nx = len(st.carry_offsets), len(st.seq_step)
        ny = len(st.out_step) - (nc if st.save else 0)
        base = frame.arena + st.scratch
        cur, nxt, arena = base, base + st.carry_bytes, base + st.body_arena
        self._carries_in(st, ins, cur)
        for s in range(st.length):
            t = st.length - 1 - s if st.reverse else s
            if st.save:
                for k, off in enumerate(st.carry_offsets):
                    self.copy(outs[nc + ny + k] + t * st.carry_nbytes[k], cur + off, st.carry_nbytes[k])
            params = ([cur + off for off in st.carry_offsets] + [ins[nc + j] + t * st.seq_step[j] for j in range(nx)]
                      + ins[nc + nx:])
            results = [nxt + off for off in st.carry_offsets] + [outs[nc + j] + t * st.out_step[j]
                                                                  for j in range(ny)]
            self.run_schedule(st.bodies[0], Frame(params, results, arena))
            cur, nxt = nxt, cur
        self._carries_out(st, outs, cur)

    def _while_loop(self, st: ControlStep, frame: Frame) -> None:
        ins = [int(self.address(r, frame)) for r in st.ins]
        outs = [int(self.address(r, frame)) for r in st.outs]
        nc = len(st.carry_offsets)
        base = frame.arena + st.scratch
        cur, nxt, arena = base, base + st.carry_bytes, base + st.body_arena
        self._carries_in(st, ins, cur)
        i = 0
        while not st.max_iterations or i < st.max_iterations:
            carries = [cur + off for off in st.carry_offsets]
            self.run_schedule(st.bodies[0], Frame(carries + ins[nc:], [self.flag_address], arena))
            if not self.flag(self.flag_address):
                break
            self.run_schedule(st.bodies[1], Frame(carries + ins[nc:], [nxt + off for off in st.carry_offsets],
                                                  arena))
            cur, nxt = nxt, cur
            i += 1
        self._carries_out(st, outs, cur)

    def _cond(self, st: ControlStep, frame: Frame) -> None:
        ins = [int(self.address(r, frame)) for r in st.ins]
        outs = [int(self.address(r, frame)) for r in st.outs]
        body = st.bodies[0] if self.flag(ins[0]) else st.bodies[1]
        self.run_schedule(body, Frame(ins[1:], outs, frame.arena + st.scratch + st.body_arena))
