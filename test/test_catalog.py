"""Model catalog: required ids, sourced anchor figures, physical sanity, validation errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from twill_ros.core.catalog import Catalog, CatalogError, load_catalog
from twill_ros.resources import find_resource

REQUIRED = (
    "vgg19",
    "resnet50",
    "resnet152",
    "mobilenetv2",
    "yolov8n",
    "yolov8s",
    "bert-base",
    "bert-large",
    "tinyllama-1.1b",
    "llama-3.2-1b",
    "qwen2.5-1.5b",
    "tiny-cnn",
    "tiny-bert",
    "tiny-llm",
)
LLMS = ("tinyllama-1.1b", "llama-3.2-1b", "qwen2.5-1.5b", "tiny-llm")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def test_catalog_has_every_required_id(catalog):
    assert set(REQUIRED) <= set(catalog.ids)
    assert catalog.reference_platform == "orin_nx_16gb"
    assert all(model_id in catalog for model_id in REQUIRED)
    assert len(catalog) == len(catalog.ids)


def test_sourced_anchor_figures(catalog):
    # MLPerf v3.1 Orin NX ResNet-50 SingleStream mean 1.079 ms
    assert catalog.get("resnet50").latency_s["gpu"] == pytest.approx(1.079e-3, rel=0.01)
    # NanoLLM#38: TinyLlama MLC decode on Orin NX 30-45 tok/s
    assert 30 <= catalog.get("tinyllama-1.1b").decode_tokens_per_s["gpu"] <= 45


def test_latencies_are_in_seconds_and_ordered_gpu_dla_cpu(catalog):
    for profile in catalog:
        if profile.is_llm:
            continue
        lat = profile.latency_s
        assert lat["gpu"] < 0.05, profile.id  # ms in YAML -> s in the profile
        assert lat["gpu"] < lat["cpu"], profile.id
        if "dla" in lat and not profile.id.startswith("tiny"):
            # one DLA is 2-4x slower than the GPU on the same CNN (reference §1c)
            assert 1.5 <= lat["dla"] / lat["gpu"] <= 4.0, profile.id


def test_transformers_and_llms_are_not_dla_eligible(catalog):
    for profile in catalog:
        if profile.kind in ("transformer", "llm"):
            assert not profile.dla_compatible, profile.id
            assert "dla" not in profile.unit_kinds, profile.id
        else:
            assert profile.unit_kinds == ("gpu", "dla", "cpu"), profile.id


def test_llm_entries_are_decode_memory_bound(catalog):
    for model_id in LLMS:
        profile = catalog.get(model_id)
        assert profile.is_llm and profile.unit_kinds == ("gpu", "cpu")
        assert profile.prefill_tokens_per_s["gpu"] > 10 * profile.decode_tokens_per_s["gpu"]
        assert profile.freq_sensitivity["gpu"] < profile.prefill_freq_sensitivity["gpu"]
        assert profile.default_prompt_tokens > 0 and profile.default_max_new_tokens > 0
    # bigger model, slower decode
    rates = [catalog.get(m).decode_tokens_per_s["gpu"] for m in LLMS[:3]]
    assert rates == sorted(rates, reverse=True)


def test_every_entry_states_conditions_and_sources(catalog):
    for profile in catalog:
        assert profile.precision and profile.input and profile.inputs, profile.id
        assert profile.sources and profile.memory_mb > 0, profile.id
    tiny = catalog.get("tiny-cnn").inputs[0]
    assert (tiny.dtype, tiny.shape) == ("float32", (1, 3, 32, 32))


def test_get_unknown_model_lists_known_ids(catalog):
    with pytest.raises(KeyError, match="'nope' is not in the catalog.*resnet50"):
        catalog.get("nope")


def test_add_registers_a_derived_profile(catalog):
    fresh = Catalog({}, "orin_nx_16gb")
    fresh.add(catalog.get("resnet50"))
    assert "resnet50" in fresh and fresh.get("resnet50") is catalog.get("resnet50")


# ------------------------------------------------------------------ validation errors
def _entry_index(data, model_id):
    return next(i for i, m in enumerate(data["models"]) if m["id"] == model_id)


def _broken(tmp_path: Path, model_id: str, mutate) -> Path:
    data = yaml.safe_load(find_resource("models/catalog.yaml").read_text())
    mutate(data["models"][_entry_index(data, model_id)])
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("model_id", "mutate", "field"),
    [
        ("resnet50", lambda m: m.update(kind="cnn"), "kind"),
        ("resnet50", lambda m: m["latency_ms"].update(npu=1.0), "latency_ms.npu"),
        ("resnet50", lambda m: m["latency_ms"].update(gpu=-1.0), "latency_ms.gpu"),
        ("resnet50", lambda m: m["latency_ms"].pop("dla"), "latency_ms"),
        ("resnet50", lambda m: m.update(dla_fraction=1.5), "dla_fraction"),
        ("resnet50", lambda m: m["freq_sensitivity"].pop("cpu"), "freq_sensitivity"),
        ("resnet50", lambda m: m.pop("sources"), "sources"),
        ("resnet50", lambda m: m["inputs"][0].update(shape=[1, -3]), "shape"),
        ("resnet50", lambda m: m.update(latency=1), "latency"),
        ("bert-base", lambda m: m.update(dla_compatible=True), "latency_ms"),
        ("llama-3.2-1b", lambda m: m.update(dla_compatible=True), "dla_compatible"),
        ("llama-3.2-1b", lambda m: m.pop("decode_tokens_per_s"), "decode_tokens_per_s"),
        ("llama-3.2-1b", lambda m: m.pop("default_prompt_tokens"), "default_prompt_tokens"),
        ("llama-3.2-1b", lambda m: m.pop("context_tokens"), "context_tokens"),
        ("llama-3.2-1b", lambda m: m.update(context_tokens=100), "context_tokens"),
        ("resnet50", lambda m: m.update(context_tokens=512), "context_tokens"),
        ("tiny-cnn", lambda m: m["artefacts"].update(tflite="x.tflite"), "artefacts.tflite"),
        ("tiny-cnn", lambda m: m["artefacts"].update(onnx=""), "artefacts.onnx"),
        ("tiny-cnn", lambda m: m.update(artefacts=["x.pt"]), "artefacts"),
    ],
)
def test_validation_errors_name_file_model_and_field(tmp_path, model_id, mutate, field):
    path = _broken(tmp_path, model_id, mutate)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    message = str(info.value)
    assert str(path) in message
    assert f"model '{model_id}'" in message
    assert f"field '{field}'" in message


def test_duplicate_ids_are_rejected(tmp_path):
    data = yaml.safe_load(find_resource("models/catalog.yaml").read_text())
    data["models"].append(dict(data["models"][0]))
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match="duplicate model id 'resnet50'"):
        load_catalog(path)


# ------------------------------------------------------------------ artefacts
def test_tiny_models_name_their_artefacts(catalog):
    assert dict(catalog.get("tiny-cnn").artefacts) == {
        "torchscript": "models/tiny/tiny_cnn.pt", "onnx": "models/tiny/tiny_cnn.onnx"}
    assert dict(catalog.get("tiny-llm").artefacts) == {"hf_dir": "models/tiny/tiny_llm"}
    assert dict(catalog.get("resnet50").artefacts) == {}


def test_artefacts_resolve_at_use_time(catalog, tmp_path):
    with pytest.raises(FileNotFoundError, match="'resnet50' names no onnx artefact"):
        catalog.get("resnet50").artefact("onnx")
    relative = replace(catalog.get("tiny-cnn"), artefacts={"onnx": "models/catalog.yaml"})
    assert relative.artefact("onnx") == find_resource("models/catalog.yaml")
    missing = replace(catalog.get("tiny-cnn"), artefacts={"onnx": str(tmp_path / "m.onnx")})
    with pytest.raises(FileNotFoundError, match="onnx artefact not found.*make_models.py"):
        missing.artefact("onnx")
    (tmp_path / "m.onnx").write_bytes(b"")          # appears later: found then
    assert missing.artefact("onnx") == tmp_path / "m.onnx"
