"""``twill analyze MODEL.onnx``: what Twill's model interpreter reads from an ONNX graph.

Prints parameters, layers, op types, FLOPs, static shapes, the DLA-supported share with the
unsupported op types, and the per-unit-kind latency the twin would start from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from twill_ros.commands.compare import path_problem, user_error
from twill_ros.core.catalog import load_catalog
from twill_ros.core.onnx_analysis import OnnxAnalysis, analyze_onnx, profile_from_analysis
from twill_ros.resources import existing_file


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "analyze", help="analyse an ONNX model (FLOPs, ops, DLA share)", description=__doc__
    )
    parser.add_argument("model", type=Path, help="path to MODEL.onnx")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the analysis as JSON")
    parser.add_argument(
        "--catalog",
        type=Path,
        default=None,
        help="catalog whose reference model calibrates the estimates "
        "(default: models/catalog.yaml)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        existing_file(args.model, "model file")
    except FileNotFoundError as exc:
        return user_error(exc)
    problem = args.json and path_problem("--json", args.json)
    if problem:
        return user_error(problem)
    try:
        analysis = analyze_onnx(args.model)
        profile = profile_from_analysis(analysis, load_catalog(args.catalog))
    except (ValueError, OSError) as exc:
        return user_error(exc)
    estimates_ms = {kind: seconds * 1000.0 for kind, seconds in profile.latency_s.items()}
    print(_report(analysis, estimates_ms, profile.memory_mb))
    if args.json:
        args.json.write_text(
            json.dumps(_as_json(analysis, estimates_ms, profile.memory_mb), indent=2) + "\n"
        )
        print(f"wrote {args.json}")
    return 0


# A dynamic dim is shown, and its FLOPs counted, at size 1: say so where it happens.
STATIC_NO = "no (dynamic dims shown and counted as 1: FLOPs and estimates are per unit size)"


def _report(a: OnnxAnalysis, estimates_ms: dict[str, float], memory_mb: float) -> str:
    verdict = "yes" if a.dla_compatible else "no"
    reasons = a.dla_blockers
    ops = ", ".join(
        f"{op} x{n}" for op, n in sorted(a.op_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    inputs = ", ".join(t.description for t in a.inputs)
    lines = [
        f"model        {a.name}  ({a.path})",
        f"kind         {a.kind} (guessed from op types)   precision in file: {a.precision}",
        f"inputs       {inputs}   static shapes: {'yes' if a.static_shapes else STATIC_NO}",
        f"parameters   {a.params:,}",
        f"layers       {a.nodes} compute nodes",
        f"FLOPs        {a.flops:,} = {a.flops / 1e9:.3g} G ({a.macs:,} MAC in Conv/Gemm/MatMul)",
        f"op types     {ops}",
        f"DLA share    {a.dla_fraction:.1%} of nodes, {a.dla_flops_fraction:.1%} of FLOPs",
        f"DLA-unsupported op types: {', '.join(a.unsupported_ops) or 'none'}",
        f"DLA eligible {verdict}" + (f" ({'; '.join(reasons)})" if reasons else ""),
        "estimated latency alone at max clock (scaled by MACs from the catalog reference model):",
        *(f"  {kind:<4} {ms:9.3f} ms" for kind, ms in estimates_ms.items()),
        f"estimated memory {memory_mb:.0f} MB",
    ]
    return "\n".join(lines)


def _as_json(a: OnnxAnalysis, estimates_ms: dict[str, float], memory_mb: float) -> dict:
    return {
        "name": a.name,
        "path": a.path,
        "kind": a.kind,
        "precision": a.precision,
        "params": a.params,
        "nodes": a.nodes,
        "op_counts": dict(a.op_counts),
        "macs": a.macs,
        "flops": a.flops,
        "static_shapes": a.static_shapes,
        "dla_fraction": a.dla_fraction,
        "dla_flops_fraction": a.dla_flops_fraction,
        "dla_compatible": a.dla_compatible,
        "unsupported_ops": list(a.unsupported_ops),
        "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in a.inputs],
        "estimated_latency_ms": estimates_ms,
        "estimated_memory_mb": memory_mb,
    }
