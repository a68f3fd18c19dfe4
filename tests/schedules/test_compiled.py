"""Machine-code counts of built candidates: parsed from the disassembly, kept by builds, measurements and the
database, and read by the ``xgb-compiled`` cost model."""

from __future__ import annotations

import json
import math
import random
import shutil
import sqlite3

import numpy as np
import pytest
from scipy.stats import kendalltau

from schedules.compiled import COMPILED_NAMES, code_counts, compiled_features, fill_counts
from schedules.cost_model import create, holdout_pairs_quality
from schedules.database import Database
from schedules.measure import LocalBuilder, MeasureInput, MeasureResult, measure
from schedules.runner import LocalRunner
from schedules.space import space_for
from schedules.workload import workload_from_op

needs_objdump = pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) is not installed")
CONV = workload_from_op("conv", [(1, 4, 8, 8), (8, 4, 3, 3), (8,)], {"pads": (1, 1, 1, 1)}, ("relu",))


def _asm(lines: list[str], name: str = "main_compute_", start: int = 0x1000) -> str:
    body = "\n".join(f"    {start + 4 * k:x}:\t{line}" for k, line in enumerate(lines))
    return f"\nDisassembly of section .text:\n\n{start:016x} <{name}>:\n{body}\n\n{start + 0x1000:016x} <_fini>:\n"


# an outer loop (0x1004 .. 0x1028) around an inner one (0x100c .. 0x1020): the inner one is the hot loop
LOOPS = _asm([
    "push   %rbp",                                    # 1000
    "xor    %eax,%eax",                               # 1004  outer loop head
    "vxorps %ymm0,%ymm0,%ymm0",                       # 1008
    "vbroadcastss (%rsi,%rax,4),%ymm1",               # 100c  inner loop head: 1 load
    "vfmadd231ps (%rdx),%ymm1,%ymm0",                 # 1010  FMA with a memory operand: a load
    "vfmadd231ps %ymm2,%ymm1,%ymm3",                  # 1014
    "vmovups %ymm0,0x20(%rsp)",                       # 1018  a spill (store)
    "add    $0x1,%rax",                               # 101c
    "jne    100c <main_compute_+0xc>",                # 1020  back to the inner head
    "vmovups %ymm0,(%rdi)",                           # 1024
    "jb     1004 <main_compute_+0x4>",                # 1028  back to the outer head
    "vfmadd231ss %xmm1,%xmm2,%xmm3",                  # 102c  scalar FMA outside any loop
    "ret",                                            # 1030
])


def test_counts_find_the_hottest_innermost_loop():
    c = code_counts(LOOPS)
    assert c["loops"] == 2 and c["hot_depth"] == 2
    assert c["hot_instr"] == 6 and c["hot_fma"] == 2 and c["hot_fma_lanes"] == 16
    assert c["hot_loads"] == 2 and c["hot_stores"] == 1 and c["hot_spill"] == 1 and c["hot_bcast"] == 1
    assert c["all_fma"] == 3 and c["all_fma_lanes"] == 17 and c["all_scalar"] == 1 and c["all_stores"] == 2
    # other functions of the library (TVM's wrappers, libc stubs) are not counted
    assert code_counts(LOOPS + _asm(["vfmadd231ps %ymm2,%ymm1,%ymm3"] * 5, "__tvm_ffi_main", 0x3000)) == c


def test_counts_need_a_compute_function_of_x86_code():
    assert code_counts(_asm(["push   %rbp", "ret"], "__tvm_ffi_main")) is None
    aarch64 = _asm(["stp\tx29, x30, [sp, #-16]!", "fmla\tv0.4s, v1.4s, v2.4s", "b.ne\t1004 <main_compute_+0x4>"])
    assert code_counts(aarch64) is None


def test_features_estimate_the_hot_loops_cycles():
    c = code_counts(LOOPS)
    f = dict(zip(COMPILED_NAMES, compiled_features(json.dumps(c), flops=2.0 * 16 * 1000)))
    assert f["hot_log_iters"] == pytest.approx(math.log2(1000))  # FLOPs / (2 × 16 FMA lanes a trip)
    # a trip: max(6 instructions / 4, 2 FMAs / 2, 2 loads / 2, 1 store) = 1.5 cycles
    assert f["hot_log_cycles"] == pytest.approx(math.log2(1000 * 1.5))
    assert f["hot_lanes_per_fma"] == 8 and f["asm_loops"] == 2
    assert np.isnan(compiled_features(None, 1e6)).all()
    assert np.isnan(compiled_features(json.dumps({**c, "v": -1}), 1e6)).all()  # counts of another parser version


@needs_objdump
def test_builds_measurements_and_the_database_keep_the_counts(tmp_path):
    space = space_for(CONV)
    points = [space.default(), space.sample(random.Random(1))]
    builder, runner = LocalBuilder(workers=1), LocalRunner(repeat=2, min_repeat_ms=1)
    seen = []
    try:
        results = measure(builder, runner, [MeasureInput(CONV, p) for p in points], seen.append)
    finally:
        builder.close()
        runner.close()
    assert all(r.ok and r.compiled for r in results) and [r.compiled for r in seen] == [r.compiled for r in results]
    counts = json.loads(results[0].compiled)
    assert counts["all_fma"] > 0 and counts["hot_fma_lanes"] > 0
    with Database(tmp_path / "t.db") as db:
        db.add_workload(CONV)
        for r in results:
            db.add(r)
        assert [r.compiled for r in db.records(CONV)] == [r.compiled for r in results]
    with Database(tmp_path / "t.db", readonly=True) as db:
        assert db.records(CONV)[0].compiled == results[0].compiled


def test_a_database_from_before_the_counts_reads_without_them(tmp_path):
    path = str(tmp_path / "old.db")
    with Database(path) as db:
        db.add_workload(CONV)
        db.add(MeasureResult(CONV.key, space_for(CONV).default(), 1e-3, (1e-3,)))
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE compiled")
    conn.commit()
    conn.close()
    with Database(path, readonly=True) as db:
        assert [r.compiled for r in db.records(CONV)] == [None]
    with Database(path) as db:  # opened for writing, the table is created
        assert [r.compiled for r in db.records(CONV)] == [None]


@needs_objdump
def test_fill_counts_builds_the_measurements_that_lack_them(tmp_path):
    path = str(tmp_path / "f.db")
    space = space_for(CONV)
    with Database(path) as db:
        db.add_workload(CONV)
        db.add(MeasureResult(CONV.key, space.default(), 1e-3, (1e-3,)))
        db.add(MeasureResult(CONV.key, space.sample(random.Random(2)), None, (), "build: failed"))
    assert fill_counts(path, progress=False) == (1, 1)  # the failure has no code to read
    with Database(path) as db:
        ok, failed = db.records(CONV)
    assert ok.compiled and json.loads(ok.compiled)["hot_fma"] > 0 and failed.compiled is None
    assert fill_counts(path, progress=False) == (0, 0)


# ---- the model -------------------------------------------------------------------------------------------------
def _dataset(n: int, seed: int):
    """Candidates whose latency is set by their "machine code" (random counts), which the knobs do not tell."""
    rng = np.random.default_rng(seed)
    space, pyrng = space_for(CONV), random.Random(seed)
    pairs = []
    for _ in range(n):
        p = space.sample(pyrng)
        fma, instr = int(rng.integers(1, 17)), int(rng.integers(20, 60))
        counts = json.dumps({**code_counts(LOOPS), "hot_fma": fma, "hot_fma_lanes": 8 * fma, "hot_instr": instr})
        lat = instr / fma * 1e-6 * math.exp(rng.normal(0, 0.05))
        pairs.append((MeasureInput(CONV, p), MeasureResult(CONV.key, p, lat, (lat,), compiled=counts)))
    return pairs


def test_the_compiled_model_reads_the_code_and_falls_back_to_the_knobs():
    pairs = _dataset(160, 0)
    compiled = holdout_pairs_quality(pairs, "xgb-compiled", holdout=0.25, seed=0)
    knobs = holdout_pairs_quality(pairs, "xgb", holdout=0.25, seed=0)
    assert compiled["kendall_tau_mean"] > 0.7 and knobs["kendall_tau_mean"] < 0.3
    model = create("xgb-compiled", seed=0)
    model.update([i for i, _ in pairs], [r for _, r in pairs])  # the counts ride on the results
    unbuilt = [i for i, _ in _dataset(20, 1)]
    assert np.allclose(model.predict(unbuilt), model.knobs.predict(unbuilt))
    test = _dataset(40, 2)
    built = [MeasureInput(i.workload, i.point, r.compiled) for i, r in test]
    assert kendalltau(model.predict(built), [-r.latency for _, r in test]).statistic > 0.7
    mixed = model.predict(built[:20] + unbuilt)
    assert np.allclose(mixed[:20], model.predict(built[:20])) and np.allclose(mixed[20:], model.knobs.predict(unbuilt))


def test_the_compiled_model_saves_and_loads_both_boosters(tmp_path):
    pairs = _dataset(60, 3)
    model = create("xgb-compiled", seed=0)
    model.update([i for i, _ in pairs], [r for _, r in pairs])
    model.save(str(tmp_path / "m.json"))
    again = create("xgb-compiled", seed=0)
    again.load(str(tmp_path / "m.json"))
    built = [MeasureInput(i.workload, i.point, r.compiled) for i, r in pairs[:10]]
    assert np.allclose(again.predict(built), model.predict(built))
    assert np.allclose(again.predict([i for i, _ in pairs[:10]]), model.predict([i for i, _ in pairs[:10]]))


@needs_objdump
def test_quality_bench_builds_what_lacks_counts_then_scores_the_code_model(tmp_path, capsys):
    from bench.cost_model_quality import main

    path = str(tmp_path / "q.db")
    points = list(dict.fromkeys(space_for(CONV).sample(random.Random(s)) for s in range(12)))
    with Database(path) as db:  # measured before counts were kept
        db.add_workload(CONV)
        for k, p in enumerate(points):
            db.add(MeasureResult(CONV.key, p, 1e-3 * (1 + k), (1e-3 * (1 + k),)))
    out = tmp_path / "q.json"
    assert main([path, "--model", "xgb-compiled", "--seeds", "1", "--no-cross", "--json", str(out)]) == 0
    assert f"built {len(points)} measurements again" in capsys.readouterr().out
    with Database(path) as db:
        assert all(r.compiled for r in db.records(CONV))
    report = json.loads(out.read_text())
    assert report["model_args"]["kind"] == "xgb-compiled" and report["all"]["test"] >= 2
