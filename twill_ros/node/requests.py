"""Admission checks for JobRequest messages, before anything reaches the scheduler core.

Everything a client can get wrong is caught here with a message that names the field, so
the node can answer REJECTED (topic, action) or refuse the call (service) and keep running.
Works on any object with JobRequest's fields; rclpy is not needed to use or test it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twill_ros.core.catalog import Catalog, ModelProfile
from twill_ros.core.jobs import Job

# Prompt tokens are estimated as characters / 4, the usual rule of thumb for BPE tokenizers
# on English text; the twin needs a count, the real LLM backend tokenizes for itself.
CHARS_PER_TOKEN = 4


class RequestError(ValueError):
    """A request the scheduler cannot accept; the message says which field and why."""


@dataclass(frozen=True)
class Limits:
    max_new_tokens: int
    max_payload_bytes: int


def payload_bytes(request) -> int:
    return sum(len(t.data) for t in request.inputs) + len(request.prompt.encode("utf-8"))


def prompt_tokens(prompt: str) -> int:
    return max(1, math.ceil(len(prompt) / CHARS_PER_TOKEN))


def to_job(request, job_id: str, submit_s: float, catalog: Catalog, limits: Limits) -> Job:
    """The core Job for a valid request; RequestError with a specific reason otherwise."""
    if not request.model:
        raise RequestError("model is empty; name a catalog model id")
    if request.model not in catalog:
        raise RequestError(
            f"unknown model '{request.model}'; known models: {', '.join(sorted(catalog.ids))}")
    model = catalog.get(request.model)
    deadline_ms = float(request.deadline_ms)
    if not math.isfinite(deadline_ms) or deadline_ms < 0:
        raise RequestError(
            f"deadline_ms must be a finite number >= 0 (0 = no deadline), got {deadline_ms}")
    size = payload_bytes(request)
    if size > limits.max_payload_bytes:
        raise RequestError(
            f"payload of {size} bytes exceeds max_payload_bytes={limits.max_payload_bytes}")
    if model.is_llm:
        _check_llm(request, model, limits)
    elif request.prompt or request.max_new_tokens:
        # silently ignored, they would hide a client sending its text to the wrong model
        raise RequestError(f"model '{model.id}' is not an LLM ({model.kind}): prompt and "
                           "max_new_tokens are for LLM jobs; send input tensors or none")
    else:
        _check_inputs(request.inputs, model)
    return job_of(request, model, job_id, submit_s, stream=request.client_id)


def job_of(request, model: ModelProfile | None, job_id: str, submit_s: float,
           stream: str) -> Job:
    """The core Job a request stands for, without checks (``to_job`` checks first): deadline_ms
    > 0 is a deadline, prompt and max_new_tokens count only for an LLM. ``model`` is None
    for a model the catalog does not know (an observer's view of a rejected request)."""
    deadline_ms = float(request.deadline_ms)
    llm = model is not None and model.is_llm
    return Job(
        job_id=job_id,
        model=request.model,
        priority=int(request.priority),
        submit_s=submit_s,
        deadline_s=deadline_ms / 1000.0 if deadline_ms > 0 else None,
        stream=stream,
        prompt_tokens=prompt_tokens(request.prompt) if llm else 0,
        max_new_tokens=int(request.max_new_tokens) if llm else 0,
    )


def _check_llm(request, model: ModelProfile, limits: Limits) -> None:
    if not request.prompt:
        raise RequestError(f"model '{model.id}' is an LLM: prompt must not be empty")
    if request.max_new_tokens == 0:
        raise RequestError(f"model '{model.id}' is an LLM: max_new_tokens must be > 0")
    if request.max_new_tokens > limits.max_new_tokens:
        raise RequestError(
            f"max_new_tokens={request.max_new_tokens} exceeds the limit of "
            f"{limits.max_new_tokens} (parameter max_new_tokens)")
    if request.inputs:
        raise RequestError(f"model '{model.id}' is an LLM: send a prompt, not input tensors")
    overflow = model.context_overflow(prompt_tokens(request.prompt), request.max_new_tokens)
    if overflow:
        raise RequestError(f"{overflow} (prompt tokens estimated as {CHARS_PER_TOKEN} "
                           "characters each)")


def _check_inputs(tensors, model: ModelProfile) -> None:
    """Empty inputs mean synthetic input (the twin); given inputs must match the spec."""
    if not tensors:
        return
    try:
        model.check_inputs(tensors)
    except ValueError as error:
        raise RequestError(str(error)) from None
