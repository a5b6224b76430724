"""Admission checks on JobRequest messages, with the real message types, without a node."""

from __future__ import annotations

import pytest
from ros_harness import image_tensor
from twill_msgs.msg import JobRequest

from twill_ros.core.catalog import load_catalog
from twill_ros.node.requests import Limits, RequestError, prompt_tokens, to_job

CATALOG = load_catalog()
LIMITS = Limits(max_new_tokens=100, max_payload_bytes=50_000)


def admit(**fields):
    return to_job(JobRequest(**fields), "job-1", 12.5, CATALOG, LIMITS)


def test_valid_dnn_request_becomes_a_core_job():
    job = admit(model="tiny-cnn", priority=JobRequest.HIGH, deadline_ms=40.0,
                client_id="cam", inputs=[image_tensor()])
    assert (job.job_id, job.model, job.priority, job.submit_s) == ("job-1", "tiny-cnn", 150, 12.5)
    assert job.deadline_s == pytest.approx(0.04)
    assert job.stream == "cam" and job.max_new_tokens == 0


def test_valid_llm_request_counts_prompt_tokens():
    job = admit(model="tiny-llm", prompt="x" * 41, max_new_tokens=20)
    assert job.prompt_tokens == prompt_tokens("x" * 41) == 11
    assert job.max_new_tokens == 20 and job.deadline_s is None


@pytest.mark.parametrize("fields, reason", [
    ({"model": ""}, "model is empty"),
    ({"model": "nope"}, "unknown model 'nope'"),
    ({"model": "tiny-cnn", "deadline_ms": -1.0}, "deadline_ms must be a finite"),
    ({"model": "tiny-cnn", "deadline_ms": float("nan")}, "deadline_ms must be a finite"),
    ({"model": "tiny-cnn", "deadline_ms": float("inf")}, "deadline_ms must be a finite"),
    ({"model": "tiny-cnn", "inputs": [image_tensor(), image_tensor()]}, "takes 1 input tensor(s)"),
    ({"model": "tiny-cnn", "inputs": [image_tensor(name="x")]}, "expects input 'input'"),
    ({"model": "tiny-cnn", "inputs": [image_tensor(dtype="float16")]}, "dtype 'float16'"),
    ({"model": "tiny-cnn", "inputs": [image_tensor(shape=(1, 3, 32))]}, "shape [1, 3, 32]"),
    ({"model": "tiny-cnn", "inputs": [image_tensor(nbytes=7)]}, "data has 7 bytes"),
    ({"model": "tiny-llm", "max_new_tokens": 5}, "prompt must not be empty"),
    ({"model": "tiny-llm", "prompt": "hi"}, "max_new_tokens must be > 0"),
    ({"model": "tiny-llm", "prompt": "hi", "max_new_tokens": 101}, "exceeds the limit of 100"),
    ({"model": "tiny-llm", "prompt": "hi", "max_new_tokens": 5, "inputs": [image_tensor()]},
     "send a prompt, not input tensors"),
    ({"model": "tiny-llm", "prompt": "y" * 50_001, "max_new_tokens": 5},
     "exceeds max_payload_bytes=50000"),
    ({"model": "tiny-cnn", "prompt": "a cat"}, "model 'tiny-cnn' is not an LLM (dnn)"),
    # tiny-llm holds 512 tokens: ~500 estimated prompt tokens leave room for 12, not 20
    ({"model": "tiny-llm", "prompt": "z" * 2000, "max_new_tokens": 20},
     "prompt (500 tokens) + max_new_tokens (20) exceed the 512-token context of tiny-llm"),
    ({"model": "tiny-bert", "max_new_tokens": 8}, "model 'tiny-bert' is not an LLM"),
])
def test_bad_requests_are_refused_with_a_specific_reason(fields, reason):
    with pytest.raises(RequestError) as refused:
        admit(**fields)
    assert reason in str(refused.value)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(RequestError, match="resnet50"):
        admit(model="resnet5")
