"""Features of the machine code a candidate compiled to (x86-64): what LLVM made of the schedule.

The knob features (:mod:`schedules.features`) describe the loop nest TVM hands to LLVM. What runs is what LLVM
makes of it: which loop it vectorizes, how far it unrolls, whether the accumulators stay in registers. On 448
sampled schedules of each of three suite kernels, one number read off the disassembly — the estimated cycles of the
hottest innermost loop times its trip count — ranked the measured latencies at Kendall τ 0.60–0.67 by itself, and
the knob features' model reached 0.44–0.64 (docs/performance.md, "Compiled-code features").

A build already produces the shared library, so the builder disassembles it (``objdump -d``, ~30 ms) and keeps a
few counts per candidate (:func:`code_counts`); the database stores them next to the measurement. Counts rather
than derived features are stored so that :func:`compiled_features` can change without rebuilding anything.

Only x86-64 code is read (AT&T syntax from GNU objdump); for any other target, or without ``objdump``, the counts are
None and models fall back to the knob features.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess

import numpy as np

COUNTS_VERSION = 1
_LINE = re.compile(r"^\s*([0-9a-f]+):\t(\S+)\s*(.*)$")
_TARGET = re.compile(r"([0-9a-f]+) <")
_KINDS = ("instr", "fma", "fma_lanes", "loads", "stores", "bcast", "spill", "scalar", "shuffle")
COMPILED_NAMES = (
    "asm_loops", "asm_log_instr", "asm_log_fma_lanes", "asm_spill",
    "hot_instr", "hot_fma", "hot_fma_lanes", "hot_loads", "hot_stores", "hot_bcast", "hot_spill", "hot_scalar",
    "hot_shuffle", "hot_depth", "hot_fma_density", "hot_loads_per_fma", "hot_stores_per_fma", "hot_lanes_per_fma",
    "hot_log_iters", "hot_log_instr_exec", "hot_log_cycles",
)


def disassemble(path: str) -> str | None:
    """``objdump -d`` of a shared library; None when objdump is missing or fails."""
    exe = shutil.which("objdump")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-d", "--no-show-raw-insn", path], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _functions(text: str) -> list[list[tuple[int, str, str]]]:
    """The instructions of each TVM compute function (``<name_compute_>``) in a disassembly."""
    funcs, current = [], None
    for line in text.splitlines():
        if line.endswith(">:"):
            current = [] if line.rstrip(":").rstrip(">").endswith("_compute_") else None
            if current is not None:
                funcs.append(current)
            continue
        if current is not None:
            m = _LINE.match(line)
            if m:
                current.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return funcs


def _lanes(mnemonic: str, operands: str) -> int:
    if "zmm" in operands:
        return 16
    if "ymm" in operands:
        return 8
    return 4 if "xmm" in operands and mnemonic.endswith("ps") else 1


def _count(body) -> dict[str, int]:
    c = dict.fromkeys(_KINDS, 0)
    c["instr"] = len(body)
    for _, mn, ops in body:
        ops = ops.split("#")[0]
        memory = "(" in ops
        if mn.startswith(("vfmadd", "vfnmadd", "vfmsub", "vfnmsub")):
            lanes = _lanes(mn, ops)
            c["fma"] += 1
            c["fma_lanes"] += lanes
            c["scalar"] += lanes == 1
        if memory and "%rsp" in ops:
            c["spill"] += 1
        if mn.startswith("vbroadcast"):
            c["bcast"] += 1
        if mn.startswith(("vperm", "vshuf", "vinsert", "vextract", "vunpck", "vblend")):
            c["shuffle"] += 1
        if memory and not mn.startswith(("lea", "nop", "j", "call", "prefetch")):
            # AT&T syntax: the destination is the last operand, so a move into memory is a store
            if mn.startswith(("mov", "vmov")) and "(" in ops.rsplit(",", 1)[-1]:
                c["stores"] += 1
            else:
                c["loads"] += 1
    return c


def code_counts(text: str) -> dict | None:
    """Counts over the compute functions of an x86-64 disassembly, and over their hottest innermost loop (the one
    with the most FMA lanes, then the most instructions). Loops are found from backward jumps. None when the text
    holds no compute function or no x86 code."""
    funcs = [f for f in _functions(text) if f]
    if not funcs or not any(mn.startswith(("mov", "vmov", "lea", "push")) for f in funcs for _, mn, _ in f):
        return None
    total = dict.fromkeys(_KINDS, 0)
    loops, hot, hot_depth = 0, None, 0
    for ins in funcs:
        index = {a: k for k, (a, _, _) in enumerate(ins)}
        spans = []
        for k, (a, mn, ops) in enumerate(ins):
            m = _TARGET.match(ops) if mn.startswith("j") else None
            if m and int(m.group(1), 16) <= a and int(m.group(1), 16) in index:
                spans.append((index[int(m.group(1), 16)], k))
        for key, v in _count(ins).items():
            total[key] += v
        loops += len(spans)
        for s, e in spans:
            if any(s <= s2 and e2 <= e and (s2, e2) != (s, e) for s2, e2 in spans):
                continue  # not innermost
            c = _count(ins[s:e + 1])
            if hot is None or (c["fma_lanes"], c["instr"]) > (hot["fma_lanes"], hot["instr"]):
                hot, hot_depth = c, sum(1 for s2, e2 in spans if s2 <= s and e <= e2)
    out = {"v": COUNTS_VERSION, "loops": loops, **{f"all_{k}": v for k, v in total.items()}}
    if hot is not None:
        out.update({f"hot_{k}": v for k, v in hot.items()}, hot_depth=hot_depth)
    return out


def counts_of_library(path: str) -> str | None:
    """:func:`code_counts` of a built library as JSON text (what the database stores), or None."""
    text = disassemble(path)
    counts = code_counts(text) if text else None
    return json.dumps(counts, sort_keys=True, separators=(",", ":")) if counts else None


def compiled_features(counts: "str | dict | None", flops: float) -> np.ndarray:
    """The ``COMPILED_NAMES`` vector of one candidate; all NaN (missing, to XGBoost) without counts.

    The hottest loop is assumed to do all the FLOPs: its trip count is FLOPs / (2 × its FMA lanes), and a cycle
    estimate per trip is the largest of its instructions / 4 (issue width), FMAs / 2 (two FMA pipes), loads / 2 and
    stores / 1."""
    if isinstance(counts, str):
        counts = json.loads(counts)
    if not counts or counts.get("v") != COUNTS_VERSION:
        return np.full(len(COMPILED_NAMES), np.nan, dtype=np.float32)
    f = dict.fromkeys(COMPILED_NAMES, np.nan)
    f.update(asm_loops=counts["loops"], asm_log_instr=math.log2(1 + counts["all_instr"]),
             asm_log_fma_lanes=math.log2(1 + counts["all_fma_lanes"]), asm_spill=counts["all_spill"])
    if "hot_instr" in counts:
        h = {k: counts[f"hot_{k}"] for k in (*_KINDS, "depth")}
        fma = max(h["fma"], 1)
        iters = max(flops, 1.0) / 2.0 / max(h["fma_lanes"], 1)
        per_trip = max(h["instr"] / 4.0, h["fma"] / 2.0, h["loads"] / 2.0, float(h["stores"]), 1.0)
        f.update({f"hot_{k}": float(v) for k, v in h.items()},
                 hot_fma_density=h["fma"] / max(h["instr"], 1), hot_loads_per_fma=h["loads"] / fma,
                 hot_stores_per_fma=h["stores"] / fma, hot_lanes_per_fma=h["fma_lanes"] / fma,
                 hot_log_iters=math.log2(iters), hot_log_instr_exec=math.log2(iters * max(h["instr"], 1)),
                 hot_log_cycles=math.log2(iters * per_trip))
    return np.array([f[n] for n in COMPILED_NAMES], dtype=np.float32)


def fill_counts(path: str, batch: int = 16, progress: bool = True) -> tuple[int, int]:
    """Build again every successful measurement of the database at ``path`` whose machine-code counts it does not
    hold (measured before they were kept), and store the counts. Returns (filled, lacking). Measurements of another
    machine (a target that cannot run here) are left alone: their code is a cross build's."""
    from rich.console import Console
    from rich.progress import Progress

    from schedules.database import Database
    from schedules.measure import LocalBuilder, MeasureInput, discard
    from schedules.tvm_env import not_runnable_here

    db = Database(path)
    try:
        todo = [MeasureInput(w, r.point) for w in db.workloads() if not not_runnable_here(json.loads(w.target))
                for r in db.records(w, ok_only=True) if r.compiled is None]
        if not todo:
            return 0, 0
        filled = 0
        with LocalBuilder() as builder, Progress(console=Console(stderr=True), disable=not progress) as bar:
            builder.start()
            task = bar.add_task(f"building {len(todo)} measurements of {path} for their code", total=len(todo))
            for k in range(0, len(todo), batch):
                builds = builder.build(todo[k:k + batch])
                for b in builds:
                    if b.compiled:
                        db.add_compiled(b.input.workload, b.input.point, b.compiled)
                        filled += 1
                discard(builds)
                bar.update(task, advance=len(builds))
        return filled, len(todo)
    finally:
        db.close()
