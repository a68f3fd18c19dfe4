"""The ``nacos`` command line.

    nacos ops [OP]                              each operator with its mathematical instruction
    nacos inspect MODEL.onnx [--json]           per-node op, shapes, FLOPs, params; totals
    nacos compile MODEL.onnx -o OUT/ [--json]   compiled artifact (model.so + nacos.json) and summary.json

Exit codes: 0 success, 2 bad input (the one-line reason goes to stderr and nothing is written), 1 internal error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""


def _bad_input_types() -> tuple[type, ...]:
    from ir.frontends import ModelImportError
    from ir.registry import UnsupportedOpError
    from ir.verify import IRError
    from nacos.compiled import InputError

    return (UsageError, ModelImportError, UnsupportedOpError, IRError, InputError, FileNotFoundError)


def _parse_shapes(items: list[str] | None) -> dict | None:
    """``--input-shape x=1,3,224,224`` → {"x": (1, 3, 224, 224)}."""
    if not items:
        return None
    shapes = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            if not sep:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise UsageError(f"--input-shape {item!r}: expected NAME=D1,D2,... e.g. input=1,3,224,224") from None
    return shapes


def _load(args) -> "object":
    import nacos

    path = Path(args.model)
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    return nacos.load(path, input_shapes=_parse_shapes(args.input_shape))


def _console():
    from rich.console import Console

    return Console()


# ---- nacos ops ---------------------------------------------------------------------------------------------
def cmd_ops(args) -> int:
    from ir.registry import all_ops

    ops = all_ops()
    if args.op:
        if args.op not in ops:
            raise UsageError(f"unknown op {args.op!r}; known ops: {', '.join(ops)}")
        ops = {args.op: ops[args.op]}
    out = []
    for name, opdef in ops.items():
        text = ""
        if opdef.example is not None:
            attrs, in_types = opdef.example()
            out_type = opdef.infer(attrs, in_types)
            instr = opdef.instruction(attrs, in_types, out_type)
            sig = ", ".join(f"{n}: {t}" for n, t in zip(instr.inputs, in_types))
            attr_text = ", ".join(f"{k}={v}" for k, v in attrs.items())
            text = f"  example: {name}({sig}){' {' + attr_text + '}' if attr_text else ''} -> {out_type}\n" + \
                "\n".join("    " + line for line in str(instr).splitlines())
        out.append({"op": name, "doc": opdef.doc, "instruction": text})
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for row in out:
        print(f"{row['op']}: {row['doc']}")
        if row["instruction"]:
            print(row["instruction"])
        print()
    return 0


# ---- nacos inspect -----------------------------------------------------------------------------------------
def _fmt(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def cmd_inspect(args) -> int:
    import nacos

    graph = _load(args)
    info = nacos.inspect(graph)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    from rich.table import Table

    table = Table(title=f"{info['name']}  (hash {info['hash']})")
    for col in ("node", "op", "output", "FLOPs", "MACs", "params", "bytes", "FLOP/B"):
        table.add_column(col, justify="right" if col not in ("node", "op") else "left")
    for r in info["nodes"]:
        table.add_row(r["name"], r["op"], "x".join(map(str, r["output"])), _fmt(r["flops"]), _fmt(r["macs"]),
                      _fmt(r["params"]), _fmt(r["bytes_read"] + r["bytes_written"]), f"{r['intensity']:.2f}")
    t = info["totals"]
    table.add_section()
    table.add_row("total", f"{t['nodes']} nodes", "", _fmt(t["flops"]), _fmt(t["macs"]), _fmt(t["params"]),
                  _fmt(t["bytes_read"] + t["bytes_written"]), f"{t['intensity']:.2f}")
    _console().print(table)
    return 0


# ---- nacos compile -----------------------------------------------------------------------------------------
def cmd_compile(args) -> int:
    import nacos

    graph = _load(args)
    out = Path(args.output)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise UsageError(f"{out} exists and is not empty (use --force to overwrite)")
    t0 = time.perf_counter()
    with _console().status(f"compiling {graph.name} ({len(graph.compute_nodes)} nodes)"):
        model = nacos.compile(graph)
    seconds = time.perf_counter() - t0
    # write into a temporary folder first so a failure leaves nothing behind
    tmp = Path(tempfile.mkdtemp(prefix=".nacos-", dir=out.parent if out.parent.exists() else None))
    try:
        model.export(tmp)
        info = nacos.inspect(graph)
        summary = {
            "model": str(args.model), "graph_hash": info["hash"], "target": model.target,
            "compile_seconds": round(seconds, 3), "kernels": len(model.kernels),
            "inputs": info["inputs"], "outputs": info["outputs"], "totals": info["totals"],
            "kernel_groups": [{"name": k.name, "ops": list(k.ops), "nodes": list(k.nodes)} for k in model.kernels],
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"compiled {graph.name}: {len(model.kernels)} kernels in {seconds:.1f}s -> {out}/ "
              f"(model.so, nacos.json, summary.json)")
    return 0


# ---- entry -------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nacos", description="Neural architecture and compiler optimization co-search")
    p.add_argument("--version", action="version", version=f"nacos {__import__('nacos').__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ops", help="list operators with their mathematical instructions")
    s.add_argument("op", nargs="?", help="show only this op")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_ops)

    for name, fn, text in (("inspect", cmd_inspect, "per-node shapes, FLOPs, params and totals of a model"),
                           ("compile", cmd_compile, "compile a model into a deployable artifact")):
        s = sub.add_parser(name, help=text)
        s.add_argument("model", help="an .onnx file")
        s.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,...",
                       help="fix a symbolic input shape (repeatable)")
        s.add_argument("--json", action="store_true", help="print JSON")
        if name == "compile":
            s.add_argument("-o", "--output", required=True, help="artifact folder to write")
            s.add_argument("--force", action="store_true", help="overwrite a non-empty output folder")
        s.set_defaults(fn=fn)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except Exception as e:  # noqa: BLE001
        if isinstance(e, _bad_input_types()):
            print(f"nacos {args.command}: error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise


if __name__ == "__main__":
    sys.exit(main())
