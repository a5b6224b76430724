"""Shared by the real-backend tests: the tiny models (built once per session) and a sink."""

from __future__ import annotations

import functools
import importlib.util
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from twill_ros.core.catalog import Catalog, load_catalog
from twill_ros.core.events import Event, JobFinished
from twill_ros.core.platform import load_platform

REPO = Path(__file__).resolve().parents[1]
PLATFORM = load_platform("orin_nx_16gb")
# catalog model -> its artefacts, by file name under the generated directory
TINY = {
    "tiny-cnn": {"torchscript": "tiny_cnn.pt", "onnx": "tiny_cnn.onnx"},
    "tiny-bert": {"torchscript": "tiny_bert.pt"},
    "tiny-llm": {"hf_dir": "tiny_llm"},
}


def load_make_models():
    """scripts/make_models.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_models",
                                                  REPO / "scripts" / "make_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _built(basetemp: Path) -> Path:
    out = basetemp / "tiny_models"
    load_make_models().make_models(out)
    return out


def tiny_catalog(factory: pytest.TempPathFactory) -> tuple[Catalog, Path]:
    """The real catalog with the tiny models' artefacts pointing at a fresh build."""
    out = _built(factory.getbasetemp())   # once per session
    catalog = load_catalog()
    for model_id, files in TINY.items():
        catalog.add(replace(catalog.get(model_id), artefacts=MappingProxyType(
            {kind: str(out / name) for kind, name in files.items()})))
    return catalog, out


class Recorder:
    """The node's sink: keeps events with their arrival time and lets a test wait for one.

    ``on_event`` (called on the backend's thread) lets a test act at an exact step boundary,
    as the node would; ``max_late_s`` also checks that a waited-for event reached the sink
    within that long of its ``t``."""

    def __init__(self, on_event: Callable[[Event], None] | None = None, *,
                 timeout_s: float = 10.0, max_late_s: float | None = None) -> None:
        self.events: list[Event] = []
        self.arrived: list[float] = []
        self.on_event = on_event
        self.timeout_s = timeout_s
        self.max_late_s = max_late_s
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)
        with self._cond:
            self.events.append(event)
            self.arrived.append(time.monotonic())
            self._cond.notify_all()

    def wait_for(self, match: Callable[[Event], bool], timeout: float | None = None) -> Event:
        timeout = self.timeout_s if timeout is None else timeout
        with self._cond:
            assert self._cond.wait_for(lambda: any(match(e) for e in self.events), timeout), \
                f"no matching event within {timeout} s; got {self.events}"
            index = next(i for i, e in enumerate(self.events) if match(e))
            if self.max_late_s is not None:
                assert self.arrived[index] - self.events[index].t < self.max_late_s, \
                    "event delivered late"
            return self.events[index]

    def finished(self, job_id: str) -> JobFinished:
        event = self.wait_for(lambda e: isinstance(e, JobFinished) and e.job_id == job_id)
        assert isinstance(event, JobFinished)
        return event

    def of(self, job_id: str) -> list[Event]:
        with self._cond:
            return [e for e in self.events if getattr(e, "job_id", None) == job_id]
