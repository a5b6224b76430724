"""``twill profile``: the twin's prediction for ONE job running alone, per eligible unit.

What a user asks before deploying a model: latency (LLMs: time to first token for the prompt
and decode tokens/s), power and energy of the unit and of the whole module (its idle floor
plus the unit's work), at max clock or a given one,
under the conditions the catalog states (precision, input). ``--model`` may also be an
``.onnx`` file, estimated from its graph like an unknown model at run time.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from twill_ros.commands.compare import path_problem, user_error
from twill_ros.core.catalog import Catalog, ModelProfile, load_catalog
from twill_ros.core.onnx_analysis import analyze_onnx, profile_from_analysis
from twill_ros.core.platform import MHZ, load_platform
from twill_ros.core.profiler import Profiler


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "profile", help="predict one job alone on each eligible unit", description=__doc__
    )
    parser.add_argument("--platform", default="orin_nx_16gb", help="platform name or YAML path")
    parser.add_argument("--model", required=True, help="catalog model id, or a path to MODEL.onnx")
    parser.add_argument("--unit", help="only this unit (default: every eligible unit)")
    parser.add_argument(
        "--freq-mhz",
        type=float,
        help="clock in MHz, snapped down to each unit's table (below it: its lowest clock; "
             "default: max)",
    )
    parser.add_argument("--prompt-tokens", type=int, help="LLM prompt length (default: catalog's)")
    parser.add_argument(
        "--max-new-tokens", type=int, help="LLM tokens to generate (default: catalog's)"
    )
    parser.add_argument(
        "--catalog", type=Path, default=None, help="catalog file (default: models/catalog.yaml)"
    )
    parser.add_argument(
        "--json", type=Path, metavar="OUT", help="also write the prediction as JSON"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for flag, value in (("--freq-mhz", args.freq_mhz), ("--prompt-tokens", args.prompt_tokens),
                        ("--max-new-tokens", args.max_new_tokens)):
        if value is not None and not 0 < value < math.inf:
            return user_error(f"{flag} must be > 0 and finite, got {value:g}")
    problem = args.json and path_problem("--json", args.json)
    if problem:
        return user_error(problem)
    try:
        platform = load_platform(args.platform)
        catalog = load_catalog(args.catalog)
        model_id = _register(args.model, catalog)
    except (ValueError, KeyError, OSError) as exc:
        return user_error(exc)
    profile = catalog.get(model_id)
    if profile.is_llm:
        overflow = profile.context_overflow(*_llm_tokens(profile, args.prompt_tokens,
                                                         args.max_new_tokens))
        if overflow:
            return user_error(overflow)
    else:
        given = [f for f, v in (("--prompt-tokens", args.prompt_tokens),
                                ("--max-new-tokens", args.max_new_tokens)) if v is not None]
        if given:       # the node and workload files refuse them too
            return user_error(f"only LLMs take {' and '.join(given)} ({model_id} is a "
                              f"{profile.kind})")
    profiler = Profiler(catalog, platform)
    units = profiler.eligible_units(model_id)
    if args.unit:
        if args.unit not in platform.unit_names:
            return user_error(f"platform {platform.name} has no unit {args.unit!r}")
        if args.unit not in units:
            return user_error(f"{model_id} cannot run on {args.unit} "
                              f"(eligible: {', '.join(units)})")
        units = (args.unit,)
    result = predict(
        profiler, model_id, units, args.freq_mhz, args.prompt_tokens, args.max_new_tokens
    )
    print(_report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def predict(
    profiler: Profiler,
    model_id: str,
    units: tuple[str, ...],
    freq_mhz: float | None,
    prompt_tokens: int | None,
    max_new_tokens: int | None,
) -> dict:
    """The JSON-ready prediction for ``model_id`` on each of ``units``."""
    profile = profiler.catalog.get(model_id)
    platform = profiler.platform
    rows = []
    for name in units:
        unit = platform.unit(name)
        freq = unit.max_frequency_hz if freq_mhz is None else unit.snap(round(freq_mhz * MHZ))
        power = profiler.power_w(model_id, name, freq)
        row = {"unit": name, "kind": unit.kind, "freq_mhz": freq / MHZ, "power_w": power}
        if profile.is_llm:
            prompt, new = _llm_tokens(profile, prompt_tokens, max_new_tokens)
            prefill = profiler.estimate_s(model_id, name, freq, prompt, "prefill")
            step = profiler.estimate_s(model_id, name, freq, 1, "decode")
            total = profiler.llm_s(model_id, name, freq, prompt, new)
            row |= {
                "prompt_tokens": prompt,
                "max_new_tokens": new,
                "ttft_ms": prefill * 1e3,       # the prefill gives the first token
                "decode_tokens_per_s": 1.0 / step,
                "latency_ms": total * 1e3,
            }
        else:
            total = profiler.estimate_s(model_id, name, freq)
            row["latency_ms"] = total * 1e3
        row["energy_j"] = power * total
        # the module meanwhile: its idle floor with this unit's power in place of its static
        row["module_power_w"] = platform.floor_power_w - unit.power.static_w + power
        row["module_energy_j"] = row["module_power_w"] * total
        rows.append(row)
    best = min(rows, key=lambda r: (r["latency_ms"], r["energy_j"]))
    return {
        "platform": platform.name,
        "model": model_id,
        "kind": profile.kind,
        "precision": profile.precision,
        "input": profile.input,
        "conditions": "one job alone; catalog figures at max clock on "
        f"{profiler.catalog.reference_platform or platform.name}, scaled to the given clock",
        "dla_compatible": profile.dla_compatible,
        "memory_mb": profile.memory_mb,
        "sources": list(profile.sources),
        "best_unit": best["unit"],
        "units": rows,
    }


def _llm_tokens(profile: ModelProfile, prompt_tokens: int | None,
                max_new_tokens: int | None) -> tuple[int, int]:
    """The prompt and new tokens asked for, else the catalog's defaults."""
    return (prompt_tokens if prompt_tokens is not None else profile.default_prompt_tokens,
            max_new_tokens if max_new_tokens is not None else profile.default_max_new_tokens)


def _register(model: str, catalog: Catalog) -> str:
    """Catalog id for ``model``; an ``.onnx`` path is analysed and added first."""
    if model.endswith(".onnx"):
        profile = profile_from_analysis(analyze_onnx(model), catalog)
        if profile.id in catalog:       # its figures are sourced: not replaced by an estimate
            raise ValueError(f"{model}: model id {profile.id!r} is already in the catalog; "
                             f"rename the file to profile it as an unknown model")
        catalog.add(profile)
        return profile.id
    catalog.get(model)  # KeyError naming the known ids
    return model


def _report(result: dict) -> str:
    lines = [
        f"{result['model']} ({result['kind']}) on {result['platform']}",
        f"  conditions: {result['precision']}; {result['input']}; {result['conditions']}",
    ]
    for row in result["units"]:
        head = f"  {row['unit']:<6} @ {row['freq_mhz']:7.1f} MHz"
        if "ttft_ms" in row:
            body = (
                f"TTFT {row['ttft_ms']:9.1f} ms ({row['prompt_tokens']} prompt tokens)  "
                f"decode {row['decode_tokens_per_s']:6.1f} tok/s  "
                f"total {row['latency_ms']:9.1f} ms ({row['max_new_tokens']} new)"
            )
        else:
            body = f"latency {row['latency_ms']:9.3f} ms"
        lines.append(
            f"{head}  {body}  unit {row['power_w']:5.2f} W {row['energy_j']:.4f} J  "
            f"module {row['module_power_w']:5.2f} W {row['module_energy_j']:.4f} J"
        )
    lines.append(f"  best unit: {result['best_unit']}")
    return "\n".join(lines)
