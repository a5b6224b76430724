"""TensorRT execution on the GPU and the DLA cores (JetPack 6, TensorRT 10.3).

Engines are built from the catalog's ONNX artefact with the settings ``trt_config`` decides,
when the backend warms up (at node start), cached on disk per (model, ONNX content, unit,
precisions and workspace, TensorRT version, catalog input shapes) and reused; a catalog
``engine`` artefact is used as it is.
Dynamic network inputs are built for the catalog's input shape. A DLA build refuses a graph
that is not DLA-eligible and logs the layers that fall back to the GPU. Execution uses the
name-based TensorRT 10 API (``set_tensor_address`` + ``execute_async_v3``) with one execution
context per unit worker thread (TensorRT is thread-safe with one context per thread) on that
unit's own CUDA stream (``TorchUnits``; device buffers are torch CUDA tensors). TensorRT is
imported when the backend is built, so machines without it never load it; a unit that asks
for it there gets a clear error.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from twill_ros.backends.base import Clock, EventSink, Output
from twill_ros.backends.tensors import input_arrays, tensor_data
from twill_ros.backends.torch_backend import TorchUnits
from twill_ros.backends.trt_config import (
    EngineConfig,
    builder_flags,
    cache_key,
    dla_eligible,
    engine_path,
    model_digest,
    needs_build,
    profile_shapes,
)
from twill_ros.backends.workers import Run
from twill_ros.core.onnx_analysis import analyze_onnx

if TYPE_CHECKING:
    from twill_ros.core.catalog import Catalog, ModelProfile
    from twill_ros.core.platform import PlatformSpec, UnitSpec
    from twill_ros.core.profiler import Profiler

_log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$TWILL_ENGINE_CACHE``, else ``~/.cache/twill_ros/engines``."""
    return Path(os.environ.get("TWILL_ENGINE_CACHE")
                or Path.home() / ".cache" / "twill_ros" / "engines")


class TensorRtBackend(TorchUnits):
    """Runs catalog DNNs/encoders that name an ``onnx`` or ``engine`` artefact on gpu/dla units.

    ``engine_params``: Isaac-style parameters applied to every build (``force_engine_update``,
    ``enable_fp16``, ``enable_int8``, ``max_workspace_size``); the unit sets ``dla_core``.
    """

    kind = "tensorrt"
    unit_kinds = ("gpu", "dla")
    artefact_kinds = ("onnx", "engine")

    def __init__(self, units: Iterable[str], platform: PlatformSpec, catalog: Catalog,
                 profiler: Profiler, sink: EventSink, clock: Clock,
                 engine_params: Mapping[str, Any] | None = None,
                 cache_dir: str | Path | None = None) -> None:
        units = tuple(units)
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise RuntimeError(
                f"unit {', '.join(units)} asks for the tensorrt backend but TensorRT is not "
                f"installed here ({exc}); it ships with JetPack 6 (python3-libnvinfer, "
                f"TensorRT 10.3) -- use the torch or simulated backend on this machine"
            ) from exc
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)      # one logger, shared
        self._runtime = trt.Runtime(self._logger)
        self._params = dict(engine_params or {})
        self._cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        for name in units:           # parameters are checked up front, not at the first job
            EngineConfig.for_unit(platform.unit(name), "", self._params)
        self._engines: dict[tuple[str, str], Any] = {}     # (unit, plan path) -> engine
        self._failed: dict[tuple[str, str], str] = {}      # (unit, plan path) -> build error
        self._digests: dict[str, str] = {}   # ONNX path -> content digest, hashed once per run
        self._build_lock = threading.Lock()      # the builder is used by one thread at a time
        self._contexts: dict[tuple[str, str], Any] = {}   # (unit, model) -> its thread's context
        super().__init__(units, platform, catalog, profiler, sink, clock)

    def _step(self, run: Run) -> bool:
        key = (run.unit.name, run.profile.id)
        if key not in self._contexts:    # only this unit's thread touches its contexts
            self._contexts[key] = self._engine(run.profile, run.unit).create_execution_context()
        context = self._contexts[key]
        engine = context.engine
        arrays = dict(zip((s.name for s in run.profile.inputs),
                          input_arrays(run.payload, run.profile), strict=True))
        buffers: dict[str, torch.Tensor] = {}
        outputs = []
        with self._on_unit(run.unit):
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                if engine.get_tensor_mode(name) == self._trt.TensorIOMode.INPUT:
                    if name not in arrays:
                        raise ValueError(f"engine input '{name}' is not in model "
                                         f"'{run.profile.id}''s input spec")
                    array = np.array(arrays[name])
                    wanted = np.dtype(self._trt.nptype(engine.get_tensor_dtype(name)))
                    if array.dtype != wanted:    # the bytes would be read as another type
                        raise ValueError(f"engine input '{name}' of '{run.profile.id}' takes "
                                         f"{wanted}, its catalog input spec gives {array.dtype}")
                    buffers[name] = torch.from_numpy(array).cuda()
                    if not context.set_input_shape(name, tuple(array.shape)):
                        raise ValueError(f"engine input '{name}' of '{run.profile.id}' does "
                                         f"not take shape {list(array.shape)}")
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                if engine.get_tensor_mode(name) == self._trt.TensorIOMode.OUTPUT:
                    dtype = torch.from_numpy(
                        np.empty(0, self._trt.nptype(engine.get_tensor_dtype(name)))).dtype
                    buffers[name] = torch.empty(tuple(context.get_tensor_shape(name)),
                                                dtype=dtype, device="cuda")
                    outputs.append(name)
            for name, buffer in buffers.items():
                context.set_tensor_address(name, buffer.data_ptr())
            if not context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
                raise RuntimeError(f"TensorRT execution of '{run.profile.id}' failed on "
                                   f"{run.unit.name}")
        run.output = Output(tensors=tuple(tensor_data(n, buffers[n].cpu().numpy())
                                          for n in outputs))
        return True

    # ------------------------------------------------------------------ engines

    def warm_up(self) -> None:
        """Build or load every engine now, as Isaac ROS does at start: a first build takes
        minutes on an Orin and would otherwise hold its unit for the first job of each model.
        A model that cannot get an engine on a unit is logged here; its jobs there fail with
        the same reason."""
        for profile in self._catalog:
            if not self.supports(profile.id):
                continue
            for name in self.units:
                unit = self._spec(name)
                if unit.kind not in profile.unit_kinds:     # e.g. a transformer on a DLA
                    continue
                try:
                    self._engine(profile, unit)
                except (RuntimeError, ValueError, OSError) as exc:
                    _log.error("no TensorRT engine for %s on %s: %s", profile.id, name, exc)

    def _engine(self, profile: ModelProfile, unit: UnitSpec) -> Any:
        """The deserialized engine of ``profile`` for ``unit``: from memory, the plan cache or
        a fresh build."""
        onnx = str(profile.artefact("onnx")) if "onnx" in profile.artefacts else ""
        config = EngineConfig.for_unit(unit, onnx, self._params)
        if "engine" in profile.artefacts:   # prebuilt for this device: used as it is
            plan = profile.artefact("engine")
        else:
            plan = engine_path(self._cache_dir, cache_key(
                profile.id, unit.name, config.build_settings, self._trt.__version__,
                self._digest(onnx), profile.inputs))
        config = replace(config, engine_file_path=str(plan))
        key = (unit.name, config.engine_file_path)
        with self._build_lock:
            if key in self._failed:     # a build takes minutes: one try per run
                raise RuntimeError(self._failed[key])
            if key not in self._engines:
                try:
                    built = (self._build(config, profile) if onnx and needs_build(config, plan)
                             else None)
                except (RuntimeError, ValueError) as exc:
                    self._failed[key] = str(exc)
                    raise
                if built is not None:
                    self._save(built, plan)
                # The runtime's DLA core is where a deserialized DLA engine runs (default 0):
                # without it a dla1 engine would run on DLA 0 (trtexec sets it the same way).
                if config.uses_dla:
                    self._runtime.DLA_core = config.dla_core
                engine = self._runtime.deserialize_cuda_engine(
                    plan.read_bytes() if built is None else built)
                if engine is None:
                    raise RuntimeError(f"TensorRT could not load engine {plan}")
                self._engines[key] = engine
            return self._engines[key]

    @staticmethod
    def _save(built: bytes, plan: Path) -> None:
        """Cache a fresh plan; one that cannot be saved is still used, by this run only."""
        partial = plan.with_suffix(".partial")
        try:
            plan.parent.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(built)
            partial.replace(plan)       # no half-written plan is ever reused
        except OSError as exc:
            _log.warning("cannot save the engine in %s (%s): using it unsaved, the next start "
                         "builds it again; set tensorrt.engine_cache_dir (or "
                         "$TWILL_ENGINE_CACHE) to a writable directory", plan.parent, exc)

    def _digest(self, onnx: str) -> str:
        """The ONNX file's digest, hashed once although every unit's plan is keyed by it."""
        digest = self._digests.get(onnx)
        if digest is None:
            digest = self._digests[onnx] = model_digest(onnx)
        return digest

    def _build(self, config: EngineConfig, profile: ModelProfile) -> bytes:
        trt = self._trt
        model_id = profile.id
        if config.uses_dla:
            verdict = dla_eligible(analyze_onnx(config.model_file_path))
            if not verdict.eligible:
                raise RuntimeError(f"model '{model_id}' is not DLA-eligible: "
                                   f"{'; '.join(verdict.reasons)}")
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(config.model_file_path):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT cannot parse {config.model_file_path}: {errors}")
        builder_config = builder.create_builder_config()
        settings = builder_flags(config)
        for flag in settings.flags:
            builder_config.set_flag(getattr(trt.BuilderFlag, flag))
        builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
                                             settings.workspace_bytes)
        builder_config.default_device_type = getattr(trt.DeviceType, settings.default_device_type)
        dynamic = profile_shapes(
            {network.get_input(i).name: tuple(network.get_input(i).shape)
             for i in range(network.num_inputs)}, profile.inputs)
        if dynamic:
            optimization = builder.create_optimization_profile()
            for name, shape in dynamic.items():
                optimization.set_shape(name, shape, shape, shape)
            builder_config.add_optimization_profile(optimization)
        if settings.dla_core is not None:
            if builder.num_DLA_cores <= settings.dla_core:
                raise RuntimeError(f"DLA core {settings.dla_core} does not exist here "
                                   f"(num_DLA_cores={builder.num_DLA_cores})")
            builder_config.DLA_core = settings.dla_core
            layers = [network.get_layer(i) for i in range(network.num_layers)]
            fallback = [layer.name for layer in layers if not builder_config.can_run_on_DLA(layer)]
            if fallback:
                _log.warning("%s on DLA %d: %d of %d layers fall back to the GPU: %s", model_id,
                             settings.dla_core, len(fallback), len(layers), ", ".join(fallback))
        plan = builder.build_serialized_network(network, builder_config)
        if plan is None:
            raise RuntimeError(f"TensorRT failed to build an engine for '{model_id}' "
                               f"({settings})")
        _log.info("built TensorRT engine for %s -> %s", model_id, config.engine_file_path)
        return bytes(plan)
