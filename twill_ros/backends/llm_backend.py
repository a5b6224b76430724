"""Causal LMs (transformers) decoded one token per step, freezable between any two tokens.

A job's state is its KV cache (``past_key_values``), the next token (the greedy argmax of the
last logits) and the tokens generated so far. Every step reuses the cache, so a frozen job
resumes -- on the same or another unit of this backend -- with no recomputation, and greedy
decoding yields the same tokens with or without freezes (each step does the same arithmetic).

Steps: the prefill runs the prompt and picks the first token -> ``StepFinished(tokens=0)``;
each decode step emits the pending token -> ``StepFinished(tokens=k)``, then (unless that
token was EOS or the k-th of ``max_new_tokens``) runs it through the model to pick the next.
A resume after a freeze right after the prefill reports ``StepFinished(tokens=0)`` again at
once, as the twin does, so the core sees the prefill done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from twill_ros.backends.base import Output
from twill_ros.backends.torch_backend import TorchUnits
from twill_ros.backends.workers import Run
from twill_ros.core.catalog import ModelProfile
from twill_ros.core.events import StepFinished
from twill_ros.core.profiler import llm_tokens


@dataclass(eq=False)
class _Generation:
    """One job's decoding state (``Run.state``), kept across freezes."""

    cache: Any                      # past_key_values (a transformers Cache), on ``device``
    device: torch.device
    next_id: int                    # greedy pick from the last logits, not yet emitted
    generated: list[int]
    text: str = ""                  # decoded ``generated`` (special tokens skipped)


class LlmBackend(TorchUnits):
    """Runs catalog LLMs that name an ``hf_dir`` artefact (a local transformers directory
    with config, weights and tokenizer; nothing is downloaded).

    The prompt is ``payload.prompt``; without one, a synthetic prompt of the job's
    ``prompt_tokens`` ids. ``partial_text`` streams the text so far; ``take_output`` gives
    the final text.
    """

    kind = "llm"
    artefact_kinds = ("hf_dir",)
    runs_llms = True

    def partial_text(self, job_id: str) -> str:
        with self._lock:
            run = self._runs.get(job_id)
            state = run.state if run is not None else self._kept.get(job_id, (0, None))[1]
            # A byte-level tokenizer may stop mid-character: hold back the incomplete tail
            # so every streamed prefix is a prefix of the final text.
            return state.text.rstrip("\ufffd") if state is not None else ""

    def _load(self, profile: ModelProfile, device: torch.device) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        directory = str(profile.artefact("hf_dir"))
        model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        return model.to(device).eval(), tokenizer

    def _step(self, run: Run) -> bool:
        device = self.device(run.unit)
        model, tokenizer = self._model(run.profile, device)
        gen: _Generation | None = run.state
        unit = run.unit.name
        with self._on_unit(run.unit):
            if gen is None:
                if run.tokens:
                    raise RuntimeError(f"job {run.job_id} resumes at {run.tokens} tokens but "
                                       f"this backend kept no state for it")
                run.state = self._prefill(run, model, tokenizer, device)
                self._emit(run, StepFinished(self._clock(), run.job_id, unit, tokens=0))
                return False
            if run.resumed:
                run.resumed = False
                if gen.device != device:          # a migration: the KV cache moves along
                    _move_cache(gen.cache, device)
                    gen.device = device
                if run.tokens == 0:
                    self._emit(run, StepFinished(self._clock(), run.job_id, unit, tokens=0))
                    return False
            token = gen.next_id
            gen.generated.append(token)
            gen.text = tokenizer.decode(gen.generated, skip_special_tokens=True)
            run.tokens = len(gen.generated)
            self._emit(run, StepFinished(self._clock(), run.job_id, unit, tokens=run.tokens))
            done = (token == tokenizer.eos_token_id
                    or run.tokens >= llm_tokens(run.job, run.profile)[1])
            if done:
                run.output = Output(text=gen.text)
                return True
            out = model(input_ids=torch.tensor([[token]], device=device),
                        past_key_values=gen.cache, use_cache=True)
            gen.cache = out.past_key_values
            gen.next_id = int(out.logits[0, -1].argmax())
            return False

    @staticmethod
    def _prefill(run: Run, model: Any, tokenizer: Any, device: torch.device) -> _Generation:
        if run.payload.prompt:
            ids = tokenizer(run.payload.prompt, return_tensors="pt").input_ids
        else:   # synthetic prompt of the job's length (the twin's workloads send none)
            count = llm_tokens(run.job, run.profile)[0]
            ids = torch.arange(count).remainder(model.config.vocab_size).unsqueeze(0)
        # Admission checked an estimate (characters / 4); the tokenizer's count is exact.
        # Beyond its positions a model fails with an index error or decodes garbage.
        positions = getattr(model.config, "max_position_embeddings", None)
        new_tokens = llm_tokens(run.job, run.profile)[1]
        if positions and ids.shape[1] + new_tokens > positions:
            raise ValueError(f"prompt ({ids.shape[1]} tokens) + max_new_tokens ({new_tokens}) "
                             f"exceed the {positions} positions of {run.profile.id}")
        out = model(input_ids=ids.to(device), use_cache=True)
        return _Generation(out.past_key_values, device, int(out.logits[0, -1].argmax()), [])


def _move_cache(cache: Any, device: torch.device) -> None:
    """Move a transformers DynamicCache's key/value tensors to ``device`` in place."""
    for layer in cache.layers:
        if getattr(layer, "keys", None) is not None:
            layer.keys = layer.keys.to(device)
            layer.values = layer.values.to(device)
            layer.device = device
