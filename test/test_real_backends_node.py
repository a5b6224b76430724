"""Real models through the ROS node: torch and llm backends on the host's CPU units.

The scheduler runs as its own process with ``platform: host``, ``control: host`` and
``backend: torch,llm``, on the tiny models scripts/make_models.py builds. A second catalog
entry points at a TorchScript model that raises, to check failures stay contained.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ros_harness import REPO, ClientNode, SchedulerProcess, test_domain_id
from twill_msgs.msg import JobRequest, JobResult, Tensor

from twill_ros.client import make_request

LLM_TOKENS = 300
PROMPT = "Plan a route from the dock to the lab."
TIMEOUT_S = 60.0


class Broken(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() >= 0):
            raise RuntimeError("sensor calibration table missing")
        return x


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory) -> Path:
    """The shipped catalog plus 'broken-cnn', whose TorchScript raises on every input."""
    tmp = tmp_path_factory.mktemp("catalog")
    torch.jit.script(Broken()).save(str(tmp / "broken.pt"))
    catalog = yaml.safe_load((REPO / "models" / "catalog.yaml").read_text())
    tiny = next(m for m in catalog["models"] if m["id"] == "tiny-cnn")
    broken = dict(tiny, id="broken-cnn", artefacts={"torchscript": str(tmp / "broken.pt")},
                  sources=["test: a model that raises"])
    catalog["models"].append(broken)
    path = tmp / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    return path


@pytest.fixture(scope="module")
def ros(catalog_path):
    domain = test_domain_id() + 5
    scheduler = SchedulerProcess(domain, {
        "platform": "host", "control": "host", "backend": "torch,llm",
        "catalog_path": str(catalog_path), "max_new_tokens": 512,
        # both clusters busy fit (host.yaml: 5 W + 2 x 12.5 W): jobs freeze for priority here,
        # not for power (this machine has no cpufreq: only freezing could keep 15 W)
        "power_budget_w": 40.0})
    client = ClientNode(domain, name="real_backend_client")
    try:
        assert client.client.wait_for_scheduler(30.0), scheduler.tail()
        yield client
    finally:
        client.close()
        assert scheduler.stop() == 0, scheduler.tail()


@pytest.fixture(scope="module")
def reference_text() -> str:
    """What transformers' own greedy generate() writes for the prompt, uninterrupted."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = REPO / "models" / "tiny" / "tiny_llm"
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=LLM_TOKENS, do_sample=False)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_cnn_job_returns_the_tensor_the_model_computes(ros):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 3, 32, 32)).astype("<f4")
    request = make_request("tiny-cnn", inputs=[Tensor(name="input", shape=[1, 3, 32, 32],
                                                      dtype="float32", data=x.tobytes())])
    job_id = ros.client.submit(request, via="service")
    result = ros.client.wait_result(job_id, TIMEOUT_S)
    assert result.status == JobResult.COMPLETED, result.message
    assert result.unit in ("cpu_a", "cpu_b")
    (out,) = result.outputs
    got = np.frombuffer(bytes(out.data), dtype=np.dtype(out.dtype).newbyteorder("<"))
    model = torch.jit.load(str(REPO / "models" / "tiny" / "tiny_cnn.pt"))
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert tuple(out.shape) == expected.shape
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-5, atol=1e-6)


def test_llm_streams_tokens_and_text_matches_greedy_generate(ros, reference_text):
    feedback = []
    run = ros.client.run(make_request("tiny-llm", prompt=PROMPT, max_new_tokens=LLM_TOKENS),
                         feedback=feedback.append)
    result = run.result(TIMEOUT_S)
    assert result.status == JobResult.COMPLETED, result.message
    assert result.text == reference_text
    assert result.ttft_ms > 0 and result.decode_ms > 0
    partial = [f.partial_text for f in feedback if f.partial_text]
    assert partial, "no partial text streamed"
    assert all(reference_text.startswith(p) for p in partial)


def test_burst_freezes_an_llm_which_resumes_to_the_same_text(ros, reference_text):
    runs = [ros.client.run(make_request("tiny-llm", prompt=PROMPT, max_new_tokens=LLM_TOKENS,
                                        priority=JobRequest.LOW)) for _ in range(2)]
    assert ros.wait_until(lambda: ros.states and ros.states[-1][1].running >= 2, 10.0)
    burst = [ros.client.submit(make_request("tiny-cnn", priority=JobRequest.CRITICAL))
             for _ in range(20)]
    assert all(ros.client.wait_result(j, TIMEOUT_S).status == JobResult.COMPLETED
               for j in burst)
    results = [run.result(TIMEOUT_S) for run in runs]
    assert all(r.status == JobResult.COMPLETED for r in results)
    assert any(r.freezes >= 1 and r.frozen_ms > 0 for r in results), \
        [(r.freezes, r.unit) for r in results]
    assert all(r.text == reference_text for r in results)


def test_model_exception_fails_the_job_and_the_unit_stays_usable(ros):
    job_id = ros.client.submit(make_request("broken-cnn"), via="service")
    failed = ros.client.wait_result(job_id, TIMEOUT_S)
    assert failed.status == JobResult.FAILED
    assert "sensor calibration table missing" in failed.message
    after = ros.client.submit(make_request("tiny-cnn", job_id="after-failure"), via="service")
    result = ros.client.wait_result(after, TIMEOUT_S)
    assert result.status == JobResult.COMPLETED and len(result.outputs) == 1


def test_models_without_a_real_backend_are_refused_clearly(ros):
    job_id = ros.client.submit(make_request("resnet50"))
    result = ros.client.wait_result(job_id, TIMEOUT_S)
    assert result.status == JobResult.REJECTED
    assert "no unit's execution backend can run model 'resnet50'" in result.message


def test_platform_status_says_where_power_comes_from(ros):
    assert ros.wait_until(lambda: len(ros.diagnostics) >= 2, 5.0)
    platform = ros.newest_status("twill/platform")
    values = {kv.key: kv.value for kv in platform.values}
    assert values["power_source"] in ("rapl", "platform power model")
    assert shutil.which("twill_scheduler")


def test_tensorrt_unit_without_tensorrt_fails_at_start_with_a_clear_error():
    code, log = SchedulerProcess(test_domain_id() + 6, {"backends.dla0": "tensorrt"}).exited()
    assert code != 0
    assert "asks for the tensorrt backend but TensorRT is not installed" in log, log[-2000:]


def test_jetson_control_without_jetson_runs_read_only_and_says_why():
    domain = test_domain_id() + 7
    scheduler = SchedulerProcess(domain, {"control": "jetson"})
    client = ClientNode(domain, name="jetson_control_client")
    try:
        assert client.client.wait_for_scheduler(30.0), scheduler.tail()
        job_id = client.client.submit(make_request("resnet50"), via="service")
        assert client.client.wait_result(job_id, TIMEOUT_S).status == JobResult.COMPLETED
        assert client.wait_until(lambda: len(client.diagnostics) >= 2, 5.0)
        platform = client.newest_status("twill/platform")
        assert platform.level in (b"\x01", b"\x02")
        assert "INA3221" in platform.message or "ina3221" in platform.message
        power = client.newest_status("twill/power")
        assert {kv.key: kv.value for kv in power.values}["power_w"]  # the model stands in
    finally:
        client.close()
        assert scheduler.stop() == 0
