"""ONNX interpreter: hand-checked FLOPs, DLA compatibility (CNN vs attention), estimates, CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from twill_ros.cli import main  # noqa: E402
from twill_ros.core.catalog import load_catalog  # noqa: E402
from twill_ros.core.onnx_analysis import (  # noqa: E402
    DLA_SUPPORTED_OPS,
    REFERENCE_MACS,
    analyze_onnx,
    profile_from_analysis,
)


def _init(name, shape, value=0.01):
    return numpy_helper.from_array(np.full(shape, value, dtype=np.float32), name)


def _save(graph, path, opset=17):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def tiny_cnn(path, batch=1):
    """input[b,3,32,32] -> Conv 8x3x3 (pad 1) -> Relu -> MaxPool 2 -> Flatten -> Gemm 2048->10."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])
    nodes = [
        helper.make_node(
            "Conv", ["input", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f1"], axis=1),
        helper.make_node("Gemm", ["f1", "w2", "b2"], ["logits"], transB=1),
    ]
    inits = [
        _init("w1", [8, 3, 3, 3]),
        _init("b1", [8]),
        _init("w2", [10, 2048]),
        _init("b2", [10]),
    ]
    return _save(helper.make_graph(nodes, "tiny_cnn", [x], [y], inits), path)


def attention_block(path):
    """LayerNorm -> Q/K/V projections -> softmax(QK^T) V -> output projection -> Erf-GELU."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 64])
    nodes = [
        helper.make_node("LayerNormalization", ["x", "ln_s", "ln_b"], ["h"], axis=-1),
        helper.make_node("MatMul", ["h", "wq"], ["q"]),
        helper.make_node("MatMul", ["h", "wk"], ["k"]),
        helper.make_node("MatMul", ["h", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "v"], ["ctx"]),
        helper.make_node("MatMul", ["ctx", "wo"], ["o"]),
        helper.make_node("Div", ["o", "sqrt2"], ["o_s"]),
        helper.make_node("Erf", ["o_s"], ["erf"]),
        helper.make_node("Add", ["erf", "one"], ["erf1"]),
        helper.make_node("Mul", ["o", "erf1"], ["g"]),
        helper.make_node("Mul", ["g", "half"], ["y"]),
    ]
    inits = [
        _init("ln_s", [64], 1.0),
        _init("ln_b", [64], 0.0),
        _init("wq", [64, 64]),
        _init("wk", [64, 64]),
        _init("wv", [64, 64]),
        _init("wo", [64, 64]),
        _init("sqrt2", [], 2**0.5),
        _init("one", [], 1.0),
        _init("half", [], 0.5),
    ]
    return _save(helper.make_graph(nodes, "attention", [x], [y], inits), path)


@pytest.fixture
def cnn_path(tmp_path):
    return tiny_cnn(tmp_path / "tiny_cnn.onnx")


@pytest.fixture
def attn_path(tmp_path):
    return attention_block(tmp_path / "attention.onnx")


def test_tiny_cnn_counts_and_flops(cnn_path):
    a = analyze_onnx(cnn_path)
    conv_macs = (8 * 32 * 32) * (3 * 3 * 3)  # output elements x (Cin/g * kH * kW)
    gemm_macs = 10 * 2048
    assert a.macs == conv_macs + gemm_macs == 241_664
    assert a.flops == 2 * a.macs
    assert a.params == 8 * 27 + 8 + 10 * 2048 + 10
    assert a.nodes == 5
    assert dict(a.op_counts) == {"Conv": 1, "Flatten": 1, "Gemm": 1, "MaxPool": 1, "Relu": 1}
    assert a.inputs[0].name == "input" and a.inputs[0].shape == (1, 3, 32, 32)
    assert a.inputs[0].dtype == "float32" and a.precision == "fp32"
    assert a.kind == "dnn" and a.name == "tiny_cnn"


def test_tiny_cnn_is_dla_compatible(cnn_path):
    a = analyze_onnx(cnn_path)
    assert a.static_shapes
    assert a.dla_fraction == 1.0 and a.dla_flops_fraction == 1.0
    assert a.unsupported_ops == ()
    assert a.dla_compatible


def test_attention_block_is_not_dla_compatible(attn_path):
    a = analyze_onnx(attn_path)
    assert a.kind == "transformer"
    assert {"LayerNormalization", "Softmax", "Erf", "Transpose", "MatMul"} <= set(a.unsupported_ops)
    # 14 nodes; supported: 4 weight MatMuls + Div + Add + 2 Mul = 8
    assert a.nodes == 14
    assert a.dla_fraction == pytest.approx(8 / 14)
    assert not a.dla_compatible
    projection = 16 * 64 * 64
    attention = 16 * 16 * 64 + 16 * 64 * 16
    assert a.macs == 4 * projection + attention
    assert a.dla_flops_fraction == pytest.approx(4 * projection / a.macs)


def test_dynamic_batch_makes_a_cnn_dla_ineligible(tmp_path):
    a = analyze_onnx(tiny_cnn(tmp_path / "dyn.onnx", batch="N"))
    assert not a.static_shapes
    assert a.dla_fraction == 1.0 and not a.dla_compatible
    assert a.inputs[0].shape == (1, 3, 32, 32)  # symbolic dims shown as 1
    assert a.macs == 241_664  # ... and counted once


def test_dla_matrix_excludes_transformer_ops():
    assert not {"LayerNormalization", "Softmax", "Erf", "Gelu", "Attention"} & DLA_SUPPORTED_OPS
    assert {"Conv", "Relu", "MaxPool", "Gemm", "BatchNormalization"} <= DLA_SUPPORTED_OPS


def test_profile_scales_latency_by_macs_from_the_reference(cnn_path, attn_path):
    catalog = load_catalog()
    ref = catalog.get("resnet50")
    a = analyze_onnx(cnn_path)
    as_big_as_ref = profile_from_analysis(dataclasses.replace(a, macs=int(REFERENCE_MACS)), catalog)
    for kind in ("gpu", "dla", "cpu"):
        assert as_big_as_ref.latency_s[kind] == pytest.approx(ref.latency_s[kind])
    tiny = profile_from_analysis(a, catalog)
    assert (
        tiny.id == "tiny_cnn" and tiny.dla_compatible and tiny.unit_kinds == ("gpu", "dla", "cpu")
    )
    assert tiny.latency_s["gpu"] < 0.2e-3 and tiny.latency_s["gpu"] < tiny.latency_s["dla"]
    attn = profile_from_analysis(analyze_onnx(attn_path), catalog)
    assert attn.kind == "transformer" and attn.unit_kinds == ("gpu", "cpu")
    assert "dla" not in attn.latency_s


def test_analyze_command_prints_and_writes_json(cnn_path, tmp_path, capsys):
    out = tmp_path / "analysis.json"
    assert main(["analyze", str(cnn_path), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "DLA eligible yes" in text and "241" in text
    data = json.loads(out.read_text())
    assert data["macs"] == 241_664 and data["dla_compatible"] is True
    assert set(data["estimated_latency_ms"]) == {"gpu", "dla", "cpu"}


def test_analyze_command_explains_dla_rejection(attn_path, capsys):
    assert main(["analyze", str(attn_path)]) == 0
    text = capsys.readouterr().out
    assert "DLA eligible no" in text and "LayerNormalization" in text


def test_analyze_command_says_dynamic_dims_are_counted_at_size_1(tmp_path, capsys):
    assert main(["analyze", str(tiny_cnn(tmp_path / "dyn.onnx", batch="N"))]) == 0
    assert "static shapes: no (dynamic dims shown and counted as 1" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["models: []\n", ""])    # an empty file parses as a model
def test_analyze_and_profile_refuse_a_file_that_is_not_onnx(tmp_path, capsys, text):
    bogus = tmp_path / "catalog.onnx"
    bogus.write_text(text)
    assert main(["analyze", str(bogus)]) == 2
    assert main(["profile", "--model", str(bogus)]) == 2
    assert capsys.readouterr().err.count(f"twill: error: {bogus} is not an ONNX model") == 2


def test_profile_refuses_an_onnx_file_named_like_a_catalog_model(cnn_path, tmp_path, capsys):
    shadow = tmp_path / "resnet50.onnx"
    shadow.write_bytes(cnn_path.read_bytes())
    assert main(["profile", "--model", str(shadow)]) == 2
    assert capsys.readouterr().err == (
        f"twill: error: {shadow}: model id 'resnet50' is already in the catalog; rename the "
        "file to profile it as an unknown model\n")


def test_profile_command_accepts_an_onnx_model(cnn_path, tmp_path):
    out = tmp_path / "profile.json"
    assert main(["profile", "--model", str(cnn_path), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["model"] == "tiny_cnn"
    assert [row["unit"] for row in data["units"]] == ["gpu", "dla0", "dla1", "cpu_a", "cpu_b"]
