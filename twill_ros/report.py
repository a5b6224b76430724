"""Human-readable views of a comparison: text/Markdown tables and PNG plots.

The tables read only ``compare`` result objects; the plots also need the simulator traces.
matplotlib is imported lazily (Agg backend) so the CLI and the ROS node do not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twill_ros.comparison import Comparison, Run
from twill_ros.core.jobs import JobStatus
from twill_ros.core.metrics import completed_latency_s, mean, window_means

TWILL = "twill"


def is_ablation(policy: str) -> bool:
    """Ablations are Twill with one mechanism off, named ``twill_<...>``."""
    return policy.startswith(f"{TWILL}_")


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100.0 * value:.1f}%"


# (header, cell) for one compare result object
COLUMNS: tuple[tuple[str, Callable[[dict], str]], ...] = (
    ("policy", lambda r: r["policy"]),
    ("mean ms", lambda r: fmt(r["latency_ms"]["mean"])),
    ("p50 ms", lambda r: fmt(r["latency_ms"]["p50"])),
    ("p95 ms", lambda r: fmt(r["latency_ms"]["p95"])),
    ("p99 ms", lambda r: fmt(r["latency_ms"]["p99"])),
    ("slowdown", lambda r: fmt(r["slowdown_mean"], 2)),
    ("deadline miss", lambda r: _pct(r["deadline_violation_rate"])),
    ("P mean W", lambda r: fmt(r["power_w"]["mean"], 2)),
    ("P peak W", lambda r: fmt(r["power_w"]["peak"], 2)),
    ("over budget", lambda r: _pct(r["budget_violation_fraction"])),
    ("J/job", lambda r: fmt(r["energy_j_per_job"], 3)),
    ("TTFT ms", lambda r: fmt(r["llm"]["ttft_ms_mean"], 0)),
    ("tok/s", lambda r: fmt(r["llm"]["tps_mean"], 1)),
    ("done/jobs", lambda r: f"{r['completed']}/{r['jobs']}"),
    ("rej+fail+canc", lambda r: str(r["rejected"] + r["failed"] + r["cancelled"])),
    ("clocks", lambda r: r["static_caps"] or "DVFS"),
)


def _rows(results: Sequence[dict]) -> list[list[str]]:
    return [[cell(r) for _, cell in COLUMNS] for r in results]


def text_table(results: Sequence[dict]) -> str:
    """Fixed-width table for a terminal: the policy column left-aligned, numbers right."""
    table = [[h for h, _ in COLUMNS], *_rows(results)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = []
    for row in table:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(results: Sequence[dict]) -> str:
    return _markdown([h for h, _ in COLUMNS], _rows(results))


def per_stream_markdown(results: Sequence[dict]) -> str:
    """Streams x policies: mean latency ms (mean slowdown, deadline-miss rate)."""
    streams = list(dict.fromkeys(s for r in results for s in r["per_stream"]))
    rows = []
    for stream in streams:
        row = [stream]
        for r in results:
            s = r["per_stream"].get(stream)
            if s is None or s["latency_ms"]["mean"] is None:
                row.append("none completed" if s and s["jobs"] else "–")
            else:
                row.append(f"{fmt(s['latency_ms']['mean'])} ({fmt(s['slowdown_mean'], 2)}×, "
                           f"{_pct(s['deadline_violation_rate'])})")
        rows.append(row)
    return _markdown(["stream"] + [r["policy"] for r in results], rows)


# ------------------------------------------------------------------------------ plots

@dataclass(frozen=True)
class Figure:
    title: str
    path: str


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(policies: Sequence[str]) -> dict[str, object]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {p: cmap(i % 10) for i, p in enumerate(policies)}


def _grid(plt, n: int, title: str):
    ncols = min(3, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.6 * nrows), sharex=True,
                             sharey=True, squeeze=False)
    fig.suptitle(title)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _latency_cdf(plt, runs: Sequence[Run], colors, title: str):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        lat = sorted(r.latency_s * 1000.0 for r in run.result.records
                     if r.status is JobStatus.COMPLETED and r.finish_s is not None)
        if lat:
            ax.step(lat, [(i + 1) / len(lat) for i in range(len(lat))], where="post",
                    label=run.policy, color=colors[run.policy],
                    ls="--" if is_ablation(run.policy) else "-")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log)")
    ax.set_ylabel("fraction of completed jobs")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _power(plt, runs: Sequence[Run], colors, budget: float, title: str):
    fig, axes = _grid(plt, len(runs), title)
    for ax, run in zip(axes, runs, strict=True):
        means = window_means(run.result.power_trace)
        t, p = [t for t, _ in means], [p for _, p in means]
        ax.plot(t, p, lw=0.7, color=colors[run.policy])
        ax.axhline(budget, color="red", ls="--", lw=1)
        ax.set_title(run.policy, fontsize="small")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("module W (100 ms mean)")
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    return fig


_LINESTYLES = ("-", "--", "-.", ":", (0, (6, 2, 1, 2)))  # equal clocks stay distinguishable


def _frequencies(plt, runs: Sequence[Run], title: str):
    fig, axes = _grid(plt, len(runs), title)
    for ax, run in zip(axes, runs, strict=True):
        series: dict[str, tuple[list[float], list[float]]] = {}
        for t, unit, freq in run.result.freq_trace:
            ts, fs = series.setdefault(unit, ([], []))
            ts.append(t)
            fs.append(freq / 1e6)
        for i, (unit, (ts, fs)) in enumerate(sorted(series.items())):
            ax.step(ts + [run.result.duration_s], fs + fs[-1:], where="post", lw=0.9,
                    ls=_LINESTYLES[i % len(_LINESTYLES)], label=unit)
        ax.set_title(run.policy, fontsize="small")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("MHz")
    axes[0].legend(fontsize="x-small", ncol=2)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def _stream_bars(plt, runs: Sequence[Run], colors, title: str):
    streams = list(dict.fromkeys(s for run in runs for s in run.summary["per_stream"]))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(streams) + 3), 4.5))
    width = 0.8 / max(1, len(runs))
    for i, run in enumerate(runs):
        values = [run.summary["per_stream"].get(s, {}).get("latency_ms", {}).get("mean")
                  for s in streams]
        xs = [j + i * width for j in range(len(streams))]
        ax.bar(xs, [v or 0.0 for v in values], width=width, label=run.policy,
               color=colors[run.policy])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(streams))], streams)
    ax.set_yscale("log")
    ax.set_ylabel("mean latency (ms, log)")
    ax.set_title(title)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize="x-small", ncol=3)
    fig.tight_layout()
    return fig


def write_plots(comparison: Comparison, out_dir: str) -> dict[float, list[Figure]]:
    """Four figures per budget; returns them by budget, paths inside ``out_dir``."""
    plt = _pyplot()
    os.makedirs(out_dir, exist_ok=True)
    colors = _colors(comparison.policies)
    name = comparison.workload.name
    figures: dict[float, list[Figure]] = {}
    for budget in comparison.budgets:
        runs = comparison.runs_at(budget)
        b = f"{budget:g}W"
        made = [
            ("latency CDF", "latency_cdf",
             _latency_cdf(plt, runs, colors, f"{name} @ {b}: latency CDF")),
            ("power vs budget", "power",
             _power(plt, runs, colors, budget, f"{name} @ {b}: module power vs budget")),
            ("unit frequencies", "frequencies",
             _frequencies(plt, runs, f"{name} @ {b}: unit clocks")),
            ("per-stream mean latency", "streams",
             _stream_bars(plt, runs, colors, f"{name} @ {b}: mean latency per stream")),
        ]
        figures[budget] = []
        for title, stem, fig in made:
            path = os.path.join(out_dir, f"{stem}_{b}.png")
            fig.savefig(path, dpi=90)
            plt.close(fig)
            figures[budget].append(Figure(title=title, path=path))
    return figures


def budget_section(comparison: Comparison, budget: float, figures: Sequence[Figure],
                   relative_to: str, heading: str = "##") -> str:
    """Markdown for one budget: the policy table, the per-stream table and the figures
    (linked relative to the directory of the Markdown file)."""
    results = [run.summary for run in comparison.runs_at(budget)]
    parts = [f"{heading} {comparison.workload.name} @ {budget:g} W", "",
             markdown_table(results), "",
             "Per stream: mean latency ms (mean slowdown, deadline-miss rate)", "",
             per_stream_markdown(results), ""]
    parts += [f"![{f.title}]({os.path.relpath(f.path, relative_to)})" for f in figures]
    return "\n".join(parts) + "\n"


@dataclass(frozen=True)
class Paired:
    """Twill and one policy over the jobs both completed, where their completed sets differ:
    the overall means then average different jobs (finishing a long LLM request that
    another policy leaves unfinished raises the mean)."""
    budget_w: float
    policy: str
    jobs: int               # completed by both
    twill_ms: float
    other_ms: float


def paired_means(comparison: Comparison) -> list[Paired]:
    """Per budget, Twill against every policy whose completed jobs differ from Twill's."""
    paired = []
    for budget in comparison.budgets:
        runs = comparison.runs_at(budget)
        ours = next((completed_latency_s(r.result.records) for r in runs
                     if r.policy == TWILL and r.result is not None), None)
        if ours is None:
            continue
        for run in runs:
            if run.policy == TWILL:
                continue
            theirs = completed_latency_s(run.result.records)
            both = sorted(ours.keys() & theirs.keys())
            if theirs.keys() == ours.keys() or not both:
                continue
            paired.append(Paired(budget, run.policy, len(both),
                                 1000.0 * mean(ours[i] for i in both),
                                 1000.0 * mean(theirs[i] for i in both)))
    return paired


def paired_markdown(name: str, paired: Sequence[Paired], heading: str = "##") -> str:
    """The like-for-like table of one workload (``paired_means``)."""
    rows = [f"{heading} {name}: like for like", "",
            ("The policies below completed other jobs than Twill, so their mean latencies in "
             "the tables above average different jobs. Here each is compared with Twill over "
             "the jobs both completed."), "",
            "| budget | policy | jobs both completed | Twill mean (ms) | its mean (ms) | ratio |",
            "|---:|---|---:|---:|---:|---:|"]
    for p in paired:
        rows.append(f"| {p.budget_w:g} W | {p.policy} | {p.jobs} | {fmt(p.twill_ms)} | "
                    f"{fmt(p.other_ms)} | {p.twill_ms / p.other_ms:.2f} |")
    return "\n".join(rows) + "\n"


def write_report(comparison: Comparison, out_dir: str) -> str:
    """``out_dir/REPORT.md`` plus its PNGs; returns the Markdown path."""
    figures = write_plots(comparison, out_dir)
    w = comparison.workload
    setup = (f"Workload `{w.path}` ({w.duration_s:g} s, {len(w.streams)} streams), platform "
             f"`{comparison.platform}`, seed {comparison.seed}.")
    note = ("Latency is over completed jobs; `twill_ros/core/metrics.py` defines every "
            "metric.")
    parts = [f"# Twill-ROS comparison: {w.name}", "", setup, "", note, ""]
    parts += [budget_section(comparison, b, figures[b], out_dir) for b in comparison.budgets]
    paired = paired_means(comparison)
    if paired:
        parts.append(paired_markdown(w.name, paired))
    path = os.path.join(out_dir, "REPORT.md")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(parts))
    return path
