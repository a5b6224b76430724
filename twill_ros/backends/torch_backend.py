"""PyTorch execution: TorchScript DNNs/encoders on CPU clusters or CUDA, one worker per unit.

``TorchUnits`` is the torch side every torch-based backend shares (this one and the LLM
backend): the unit's device, a CUDA stream of its own per GPU unit, the CPU thread count and a
model cache shared by the units of one device.

CPU threads: ``torch.set_num_threads`` is process-global (ATen keeps one count), so it cannot
differ per cluster. We set it once to the largest CPU unit of the process; each unit's work
still stays on its own cores because the intra-op OpenMP team is per calling thread and its
threads inherit the pinned worker's affinity mask. A smaller cluster then runs more threads
than cores (oversubscribed, correct, somewhat slower) -- the price of one process.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from twill_ros.backends.base import Clock, EventSink, Output
from twill_ros.backends.tensors import input_arrays, tensor_data
from twill_ros.backends.workers import Run, UnitWorkers, unit_cpus

if TYPE_CHECKING:
    from twill_ros.core.catalog import Catalog, ModelProfile
    from twill_ros.core.platform import PlatformSpec, UnitSpec
    from twill_ros.core.profiler import Profiler


def intra_op_threads(cpu_sets: list[frozenset[int]]) -> int:
    """Threads per torch op: a unit's CPU count when units have CPUs of their own (Orin: 4);
    when they share CPUs (a small machine), the CPUs split evenly, so two units running at
    once do not oversubscribe the cores (OpenMP threads spin: oversubscription is slow)."""
    every = frozenset().union(*cpu_sets)
    if sum(len(cpus) for cpus in cpu_sets) > len(every):
        return max(1, len(every) // len(cpu_sets))
    return max(len(cpus) for cpus in cpu_sets)


class TorchUnits(UnitWorkers):
    """UnitWorkers on torch devices: ``cpu`` units on the CPU, the others on CUDA (a DLA
    unit's work is submitted from CUDA streams too). ``unit_kinds``: the kinds it drives."""

    kind = "torch"
    unit_kinds: tuple[str, ...] = ("cpu", "gpu")

    def __init__(self, units: Iterable[str], platform: PlatformSpec, catalog: Catalog,
                 profiler: Profiler, sink: EventSink, clock: Clock) -> None:
        units = tuple(units)
        specs = [platform.unit(name) for name in units]
        for spec in specs:
            if spec.kind not in self.unit_kinds:
                raise ValueError(f"unit {spec.name} (kind {spec.kind}): the {self.kind} backend "
                                 f"drives only {', '.join(self.unit_kinds)} units")
            if spec.kind != "cpu" and not torch.cuda.is_available():
                raise RuntimeError(f"unit {spec.name} asks for the {self.kind} backend on CUDA "
                                   f"but torch has no CUDA device here (torch "
                                   f"{torch.__version__})")
        cpu_sets = [unit_cpus(s) for s in specs if s.kind == "cpu"]
        if cpu_sets:
            torch.set_num_threads(intra_op_threads(cpu_sets))
        self._models: dict[tuple[str, str], Any] = {}
        self._models_lock = threading.Lock()
        self._streams: dict[str, torch.cuda.Stream] = {}
        super().__init__(units, platform, catalog, profiler, sink, clock)

    @staticmethod
    def device(unit: UnitSpec) -> torch.device:
        return torch.device("cpu" if unit.kind == "cpu" else "cuda")

    def _setup_thread(self, unit: UnitSpec) -> None:
        if unit.kind != "cpu":
            self._streams[unit.name] = torch.cuda.Stream()

    @contextlib.contextmanager
    def _on_unit(self, unit: UnitSpec) -> Iterator[None]:
        """Inference mode, on the unit's own stream (a step waits only for its own stream)."""
        stream = self._streams.get(unit.name)
        with torch.inference_mode():
            if stream is None:
                yield
                return
            with torch.cuda.stream(stream):
                yield
            stream.synchronize()

    def _load(self, profile: ModelProfile, device: torch.device) -> Any:
        """Load ``profile``'s artefact onto ``device`` (each backend its own format)."""
        raise NotImplementedError

    def _model(self, profile: ModelProfile, device: torch.device) -> Any:
        """The model on ``device``, loaded once per (model, device)."""
        key = (profile.id, str(device))
        with self._models_lock:
            if key not in self._models:
                self._models[key] = self._load(profile, device)
            return self._models[key]

    def warm_up(self) -> None:
        """Load every model this backend can run onto its units' devices now, so the first
        job of a model does not hold its unit for the load (seconds for an LLM)."""
        devices = {str(d): d for d in (self.device(self._spec(u)) for u in self.units)}
        for profile in self._catalog:
            if self.supports(profile.id):
                for device in devices.values():
                    self._model(profile, device)


class TorchBackend(TorchUnits):
    """Runs catalog models that name a ``torchscript`` artefact (not LLMs: see LlmBackend).

    Inputs come from the payload (zeros of the input spec when it has none); outputs are the
    module's tensors: named by key (a dict), ``output`` (one tensor) or ``output0..`` (a
    tuple). A DNN step cannot be preempted, so a freeze lets the job finish.
    """

    artefact_kinds = ("torchscript",)

    def _load(self, profile: ModelProfile, device: torch.device) -> Any:
        return torch.jit.load(str(profile.artefact("torchscript")), map_location=device).eval()

    def _step(self, run: Run) -> bool:
        device = self.device(run.unit)
        module = self._model(run.profile, device)
        arrays = input_arrays(run.payload, run.profile)
        with self._on_unit(run.unit):
            inputs = [torch.from_numpy(np.array(a)).to(device) for a in arrays]
            named = _named_outputs(module(*inputs))
            run.output = Output(tensors=tuple(tensor_data(name, t.detach().cpu().numpy())
                                              for name, t in named))
        return True


def _named_outputs(result: Any) -> list[tuple[str, torch.Tensor]]:
    if isinstance(result, dict):
        return [(str(k), v) for k, v in result.items()]
    if isinstance(result, (tuple, list)):
        return [(f"output{i}", t) for i, t in enumerate(result)]
    return [("output", result)]
