"""The execution-backend interface the scheduler node drives, and the factory that picks one.

The core decides and a backend executes: the node applies ``Dispatch``/``Unfreeze`` as
``start``, ``Freeze`` as ``freeze``, ``WithdrawFreeze`` as ``withdraw_freeze``, ``Cancel`` as
``cancel`` and ``SetFrequency`` as ``set_frequency``; the backend reports what happened as
core events through the node's sink, stamped with the node's clock. Backends own their
threads, so the node never blocks on work.
"""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twill_ros.core.events import Event
from twill_ros.core.jobs import Job

if TYPE_CHECKING:
    from twill_ros.core.catalog import Catalog, ModelProfile
    from twill_ros.core.platform import PlatformSpec, UnitSpec
    from twill_ros.core.profiler import Profiler

EventSink = Callable[[Event], None]
"""Thread-safe callback the node supplies; backends call it from their own threads."""

Clock = Callable[[], float]
"""The node's monotonic time in seconds; every event ``t`` comes from it."""

# kind -> (module, class); imported only when asked for, so heavy runtimes (torch, TensorRT)
# load only on machines that use them.
BACKENDS: dict[str, tuple[str, str]] = {
    "simulated": ("twill_ros.backends.twin", "TwinBackend"),
    "torch": ("twill_ros.backends.torch_backend", "TorchBackend"),
    "llm": ("twill_ros.backends.llm_backend", "LlmBackend"),
    "tensorrt": ("twill_ros.backends.tensorrt_backend", "TensorRtBackend"),
}


@dataclass(frozen=True)
class TensorData:
    """A dense row-major tensor as little-endian bytes (the wire form of twill_msgs/Tensor).

    ``dtype`` is one of float32, float16, int64, int32, int8, uint8, bool.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    data: bytes


@dataclass(frozen=True)
class Payload:
    """What a job computes on: input tensors (DNN, transformer) or a prompt (LLM).

    Empty means synthetic input (zeros of the catalog's input spec; the twin ignores it).
    """

    inputs: tuple[TensorData, ...] = ()
    prompt: str = ""


@dataclass(frozen=True)
class Output:
    """What a finished job produced: output tensors (DNN, transformer) or text (LLM)."""

    tensors: tuple[TensorData, ...] = ()
    text: str = ""


@dataclass(eq=False, kw_only=True)
class Dispatched:
    """One dispatch of a job on a unit, from ``start`` to its JobFinished/JobFrozen/cancel;
    each backend adds its own execution state."""

    job: Job
    unit: UnitSpec
    profile: ModelProfile
    tokens: int = 0           # llm: tokens generated so far (including before a freeze)
    freeze: bool = False      # freeze at the next step boundary
    dead: bool = False        # cancelled or closed: no more events, result discarded

    @property
    def job_id(self) -> str:
        return self.job.job_id


class Backend(ABC):
    """Executes jobs on one or more units; reports progress as core events through the sink."""

    units: tuple[str, ...]

    @abstractmethod
    def start(self, job: Job, unit: str, tokens_done: int = 0,
              payload: Payload | None = None, share: float = 1.0) -> None:
        """Dispatch ``job`` on ``unit``, or resume it (Unfreeze).

        ``tokens_done > 0`` resumes an LLM after the tokens it already generated (its KV cache);
        a different unit than before is a migration. ``payload`` is the job's input (None or
        empty: synthetic input); a resume ignores it, the kept state has what it needs.
        ``share`` is the job's throughput weight beside others on a processor-shared unit
        (``Dispatch.share``, e.g. a CUDA stream priority); a backend may not support it.
        """

    def supports(self, model_id: str) -> bool:
        """Whether this backend can run ``model_id`` (e.g. it has the model's artefact), so the
        node can refuse a job clearly instead of failing it on a unit."""
        return True

    def warm_up(self) -> None:  # noqa: B027 - an optional hook: most backends need none
        """Prepare every model it can run (load weights, build engines) before jobs come."""

    def take_output(self, job_id: str) -> Output:
        """The finished job's output, handed over once (later calls: an empty Output)."""
        return Output()

    def partial_text(self, job_id: str) -> str:
        """An LLM job's text so far (running or frozen), for streaming feedback."""
        return ""

    @abstractmethod
    def freeze(self, job_id: str) -> None:
        """Stop at the next step boundary -> ``JobFrozen(t, job_id, unit, tokens_done)``.

        A job that ends first (or cannot be preempted) answers with ``JobFinished`` instead;
        an unknown id is ignored (the job may just have ended).
        """

    @abstractmethod
    def withdraw_freeze(self, job_id: str) -> None:
        """Forget a ``freeze`` that has not taken effect yet; the job runs on. One that
        already took effect (its ``JobFrozen`` is on its way) is left as it is."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Stop now and drop the job's state; no further events for it once this returns."""

    @abstractmethod
    def set_frequency(self, unit: str, freq_hz: int) -> None:
        """Pin ``unit``'s clock (snapped to its frequency table)."""

    @abstractmethod
    def frequency_hz(self, unit: str) -> int:
        """The clock ``unit`` is set to."""

    @abstractmethod
    def utilization(self, unit: str) -> float:
        """Busy share (0..1) of ``unit`` since the last call for that unit."""

    @abstractmethod
    def power_w(self) -> float | None:
        """Modelled or measured power of its units in W (None if it cannot tell)."""

    @abstractmethod
    def close(self) -> None:
        """Stop threads; jobs still running get no events."""


class UnitBackend(Backend):
    """A backend that runs some of the platform's units and keeps its runs in one table
    under one condition lock (the twin and the real workers share this much)."""

    kind = "unit"     # named in errors

    def __init__(self, units: Iterable[str], platform: PlatformSpec, catalog: Catalog) -> None:
        self.units = tuple(units)
        if not self.units or len(set(self.units)) != len(self.units):
            raise ValueError(f"a {self.kind} backend needs distinct unit names, "
                             f"got {list(self.units)}")
        self._specs = {name: platform.unit(name) for name in self.units}
        self._catalog = catalog
        self._lock = threading.Condition()
        self._runs: dict[str, Dispatched] = {}      # started and not ended, by job id
        self._closed = False

    def _spec(self, unit: str) -> UnitSpec:
        try:
            return self._specs[unit]
        except KeyError:
            raise ValueError(f"unit {unit!r} is not run by this {self.kind} backend; its units: "
                             f"{', '.join(self.units)}") from None

    def _placed(self, job: Job, unit: str) -> tuple[UnitSpec, ModelProfile]:
        """``unit``'s spec and ``job``'s profile; a model that cannot run on the unit's kind
        is refused."""
        spec = self._spec(unit)
        profile = self._catalog.get(job.model)
        if spec.kind not in profile.unit_kinds:
            raise ValueError(f"model {job.model!r} cannot run on {unit} (kind {spec.kind}); it "
                             f"runs on: {', '.join(profile.unit_kinds)}")
        return spec, profile

    def freeze(self, job_id: str) -> None:
        """Takes effect at the run's next step boundary; a DNN job (one step) runs to its end."""
        with self._lock:
            run = self._runs.get(job_id)
            if run is not None and run.profile.is_llm:
                run.freeze = True
                self._lock.notify_all()

    def withdraw_freeze(self, job_id: str) -> None:
        with self._lock:
            run = self._runs.get(job_id)
            if run is not None:
                run.freeze = False


def make_backend(kind: str, units: Iterable[str], platform: PlatformSpec, catalog: Catalog,
                 profiler: Profiler, sink: EventSink, clock: Clock, **options) -> Backend:
    """Build the backend ``kind`` for ``units`` (a ValueError lists the known kinds);
    ``options`` are that kind's own settings (e.g. TensorRT engine parameters)."""
    try:
        module, name = BACKENDS[kind]
    except KeyError:
        raise ValueError(f"unknown backend kind {kind!r}; known kinds: "
                         f"{', '.join(sorted(BACKENDS))}") from None
    cls = getattr(importlib.import_module(module), name)
    return cls(units, platform, catalog, profiler, sink, clock, **options)
