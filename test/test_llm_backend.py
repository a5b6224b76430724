"""LlmBackend: the real tiny causal LM decoded step by step, frozen and resumed mid-generation.

The freeze is requested from the sink at an exact StepFinished (as the node does), so where it
takes effect is deterministic: at the next token boundary.
"""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from backend_fixtures import PLATFORM, Recorder, tiny_catalog  # noqa: E402

from twill_ros.backends import Payload, make_backend  # noqa: E402
from twill_ros.core.events import JobFinished, JobFrozen, StepFinished  # noqa: E402
from twill_ros.core.jobs import Job  # noqa: E402
from twill_ros.core.profiler import Profiler  # noqa: E402

PROMPT = Payload(prompt="Plan the route to the dock")
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return tiny_catalog(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def reference(catalog) -> str:
    """The text transformers' own greedy ``generate`` gives, uninterrupted."""
    directory = str(catalog.get("tiny-llm").artefact("hf_dir"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    ids = tokenizer(PROMPT.prompt, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def _backend(catalog, recorder):
    return make_backend("llm", ("cpu_a", "cpu_b"), PLATFORM, catalog,
                        Profiler(catalog, PLATFORM), recorder, time.monotonic)


def _job(job_id: str) -> Job:
    return Job(job_id, "tiny-llm", 50, 0.0, max_new_tokens=NEW_TOKENS)


def _tokens(recorder, job_id):
    return [e.tokens for e in recorder.of(job_id) if isinstance(e, StepFinished)]


def test_uninterrupted_generation_streams_every_token_and_matches_generate(catalog, reference):
    recorder = Recorder()
    backend = _backend(catalog, recorder)
    try:
        backend.start(_job("g"), "cpu_a", payload=PROMPT)
        assert recorder.finished("g").ok
        assert _tokens(recorder, "g") == list(range(NEW_TOKENS + 1))   # prefill, then each
        assert backend.take_output("g").text == reference
        assert backend.take_output("g").text == ""                      # handed over once
    finally:
        backend.close()


@pytest.mark.parametrize("freeze_at", [0, 3])
def test_frozen_and_resumed_on_the_other_unit_gives_the_same_text(catalog, reference,
                                                                  freeze_at):
    backend = None

    def freeze_once(event):
        if isinstance(event, StepFinished) and event.tokens in (freeze_at, 8) \
                and not any(isinstance(e, JobFrozen) and e.tokens_done == event.tokens
                            for e in recorder.events):
            backend.freeze(event.job_id)

    recorder = Recorder(freeze_once)
    backend = _backend(catalog, recorder)
    try:
        backend.start(_job("f"), "cpu_a", payload=PROMPT)
        frozen = recorder.wait_for(lambda e: isinstance(e, JobFrozen))
        assert (frozen.unit, frozen.tokens_done) == ("cpu_a", freeze_at)
        partial = backend.partial_text("f")
        assert reference.startswith(partial) or freeze_at == 0
        backend.start(_job("f"), "cpu_b", tokens_done=freeze_at)       # a migration
        second = recorder.wait_for(lambda e: isinstance(e, JobFrozen) and e.tokens_done == 8)
        assert second.unit == "cpu_b"
        backend.start(_job("f"), "cpu_a", tokens_done=8)
        assert recorder.finished("f").ok
        assert backend.take_output("f").text == reference
        steps = _tokens(recorder, "f")
        # nothing recomputed: each token once; a resume right after prefill re-reports 0
        assert [t for t in steps if t] == list(range(1, NEW_TOKENS + 1))
        assert steps.count(0) == (2 if freeze_at == 0 else 1)
        assert [type(e) for e in recorder.of("f")][-1] is JobFinished
    finally:
        backend.close()


def test_a_withdrawn_freeze_never_takes_effect(catalog, reference):
    backend = None

    def freeze_then_withdraw(event):
        if isinstance(event, StepFinished) and event.tokens == 2:
            backend.freeze(event.job_id)
            backend.withdraw_freeze(event.job_id)

    recorder = Recorder(freeze_then_withdraw)
    backend = _backend(catalog, recorder)
    try:
        backend.start(_job("w"), "cpu_a", payload=PROMPT)
        assert recorder.finished("w").ok
        assert not any(isinstance(e, JobFrozen) for e in recorder.events)
        assert backend.take_output("w").text == reference
    finally:
        backend.close()


def test_partial_text_grows_with_the_tokens(catalog, reference):
    seen: list[str] = []
    backend = None

    def watch(event):
        if isinstance(event, StepFinished):
            seen.append(backend.partial_text(event.job_id))

    recorder = Recorder(watch)
    backend = _backend(catalog, recorder)
    try:
        backend.start(_job("p"), "cpu_b", payload=PROMPT)
        assert recorder.finished("p").ok
        assert seen[0] == "" and seen[-1] == reference
        assert all(reference.startswith(s.rstrip("\ufffd")) for s in seen)
    finally:
        backend.close()


def test_resume_without_kept_state_fails_clearly_and_cancel_forgets_state(catalog):
    backend = None

    def freeze_at_2(event):
        if isinstance(event, StepFinished) and event.tokens == 2 and event.job_id == "c":
            backend.freeze(event.job_id)

    recorder = Recorder(freeze_at_2)
    backend = _backend(catalog, recorder)
    try:
        backend.start(_job("c"), "cpu_a")                              # synthetic prompt
        recorder.wait_for(lambda e: isinstance(e, JobFrozen))
        assert backend.partial_text("c") != ""
        backend.cancel("c")
        assert backend.partial_text("c") == ""
        backend.start(_job("c"), "cpu_a", tokens_done=2)
        event = recorder.finished("c")
        assert not event.ok and "kept no state" in event.message
        backend.start(_job("next"), "cpu_a", payload=PROMPT)          # the unit goes on
        assert recorder.finished("next").ok
    finally:
        backend.close()


def test_a_prompt_beyond_the_model_positions_fails_with_the_token_counts(catalog):
    recorder = Recorder()
    backend = _backend(catalog, recorder)
    try:
        # admission estimates 4 characters a token; this tokenizer makes more of them
        backend.start(_job("long"), "cpu_a", payload=Payload(prompt="a b c d e f " * 100))
        event = recorder.finished("long")
        assert not event.ok
        assert f"+ max_new_tokens ({NEW_TOKENS}) exceed the 512 positions of tiny-llm" \
            in event.message
        backend.start(_job("next"), "cpu_a", payload=PROMPT)          # the unit goes on
        assert recorder.finished("next").ok
    finally:
        backend.close()


def test_supports_only_llms_with_a_local_directory(catalog):
    backend = _backend(catalog, Recorder())
    try:
        assert backend.supports("tiny-llm")
        assert not backend.supports("llama-3.2-1b") and not backend.supports("tiny-cnn")
    finally:
        backend.close()
