"""The CLI: the compare JSON contract, determinism, sim, errors, subcommand discovery."""

from __future__ import annotations

import json
import textwrap

import pytest

from twill_ros import cli
from twill_ros.comparison import Run, best_caps_run, run_comparison
from twill_ros.core.power import CAP_PROFILES

SHORT = """\
name: short
duration_s: 2
streams:
  - name: camera
    model: yolov8n
    priority: 200
    deadline_ms: 50
    arrival: {type: periodic, period_ms: 50, jitter_ms: 1}
  - name: text
    model: bert-base
    arrival: {type: poisson, rate_hz: 5}
  - name: chat
    model: tinyllama-1.1b
    priority: 40
    prompt_tokens: 32
    max_new_tokens: 8
    arrival: {type: trace, times_s: [0.2, 1.0]}
"""

RESULT_KEYS = ["policy", "budget_w", "jobs", "completed", "failed", "rejected", "cancelled",
               "latency_ms", "slowdown_mean", "deadline_violation_rate", "power_w",
               "budget_violation_fraction", "energy_j_per_job", "llm", "per_stream",
               "static_caps"]


@pytest.fixture
def workload(tmp_path):
    path = tmp_path / "short.yaml"
    path.write_text(SHORT)
    return str(path)


def compare(workload: str, out: str, *extra: str) -> dict:
    code = cli.main(["compare", "--workload", workload, "--platform", "orin_nx_16gb",
                     "--budgets", "10,15", "--policies", "twill,gpu_fifo", "--seed", "3",
                     "--json", out, *extra])
    assert code == 0
    with open(out, encoding="utf-8") as fh:
        return json.load(fh)


def test_compare_writes_the_json_contract(workload, tmp_path, capsys):
    data = compare(workload, str(tmp_path / "out.json"))
    assert list(data) == ["workload", "platform", "seed", "results"]
    assert (data["workload"], data["platform"], data["seed"]) == ("short", "orin_nx_16gb", 3)
    assert [(r["policy"], r["budget_w"]) for r in data["results"]] == [
        ("twill", 10.0), ("gpu_fifo", 10.0), ("twill", 15.0), ("gpu_fifo", 15.0)]
    for r in data["results"]:
        assert list(r) == RESULT_KEYS
        assert set(r["latency_ms"]) == {"mean", "p50", "p95", "p99"}
        assert set(r["power_w"]) == {"mean", "peak"}
        assert set(r["llm"]) == {"ttft_ms_mean", "tps_mean"}
        assert list(r["per_stream"]) == ["camera", "text", "chat"]
        for s in r["per_stream"].values():
            assert set(s) == {"jobs", "latency_ms", "slowdown_mean", "deadline_violation_rate"}
        assert r["jobs"] == r["completed"] + r["failed"] + r["rejected"] + r["cancelled"]
    assert "gpu_fifo" in capsys.readouterr().out      # the table went to stdout


def test_a_policy_without_dvfs_is_reported_on_its_best_static_caps(workload, tmp_path):
    def results(*extra: str) -> list[dict]:
        out = tmp_path / "out.json"
        assert cli.main(["compare", "--workload", workload, "--budgets", "10,15", "--policies",
                         "twill,edf,min_finish", "--seed", "3", "--json", str(out),
                         *extra]) == 0
        return json.loads(out.read_text())["results"]

    best = results()
    each = {p: results("--caps-profile", p) for p in CAP_PROFILES}
    assert [r["static_caps"] for r in best if r["policy"] == "twill"] == [None, None]
    for i in (1, 2, 4, 5):              # edf and min_finish at 10 W, then at 15 W
        # every job completes under every profile here: the lowest mean wins
        assert len({runs[i]["completed"] for runs in each.values()}) == 1
        chosen = min(CAP_PROFILES, key=lambda p: each[p][i]["latency_ms"]["mean"])
        assert best[i] == each[chosen][i]
    # the choice is not the default profile for either policy: without it they would be slower
    assert {best[i]["static_caps"] for i in (1, 2, 4, 5)} == {"gpu", "accelerators"}


def test_best_caps_run_weighs_a_few_unfinished_jobs_against_the_mean():
    def run(profile: str, completed: int, mean: float) -> Run:
        return Run(policy="edf", budget_w=20.0, result=None, summary={
            "static_caps": profile, "jobs": 1000, "completed": completed,
            "latency_ms": {"mean": mean}})

    # 9 of 1000 fewer completed (within 1 %) but half the mean: the faster run
    assert best_caps_run([run("all-used", 1000, 300.0), run("gpu", 991, 150.0)]
                         ).summary["static_caps"] == "gpu"
    # 11 fewer: completing the jobs comes first
    assert best_caps_run([run("all-used", 1000, 300.0), run("gpu", 989, 150.0)]
                         ).summary["static_caps"] == "all-used"
    # a tie keeps the first profile
    assert best_caps_run([run("all-used", 1000, 300.0), run("gpu", 1000, 300.0)]
                         ).summary["static_caps"] == "all-used"


def test_energy_per_job_is_the_twins_exact_energy_even_shorter_than_one_sample(tmp_path):
    """It came from the 10 ms power samples alone: 0 for a run that ends before the first."""
    path = tmp_path / "one.yaml"
    path.write_text("name: one\nduration_s: 0.001\nstreams:\n  - {name: img, model: resnet50, "
                    "arrival: {type: trace, times_s: [0.0]}}\n")
    (run,) = run_comparison(str(path), "orin_nx_16gb", (15.0,), ("twill",), seed=0).runs
    assert run.result.power_trace == [] and run.summary["completed"] == 1
    assert run.summary["energy_j_per_job"] > 0.0
    assert run.summary["energy_j_per_job"] == run.result.energy_j


def test_same_seed_gives_identical_json(workload, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    compare(workload, str(a))
    compare(workload, str(b))
    assert a.read_bytes() == b.read_bytes()


def test_report_writes_markdown_and_plots(workload, tmp_path):
    compare(workload, str(tmp_path / "out.json"), "--report", str(tmp_path / "rep"))
    lines = (tmp_path / "rep" / "REPORT.md").read_text().splitlines()
    assert sum(line.startswith("| twill |") for line in lines) == 2   # one table per budget
    assert len(list((tmp_path / "rep").glob("*.png"))) == 8      # 4 figures x 2 budgets


def test_sim_runs_one_policy(workload, tmp_path):
    out = tmp_path / "sim.json"
    assert cli.main(["sim", "--workload", workload, "--policy", "edf", "--budget", "12",
                     "--seed", "1", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert [(r["policy"], r["budget_w"]) for r in results] == [("edf", 12.0)]


@pytest.mark.parametrize("argv", [
    ["sim", "--policy", "no_such_policy"],
    ["compare", "--budgets", "10,abc"],
    ["compare", "--budgets", "-5"],
    ["sim", "--budget", "0"],
    ["sim", "--budget", "nan"],     # would write a bare NaN into the JSON
    ["sim", "--budget", "inf"],
    ["compare", "--budgets", "10,150"],
])
def test_user_errors_exit_2_with_a_message(workload, argv, capsys):
    assert cli.main([argv[0], "--workload", workload, *argv[1:]]) == 2
    assert "twill: error:" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["compare", "--budgets", "10,,20"], "--budgets '10,,20' has an empty item"),
    (["compare", "--budgets", "10,15,"], "--budgets '10,15,' has an empty item"),
    (["compare", "--budgets", "10,10"], "--budgets '10,10' gives 10 twice"),
    (["compare", "--budgets", "10,10.0"], "--budgets '10,10.0' gives 10.0 twice"),
    (["compare", "--budgets", "10,abc"], "--budgets: 'abc' is not a number in watts (e.g. "
                                         "10,15,20)"),
    (["compare", "--budgets", "10,nan"], "power budget must be 1 to 100 W, got nan"),
    (["compare", "--budgets", "0"], "power budget must be 1 to 100 W, got 0"),
    (["compare", "--budgets", "10,inf"], "power budget must be 1 to 100 W, got inf"),
    (["compare", "--policies", "twill,,edf"], "--policies 'twill,,edf' has an empty item"),
    (["compare", "--policies", "twill, edf,twill"],
     "--policies 'twill, edf,twill' gives twill twice"),
    (["evaluate", "--budgets", "15,15"], "--budgets '15,15' gives 15 twice"),
    (["evaluate", "--policies", "edf,edf"], "--policies 'edf,edf' gives edf twice"),
    (["evaluate", "--workloads", "{workload},{workload}"],
     "--workloads '{workload},{workload}' gives {workload} twice"),
    (["evaluate", "--workloads", "{workload},"], "--workloads '{workload},' has an empty item"),
])
def test_a_list_option_with_an_empty_or_repeated_item_is_refused(workload, tmp_path, argv,
                                                                 message, capsys):
    """An empty item was dropped and a repeated one run twice, without a word."""
    args = [a.format(workload=workload) for a in argv]
    if args[0] == "evaluate":
        args += ["--no-bench", "--out", str(tmp_path / "EVAL.md"),
                 "--eval-dir", str(tmp_path / "eval")]
        if "--workloads" not in args:
            args += ["--workloads", workload]
    else:
        args += ["--workload", workload]
    assert cli.main(args) == 2
    assert capsys.readouterr() == ("", f"twill: error: {message.format(workload=workload)}\n")
    assert not (tmp_path / "EVAL.md").exists()


@pytest.mark.parametrize("argv", [["sim", "--budget", "4.5"], ["compare", "--budgets", "10,4.5"]])
def test_a_budget_below_the_idle_power_is_refused(workload, argv, capsys):
    assert cli.main([argv[0], "--workload", workload, *argv[1:]]) == 2
    assert capsys.readouterr().err == (
        "twill: error: power budget 4.5 W is below orin_nx_16gb's idle power (4.6 W with every "
        "unit idle, platform file): no schedule can keep it\n")


@pytest.mark.parametrize("argv, message", [
    (["profile", "--model", "yolov9"], "model 'yolov9' is not in the catalog"),
    (["profile", "--model", "yolov8s", "--platform", "xavier"], "xavier.yaml' not found"),
    (["profile", "--model", "llama-3.2-1b", "--prompt-tokens", "-5"],
     "--prompt-tokens must be > 0 and finite, got -5"),
    (["profile", "--model", "resnet50", "--freq-mhz", "0"], "--freq-mhz must be > 0"),
    (["profile", "--model", "resnet50", "--freq-mhz", "inf"],      # OverflowError in the snap
     "--freq-mhz must be > 0 and finite, got inf"),
    (["profile", "--model", "resnet50", "--unit", "npu"], "has no unit 'npu'"),
    # ignored without a word, the prediction not for what was asked
    (["profile", "--model", "resnet50", "--prompt-tokens", "64"],
     "only LLMs take --prompt-tokens (resnet50 is a dnn)"),
    (["profile", "--model", "tinyllama-1.1b", "--prompt-tokens", "100000"],
     "exceed the 2048-token context of tinyllama-1.1b"),
])
def test_profile_user_errors_exit_2_with_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("twill: error: ") and message in err and err.count("\n") == 1


def test_profile_predicts_what_the_twin_runs_for_one_job_alone(tmp_path):
    """The same TTFT and latency as the twin (within its 3 % per-job noise), and the module's
    power: its idle floor with the unit's power in place of the unit's static share."""
    assert cli.main(["profile", "--model", "llama-3.2-1b", "--unit", "gpu", "--prompt-tokens",
                     "128", "--max-new-tokens", "64", "--json", str(tmp_path / "p.json")]) == 0
    row = json.loads((tmp_path / "p.json").read_text())["units"][0]
    (tmp_path / "one.yaml").write_text(
        "name: one\nduration_s: 1\nstreams:\n  - {name: llm, model: llama-3.2-1b, "
        "prompt_tokens: 128, max_new_tokens: 64, arrival: {type: trace, times_s: [0.1]}}\n")
    assert cli.main(["sim", "--workload", str(tmp_path / "one.yaml"), "--policy", "gpu_fifo",
                     "--budget", "60", "--json", str(tmp_path / "s.json")]) == 0
    run = json.loads((tmp_path / "s.json").read_text())["results"][0]
    assert run["llm"]["ttft_ms_mean"] == pytest.approx(row["ttft_ms"], rel=0.035)
    assert run["latency_ms"]["mean"] == pytest.approx(row["latency_ms"], rel=0.035)
    assert row["module_power_w"] == pytest.approx(4.6 - 0.4 + row["power_w"])   # orin_nx_16gb


def test_outputs_go_to_new_directories_and_unusable_ones_are_refused_first(workload, tmp_path,
                                                                           capsys):
    nested = tmp_path / "new" / "dir" / "out.json"
    assert cli.main(["sim", "--workload", workload, "--json", str(nested)]) == 0
    assert json.loads(nested.read_text())["results"][0]["policy"] == "twill"
    capsys.readouterr()
    assert cli.main(["sim", "--workload", workload, "--report", str(nested)]) == 2
    assert capsys.readouterr() == ("", f"twill: error: --report {nested} is a file, not a "
                                       "directory\n")          # refused before simulating
    assert cli.main(["sim", "--workload", workload, "--json", str(tmp_path)]) == 2
    assert f"--json {tmp_path} is a directory" in capsys.readouterr().err


def test_invalid_workload_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(SHORT).replace("rate_hz: 5", "rate_hz: -5"))
    assert cli.main(["compare", "--workload", str(path)]) == 2
    assert "bad.yaml: stream 'text': field 'arrival.rate_hz'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, what", [
    (["sim", "--workload", "{dir}"], "file"),
    (["sim", "--workload", "{workload}", "--platform", "{dir}"], "file"),
    (["profile", "--model", "resnet50", "--catalog", "{dir}"], "catalog file"),
    (["analyze", "{dir}"], "model file"),
])
def test_a_directory_given_as_a_file_is_called_a_directory(workload, tmp_path, argv, what,
                                                           capsys):
    """It was reported as "file not found", which sends one looking for a typo."""
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    assert cli.main([a.format(workload=workload, dir=folder) for a in argv]) == 2
    assert capsys.readouterr().err == f"twill: error: {folder} is a directory, not a {what}\n"


def test_missing_subcommand_modules_are_skipped(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ("sim", "not_written_yet"))
    parser = cli.build_parser()
    assert parser.parse_args(["sim", "--workload", "x"]).command == "sim"


def test_broken_subcommand_imports_are_not_hidden(monkeypatch):
    def broken(name):
        raise ModuleNotFoundError("No module named 'numpyy'", name="numpyy")

    monkeypatch.setattr(cli.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="numpyy"):
        cli.build_parser()


def test_evaluate_on_a_subset_says_what_it_covers_and_how_to_reproduce_it(workload, tmp_path):
    out, eval_dir = tmp_path / "EVAL.md", tmp_path / "eval"
    assert cli.main(["evaluate", "--workloads", workload, "--budgets", "15", "--policies",
                     "twill,gpu_fifo", "--no-bench", "--out", str(out),
                     "--eval-dir", str(eval_dir)]) == 0
    text = out.read_text()
    assert "workload short at 15 W under the policies (twill, gpu_fifo)" in text
    # no benchmark figures were written: the commands say --no-bench and name no bench run
    assert f"--out {out} --eval-dir {eval_dir} --no-bench" in text
    assert "python bench/bench_core.py" not in text and "Benchmark not run" in text
    assert json.loads((eval_dir / "short.json").read_text())["workload"] == "short"


@pytest.mark.parametrize("argv", [
    ["sim", "--workload", "{workload}", "--json", "{blocked}/out.json"],
    ["compare", "--workload", "{workload}", "--budgets", "15", "--report", "{blocked}/report"],
    ["profile", "--model", "resnet50", "--json", "{blocked}/profile.json"],
    ["analyze", "{workload}", "--json", "{blocked}/analysis.json"],
    ["evaluate", "--workloads", "{workload}", "--no-bench", "--out", "{blocked}/EVAL.md",
     "--eval-dir", "{tmp}/eval"],
    ["evaluate", "--workloads", "{workload}", "--no-bench", "--out", "{tmp}/EVAL.md",
     "--eval-dir", "{blocked}/eval"],
    ["bag", "--workload", "{workload}", "--out", "{blocked}/bag"],
    ["replay", "{tmp}/bag", "--report", "{blocked}/report"],
    ["demo", "--report", "{blocked}/report"],
])
def test_an_output_path_that_cannot_be_written_is_refused_before_the_work(workload, tmp_path,
                                                                         argv, capsys):
    """A path under a file (or read-only, or missing its mount) ended the run, the demo's
    and the evaluation's too, with a traceback after the work; it is refused first."""
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    args = [a.format(workload=workload, blocked=blocked, tmp=tmp_path) for a in argv]
    assert cli.main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and f"{blocked} is not a directory" in err, err


def test_evaluate_without_a_workload_is_refused(tmp_path, capsys):
    """An empty --workloads ended, after the benchmark, in an IndexError traceback."""
    assert cli.main(["evaluate", "--workloads", ",", "--no-bench", "--out",
                     str(tmp_path / "EVAL.md"), "--eval-dir", str(tmp_path / "eval")]) == 2
    assert capsys.readouterr().err == "twill: error: no workload given (--workloads)\n"
    assert not (tmp_path / "EVAL.md").exists()
