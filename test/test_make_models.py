"""scripts/make_models.py: the tiny models match the catalog, rebuild identically, and a run
with everything in place builds nothing."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from backend_fixtures import TINY, load_make_models, tiny_catalog  # noqa: E402

from twill_ros.core.catalog import load_catalog  # noqa: E402
from twill_ros.core.onnx_analysis import analyze_onnx  # noqa: E402


def _digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir()) if p.is_file()}


def test_artefacts_match_the_catalog_and_a_second_run_builds_nothing(tmp_path_factory):
    catalog, out = tiny_catalog(tmp_path_factory)
    shipped = load_catalog()
    for model_id, files in TINY.items():
        # the shipped catalog names models/tiny/<file>; the build writes exactly those files
        assert {k: v.split("/")[-1] for k, v in shipped.get(model_id).artefacts.items()} \
            == files
        for kind in files:
            assert catalog.get(model_id).artefact(kind).exists()
    analysis = analyze_onnx(out / "tiny_cnn.onnx")
    assert analysis.inputs == catalog.get("tiny-cnn").inputs
    assert analysis.dla_compatible
    assert load_make_models().make_models(out) == []


def test_the_onnx_graph_computes_what_the_torchscript_module_does(tmp_path_factory):
    ort = pytest.importorskip("onnxruntime")
    _, out = tiny_catalog(tmp_path_factory)
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    (onnx_out,) = ort.InferenceSession(str(out / "tiny_cnn.onnx")).run(None, {"input": x})
    with torch.inference_mode():
        expected = torch.jit.load(str(out / "tiny_cnn.pt"))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(onnx_out, expected, rtol=1e-4, atol=1e-5)


def test_the_llm_is_rebuilt_bit_for_bit(tmp_path_factory, tmp_path):
    _, out = tiny_catalog(tmp_path_factory)
    load_make_models().build_llm(tmp_path)
    assert _digest(tmp_path / "tiny_llm") == _digest(out / "tiny_llm")
