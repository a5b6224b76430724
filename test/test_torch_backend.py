"""TorchBackend: real worker threads running the real tiny TorchScript models."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from types import MappingProxyType

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from backend_fixtures import PLATFORM, Recorder, tiny_catalog  # noqa: E402

from twill_ros.backends import Payload, TensorData, make_backend  # noqa: E402
from twill_ros.backends.torch_backend import TorchBackend  # noqa: E402
from twill_ros.backends.workers import unit_cpus  # noqa: E402
from twill_ros.core.events import JobFinished  # noqa: E402
from twill_ros.core.jobs import Job  # noqa: E402
from twill_ros.core.profiler import Profiler  # noqa: E402

CUDA = torch.cuda.is_available()


class _Fussy(torch.nn.Module):
    """Fails on a negative input sum, doubles the input otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() < 0):
            raise ValueError("negative input sum")
        return x * 2


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    catalog, _ = tiny_catalog(tmp_path_factory)
    path = tmp_path_factory.mktemp("fussy") / "fussy.pt"
    torch.jit.script(_Fussy()).save(str(path))
    catalog.add(replace(catalog.get("tiny-cnn"), id="fussy",
                        artefacts=MappingProxyType({"torchscript": str(path)})))
    return catalog


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def backend(catalog, recorder):
    units = ("cpu_a", "cpu_b", "gpu") if CUDA else ("cpu_a", "cpu_b")
    backend = make_backend("torch", units, PLATFORM, catalog, Profiler(catalog, PLATFORM),
                           recorder, time.monotonic)
    yield backend
    backend.close()


def _image(seed: int, sign: float = 1.0) -> TensorData:
    x = np.random.default_rng(seed).random((1, 3, 32, 32), dtype=np.float32) * sign
    return TensorData("input", "float32", (1, 3, 32, 32), x.astype("<f4").tobytes())


def _array(tensor: TensorData) -> np.ndarray:
    return np.frombuffer(tensor.data, dtype=tensor.dtype).reshape(tensor.shape)


def test_cnn_job_returns_what_the_model_computes(backend, recorder, catalog):
    assert isinstance(backend, TorchBackend)
    image = _image(1)
    backend.start(Job("j1", "tiny-cnn", 100, 0.0), "cpu_a", payload=Payload(inputs=(image,)))
    event = recorder.finished("j1")
    assert event.ok and event.unit == "cpu_a", event
    (out,) = backend.take_output("j1").tensors
    module = torch.jit.load(str(catalog.get("tiny-cnn").artefact("torchscript")))
    with torch.inference_mode():
        expected = module(torch.from_numpy(_array(image).copy())).numpy()
    assert (out.name, out.dtype, out.shape) == ("output", "float32", (1, 10))
    np.testing.assert_allclose(_array(out), expected, rtol=1e-5, atol=1e-6)
    assert backend.take_output("j1").tensors == ()          # handed over once
    assert [type(e) for e in recorder.of("j1")] == [JobFinished]


def test_encoder_runs_on_synthetic_input_and_freeze_lets_it_finish(backend, recorder):
    backend.start(Job("b1", "tiny-bert", 100, 0.0), "cpu_b")
    backend.freeze("b1")                        # a DNN step is not preemptible
    assert recorder.finished("b1").ok
    hidden, pooled = backend.take_output("b1").tensors
    assert (hidden.name, hidden.shape) == ("last_hidden_state", (1, 32, 128))
    assert (pooled.name, pooled.shape) == ("pooler_output", (1, 128))


def test_model_exception_fails_the_job_and_the_unit_goes_on(backend, recorder):
    backend.start(Job("bad", "fussy", 100, 0.0), "cpu_a",
                  payload=Payload(inputs=(_image(2, sign=-1.0),)))
    event = recorder.finished("bad")
    assert not event.ok and "negative input sum" in event.message
    assert backend.take_output("bad").tensors == ()
    backend.start(Job("good", "fussy", 100, 0.0), "cpu_a",
                  payload=Payload(inputs=(_image(3),)))
    assert recorder.finished("good").ok
    (out,) = backend.take_output("good").tensors
    np.testing.assert_array_equal(_array(out), 2 * _array(_image(3)))


def test_bad_input_fails_the_job_with_the_reason(backend, recorder):
    wrong = TensorData("input", "float32", (1, 3, 16, 16), bytes(4 * 3 * 16 * 16))
    backend.start(Job("w", "tiny-cnn", 100, 0.0), "cpu_a", payload=Payload(inputs=(wrong,)))
    event = recorder.finished("w")
    assert not event.ok and "[1, 3, 32, 32]" in event.message


def test_cpu_workers_are_pinned_to_their_cluster(backend):
    available = os.sched_getaffinity(0)
    for unit in ("cpu_a", "cpu_b"):
        cores = set(PLATFORM.unit(unit).cores)
        expected = (cores & available) or available   # a cluster absent here: all we may use
        assert backend.pinned_cpus(unit) == expected == unit_cpus(PLATFORM.unit(unit))
    assert os.sched_getaffinity(0) == available       # the caller's thread is untouched


def test_cancel_drops_a_queued_job_and_discards_a_running_one(catalog):
    release = threading.Event()

    def hold(event):                                   # the worker waits in the sink
        if event.job_id == "first":
            release.wait(5.0)

    recorder = Recorder(hold)
    backend = TorchBackend(("cpu_a",), PLATFORM, catalog, Profiler(catalog, PLATFORM),
                           recorder, time.monotonic)
    try:
        backend.start(Job("first", "tiny-cnn", 100, 0.0), "cpu_a")
        backend.start(Job("queued", "tiny-cnn", 100, 0.0), "cpu_a")
        backend.start(Job("last", "tiny-cnn", 100, 0.0), "cpu_a")
        backend.cancel("queued")
        release.set()
        assert recorder.finished("last").ok
        assert recorder.of("queued") == [] and backend.take_output("queued").tensors == ()
        assert backend.utilization("cpu_a") > 0.0
    finally:
        backend.close()


def test_supports_only_torchscript_non_llm_models(backend):
    assert backend.supports("tiny-cnn") and backend.supports("tiny-bert")
    assert not backend.supports("tiny-llm") and not backend.supports("resnet50")
    assert not backend.supports("no-such-model")
    with pytest.raises(ValueError, match="cannot run model 'resnet50'.*torchscript artefact"):
        backend.start(Job("r", "resnet50", 100, 0.0), "cpu_a")


def test_units_it_cannot_drive_are_refused_clearly(catalog):
    with pytest.raises(ValueError, match="dla0 .kind dla.: the torch backend drives only cpu"):
        TorchBackend(("dla0",), PLATFORM, catalog, Profiler(catalog, PLATFORM), Recorder(),
                     time.monotonic)
    if not CUDA:
        with pytest.raises(RuntimeError, match="gpu asks for the torch backend on CUDA"):
            TorchBackend(("gpu",), PLATFORM, catalog, Profiler(catalog, PLATFORM), Recorder(),
                         time.monotonic)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_gpu_unit_computes_what_the_cpu_does(backend, recorder):
    image = _image(4)
    for unit in ("cpu_a", "gpu"):
        backend.start(Job(unit, "tiny-cnn", 100, 0.0), unit, payload=Payload(inputs=(image,)))
        assert recorder.finished(unit).ok
    cpu, gpu = (_array(backend.take_output(u).tensors[0]) for u in ("cpu_a", "gpu"))
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-4)


def test_intra_op_threads_split_shared_cpus_and_keep_own_clusters():
    from twill_ros.backends.torch_backend import intra_op_threads

    orin = [frozenset({0, 1, 2, 3}), frozenset({4, 5, 6, 7})]
    assert intra_op_threads(orin) == 4                     # each cluster its own 4 cores
    small = [frozenset({0, 1}), frozenset({0, 1})]         # a 2-CPU machine: both units share
    assert intra_op_threads(small) == 1
    assert intra_op_threads([frozenset({0, 1, 2, 3})]) == 4
