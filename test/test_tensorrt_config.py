"""TensorRT engine configuration (pure, tested everywhere) and the TensorRT backend (needs a GPU).

The configuration tests cover which builder settings each unit and precision gets, the engine
cache keys and paths, rebuild decisions and DLA eligibility read from a real ONNX graph (the
tiny CNN, plus a graph with a LayerNorm the DLA cannot run). The execution tests build real
engines and skip, with the reason, where TensorRT or CUDA is missing.
"""

from __future__ import annotations

import importlib.util
import os
import time
import warnings
from dataclasses import replace

import numpy as np
import pytest
from backend_fixtures import PLATFORM, Recorder, tiny_catalog

from twill_ros.backends import Payload, TensorData, make_backend
from twill_ros.backends.trt_config import (
    DEFAULT_WORKSPACE_BYTES,
    EngineConfig,
    builder_flags,
    cache_key,
    dla_core_of,
    dla_eligible,
    engine_path,
    model_digest,
    needs_build,
    profile_shapes,
)
from twill_ros.core.catalog import Catalog, TensorSpec
from twill_ros.core.jobs import Job
from twill_ros.core.onnx_analysis import analyze_onnx
from twill_ros.core.profiler import Profiler

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def test_units_map_to_dla_cores():
    assert [dla_core_of(PLATFORM.unit(u)) for u in ("gpu", "dla0", "dla1")] == [-1, 0, 1]
    with pytest.raises(ValueError, match="cpu_a.*cannot run a TensorRT engine"):
        dla_core_of(PLATFORM.unit("cpu_a"))


def test_isaac_defaults_and_precision():
    config = EngineConfig("m.onnx")
    assert (config.dla_core, config.enable_fp16, config.enable_int8) == (-1, True, False)
    assert config.max_workspace_size == DEFAULT_WORKSPACE_BYTES == 64 * 2**20
    assert config.precision == "fp16" and not config.uses_dla
    assert EngineConfig("m.onnx", enable_fp16=False).precision == "fp32"
    assert EngineConfig("m.onnx", enable_int8=True).precision == "int8"


def test_gpu_build_flags():
    settings = builder_flags(EngineConfig.for_unit(PLATFORM.unit("gpu"), "m.onnx"))
    assert settings.flags == ("FP16",)
    assert (settings.default_device_type, settings.dla_core) == ("GPU", None)
    assert settings.workspace_bytes == DEFAULT_WORKSPACE_BYTES
    fp32 = builder_flags(EngineConfig.for_unit(PLATFORM.unit("gpu"), "m.onnx",
                                               {"enable_fp16": False}))
    assert fp32.flags == ()


@pytest.mark.parametrize(("unit", "core"), [("dla0", 0), ("dla1", 1)])
def test_dla_build_sets_device_core_fallback_and_low_precision(unit, core):
    config = EngineConfig.for_unit(PLATFORM.unit(unit), "m.onnx",
                                   {"enable_int8": True, "max_workspace_size": 2**20})
    settings = builder_flags(config)
    assert config.dla_core == core and config.precision == "int8"
    assert settings.flags == ("FP16", "INT8", "GPU_FALLBACK")
    assert (settings.default_device_type, settings.dla_core) == ("DLA", core)
    assert settings.workspace_bytes == 2**20


def test_invalid_configurations_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="needs enable_fp16 or enable_int8"):
        EngineConfig.for_unit(PLATFORM.unit("dla0"), "m.onnx", {"enable_fp16": False})
    with pytest.raises(ValueError, match="dla_core=1 conflicts with unit dla0"):
        EngineConfig.for_unit(PLATFORM.unit("dla0"), "m.onnx", {"dla_core": 1})
    with pytest.raises(ValueError, match="unknown engine parameter.*verbose"):
        EngineConfig.for_unit(PLATFORM.unit("gpu"), "m.onnx", {"verbose": True})
    with pytest.raises(ValueError, match="max_workspace_size"):
        EngineConfig("m.onnx", max_workspace_size=0)
    with pytest.raises(ValueError, match="dla_core"):
        EngineConfig("m.onnx", dla_core=-2)


def test_cache_keys_separate_model_content_unit_build_settings_version_and_shapes(tmp_path):
    settings = {EngineConfig("m.onnx", **flags).build_settings for flags in [
        {}, {"enable_int8": True}, {"enable_int8": True, "enable_fp16": False},
        {"enable_fp16": False}, {"max_workspace_size": 1 << 30}]}
    assert settings == {"fp16_ws67108864", "int8+fp16_ws67108864", "int8_ws67108864",
                        "fp32_ws67108864", "fp16_ws1073741824"}
    key = cache_key("tiny-cnn", "dla0", "fp16_ws67108864", "10.3.0", "0123456789ab")
    assert key == "tiny-cnn__dla0__fp16_ws67108864__trt10.3.0__0123456789ab"
    variants = {cache_key(*args) for args in [
        ("tiny-cnn", "dla0", "fp16", "10.3.0", "a"), ("tiny-cnn", "dla1", "fp16", "10.3.0", "a"),
        ("tiny-cnn", "gpu", "fp16", "10.3.0", "a"), ("tiny-cnn", "dla0", "int8", "10.3.0", "a"),
        ("tiny-cnn", "dla0", "fp16", "10.3.1", "a"), ("resnet50", "dla0", "fp16", "10.3.0", "a"),
        ("tiny-cnn", "dla0", "fp16", "10.3.0", "b")]}
    assert len(variants) == 7
    assert cache_key("a/b c", "gpu", "fp16", "10.3") == "a_b_c__gpu__fp16__trt10.3"
    bert = [TensorSpec(name, "int64", (1, 384)) for name in ("ids", "mask")]
    assert cache_key("bert", "gpu", "fp16", "10.3", "a", bert) == \
        "bert__gpu__fp16__trt10.3__a__in1x384-1x384"
    assert engine_path(tmp_path, key) == tmp_path / f"{key}.plan"


def test_a_replaced_model_gets_a_new_key_whatever_its_mtime(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx v1")
    first = model_digest(model)
    model.write_bytes(b"onnx v2")
    os.utime(model, (1_000_000, 1_000_000))        # as cp -p / rsync -a leave an older copy
    assert model_digest(model) != first and len(first) == 12


def test_rebuild_when_forced_or_missing(tmp_path):
    plan = tmp_path / "m.plan"
    config = EngineConfig(str(tmp_path / "m.onnx"))
    assert needs_build(config, plan)                          # no plan yet
    plan.write_bytes(b"plan")
    assert not needs_build(config, plan)                      # cached plan reused
    assert needs_build(replace(config, force_engine_update=True), plan)


def test_dynamic_inputs_are_built_for_the_catalog_shape():
    spec = (TensorSpec("images", "float32", (1, 3, 640, 640)),)
    assert profile_shapes({"images": (-1, 3, 640, 640)}, spec) == {"images": (1, 3, 640, 640)}
    assert profile_shapes({"images": (1, 3, 640, 640)}, spec) == {}      # static: no profile
    with pytest.raises(ValueError, match="'images' \\[-1, 3, 320, 320\\] is dynamic"):
        profile_shapes({"images": (-1, 3, 320, 320)}, spec)           # the spec disagrees
    with pytest.raises(ValueError, match="'x' \\[-1, 16\\] is dynamic.*images"):
        profile_shapes({"x": (-1, 16)}, spec)


class StandInRuntime:
    """Where TensorRT is missing: records which DLA core each plan was deserialized for."""

    def __init__(self, _logger) -> None:
        self.DLA_core = 0
        self.loaded: list[tuple[bytes, int]] = []

    def deserialize_cuda_engine(self, plan: bytes) -> object:
        self.loaded.append((plan, self.DLA_core))
        return object()


def _stand_in_tensorrt(monkeypatch):
    """TensorRT where it is missing: a module with a version, a logger and StandInRuntime;
    CUDA reported present and no CUDA streams, so the backend builds here."""
    import sys
    import types

    torch = pytest.importorskip("torch")
    from twill_ros.backends.torch_backend import TorchUnits

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.Runtime = StandInRuntime
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(TorchUnits, "_setup_thread", lambda self, unit: None)  # no streams


def test_warm_up_loads_every_engine_at_start_each_on_its_dla_core(models, tmp_path,
                                                                   monkeypatch):
    """The node warms backends up before it spins: the TensorRT backend used to fail there,
    and a dla1 engine was deserialized for DLA 0 (the runtime's default core)."""
    _stand_in_tensorrt(monkeypatch)
    catalog = Catalog({"cnn": replace(models[0].get("tiny-cnn"), id="cnn", artefacts={
        "engine": str(tmp_path / "cnn.plan")}), "bert": replace(
        models[0].get("tiny-bert"), id="bert", artefacts={"engine": str(tmp_path / "bert.plan")})})
    for name in ("cnn", "bert"):
        (tmp_path / f"{name}.plan").write_bytes(name.encode())
    backend = make_backend("tensorrt", ("gpu", "dla0", "dla1"), PLATFORM, catalog,
                           Profiler(catalog, PLATFORM), Recorder(), time.monotonic)
    try:
        backend.warm_up()
        loaded = backend._runtime.loaded
    finally:
        backend.close()
    # the CNN on gpu, dla0 and dla1 (in that order), each DLA copy for its own core (a GPU
    # engine ignores the runtime's core); BERT has no DLA layers: on the GPU only
    assert [load for load in loaded if load[0] == b"cnn"] == [(b"cnn", 0), (b"cnn", 0),
                                                              (b"cnn", 1)]
    assert [plan for plan, _core in loaded].count(b"bert") == 1


def test_a_cached_engine_is_not_reused_for_another_catalog_input_shape(models, tmp_path,
                                                                       monkeypatch):
    """A dynamic ONNX input is built for the catalog's shape only (min = opt = max): after
    the catalog's batch changes, the plan built for the old shape takes no job, so the cache
    must build another, not reuse it."""
    from twill_ros.backends.tensorrt_backend import TensorRtBackend

    _stand_in_tensorrt(monkeypatch)
    built: list[tuple[int, ...]] = []

    def build(self, config, profile):
        built.append(profile.inputs[0].shape)
        return repr(profile.inputs[0].shape).encode()

    monkeypatch.setattr(TensorRtBackend, "_build", build)
    cnn = models[0].get("tiny-cnn")
    loaded = []
    for batch in (1, 4, 1):
        spec = replace(cnn.inputs[0], shape=(batch, *cnn.inputs[0].shape[1:]))
        catalog = Catalog({"tiny-cnn": replace(cnn, inputs=(spec,))})
        backend = make_backend("tensorrt", ("gpu",), PLATFORM, catalog,
                               Profiler(catalog, PLATFORM), Recorder(), time.monotonic,
                               cache_dir=tmp_path)
        try:
            backend.warm_up()
            loaded += [plan for plan, _core in backend._runtime.loaded]
        finally:
            backend.close()
    assert built == [(1, 3, 32, 32), (4, 3, 32, 32)]          # batch 1 again: from the cache
    assert loaded == [b"(1, 3, 32, 32)", b"(4, 3, 32, 32)", b"(1, 3, 32, 32)"]


def test_an_engine_built_where_the_cache_cannot_be_written_is_used_unsaved(models, tmp_path,
                                                                          monkeypatch, caplog):
    """A read-only root file system or a mistyped tensorrt.engine_cache_dir: the build (minutes
    on an Orin) still gives the engine, with a warning naming the directory, instead of no
    engine and the same build failing again at every job."""
    from twill_ros.backends.tensorrt_backend import TensorRtBackend

    _stand_in_tensorrt(monkeypatch)
    builds = []
    monkeypatch.setattr(TensorRtBackend, "_build",
                        lambda self, config, profile: builds.append(profile.id) or b"plan")
    (tmp_path / "file").write_text("not a directory")
    catalog = Catalog({"tiny-cnn": models[0].get("tiny-cnn")})
    backend = make_backend("tensorrt", ("gpu",), PLATFORM, catalog,
                           Profiler(catalog, PLATFORM), Recorder(), time.monotonic,
                           cache_dir=tmp_path / "file" / "engines")
    try:
        backend.warm_up()
        backend._engine(catalog.get("tiny-cnn"), PLATFORM.unit("gpu"))     # a job's look-up
        loaded = backend._runtime.loaded
    finally:
        backend.close()
    assert builds == ["tiny-cnn"] and loaded == [(b"plan", 0)]
    assert f"cannot save the engine in {tmp_path / 'file' / 'engines'}" in caplog.text
    assert "tensorrt.engine_cache_dir" in caplog.text


def test_a_failed_build_fails_the_jobs_at_once_not_by_building_again(models, tmp_path,
                                                                     monkeypatch):
    """A build that failed at start (minutes on an Orin, e.g. the builder out of memory) is not
    tried again by every job of the model, each holding its unit that long: they fail at
    once with the start's reason."""
    from twill_ros.backends.tensorrt_backend import TensorRtBackend

    _stand_in_tensorrt(monkeypatch)
    builds = []

    def build(self, config, profile):
        builds.append(profile.id)
        raise RuntimeError("TensorRT failed to build an engine for 'tiny-cnn'")

    monkeypatch.setattr(TensorRtBackend, "_build", build)
    catalog = Catalog({"tiny-cnn": models[0].get("tiny-cnn")})
    recorder = Recorder()
    backend = make_backend("tensorrt", ("dla0",), PLATFORM, catalog,
                           Profiler(catalog, PLATFORM), recorder, time.monotonic,
                           cache_dir=tmp_path)
    try:
        backend.warm_up()
        for job_id in ("j1", "j2"):
            backend.start(Job(job_id, "tiny-cnn", 100, 0.0), "dla0")
            finished = recorder.finished(job_id)
            assert not finished.ok and "failed to build an engine for 'tiny-cnn'" in \
                finished.message
    finally:
        backend.close()
    assert builds == ["tiny-cnn"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_catalog(tmp_path_factory)


def test_tiny_cnn_is_dla_eligible(models):
    verdict = dla_eligible(analyze_onnx(models[1] / "tiny_cnn.onnx"))
    assert verdict.eligible and verdict.reasons == () and verdict.precision == "fp16"


def test_graph_with_unsupported_ops_or_dynamic_shapes_is_not(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8),
                                torch.nn.Softmax(-1)).eval()
    path = tmp_path / "ln.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.zeros(1, 8),), str(path), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    verdict = dla_eligible(analyze_onnx(path))
    assert not verdict.eligible
    assert any("dynamic shapes" in r for r in verdict.reasons)
    assert any("LayerNormalization" in r or "Softmax" in r for r in verdict.reasons)


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed: the missing-TensorRT error "
                                     "cannot be seen here")
def test_missing_tensorrt_is_a_clear_error(models):
    catalog = models[0]
    with pytest.raises(RuntimeError, match="unit dla0 asks for the tensorrt backend but "
                                           "TensorRT is not installed"):
        make_backend("tensorrt", ("dla0",), PLATFORM, catalog, Profiler(catalog, PLATFORM),
                     Recorder(), time.monotonic)


def _dla_cores() -> int:
    import tensorrt as trt

    return trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores


@pytest.mark.skipif(not (HAVE_TRT and _cuda()),
                    reason="needs TensorRT and a CUDA GPU (a Jetson with JetPack 6)")
@pytest.mark.parametrize("unit", ["gpu", "dla0", "dla1"])
def test_engine_runs_the_tiny_cnn_and_is_cached(models, tmp_path, monkeypatch, unit):
    import torch

    if unit.startswith("dla") and _dla_cores() == 0:
        pytest.skip("this GPU has no DLA core")
    catalog, out = models
    monkeypatch.setenv("TWILL_ENGINE_CACHE", str(tmp_path))
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    payload = Payload(inputs=(TensorData("input", "float32", x.shape, x.tobytes()),))
    with torch.inference_mode():
        expected = torch.jit.load(str(out / "tiny_cnn.pt"))(torch.from_numpy(x)).numpy()
    built = None
    for attempt in range(2):                     # the second backend reuses the cached plan
        recorder = Recorder()
        backend = make_backend("tensorrt", (unit,), PLATFORM, catalog,
                               Profiler(catalog, PLATFORM), recorder, time.monotonic)
        try:
            backend.start(Job(f"t{attempt}", "tiny-cnn", 100, 0.0), unit, payload=payload)
            assert recorder.finished(f"t{attempt}").ok
            (logits,) = backend.take_output(f"t{attempt}").tensors
        finally:
            backend.close()
        got = np.frombuffer(logits.data, dtype=logits.dtype).reshape(logits.shape)
        np.testing.assert_allclose(got, expected, rtol=2e-2, atol=2e-2)   # an fp16 engine
        (plan,) = tmp_path.glob(f"tiny-cnn__{unit}__fp16__*.plan")
        assert built in (None, plan.stat().st_mtime_ns)
        built = plan.stat().st_mtime_ns
