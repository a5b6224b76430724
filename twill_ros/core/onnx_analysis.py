"""Read an ONNX graph into what Twill's model interpreter needs, with no design-time profiling.

Twill derives task affinity from the graph itself: parameters, layers, op types, FLOPs and the
share of operations the DLA supports (papers.md §1.1 "Model Interpreter", §5 "Affinity").
``profile_from_analysis`` turns that into a first ``ModelProfile`` the profiler then refines
from observed runtimes. ``onnx`` is imported only when a graph is actually read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from types import MappingProxyType
from typing import Any

from twill_ros.core.catalog import Catalog, ModelProfile, TensorSpec

# DLA compatibility matrix (op types). Derived from TensorRT's DLA supported-layer list and
# restrictions (docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/
# dla-layer-restrictions.html, cited in papers.md §4.5 and ros_jetson_conventions.md §D):
# convolution/deconvolution, fully connected, pooling, scale/batch-norm, the ReLU/sigmoid/tanh/
# clipped/leaky activations, element-wise arithmetic, concatenation, resize, LRN and
# transpose-free shuffles. Absent on purpose: multi-head attention, LayerNorm and GELU/Erf
# (papers.md §1.1), softmax, reductions, gathers, casts and shape arithmetic, which fall back to
# the GPU. ``MatMul`` counts only with a constant (weight) operand -- a fully connected layer --
# never activation x activation as in attention.
DLA_SUPPORTED_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "Gemm",
        "MatMul",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "BatchNormalization",
        "LRN",
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Sigmoid",
        "Tanh",
        "Clip",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Max",
        "Min",
        "Pow",
        "Sum",
        "Concat",
        "Resize",
        "Upsample",
        "Flatten",
        "Reshape",
        "Squeeze",
        "Unsqueeze",
    }
)
# Bookkeeping nodes TensorRT removes at build time: counted nowhere.
NO_OP_OPS = frozenset({"Constant", "Identity", "Dropout"})
# Ops that mark an encoder/decoder transformer rather than a CNN.
TRANSFORMER_OPS = frozenset(
    {
        "LayerNormalization",
        "Attention",
        "MultiHeadAttention",
        "SkipLayerNormalization",
        "Erf",
        "Gelu",
    }
)
# Share of nodes the DLA must support before a model is DLA-eligible (papers.md §5 suggests 0.9):
# beyond that, GPU fallback boundaries cost more than the DLA saves (reference §1c: one
# unsupported layer per block halved DLA throughput).
DLA_THRESHOLD = 0.9
# The catalog model whose measured latency calibrates FLOPs -> time, and its published size.
REFERENCE_MODEL = "resnet50"
REFERENCE_MACS = 4.1e9  # ResNet-50 v1.5 at 224x224, standard published figure
# Per-inference fixed cost kept out of the throughput fit (assumed: TensorRT enqueue + sync on
# the GPU, a cuDLA submit at twice that, a framework call on the CPU). Overhead-bound models
# barely follow compute (reference §6.2); the catalog's tiny-cnn entry uses these floors.
LAUNCH_FLOOR_S = MappingProxyType({"gpu": 0.1e-3, "dla": 0.2e-3, "cpu": 0.3e-3})
CONTEXT_MB = 16.0  # assumed per-engine execution context beyond weights/activations


@dataclass(frozen=True)
class OnnxAnalysis:
    """Static facts about one ONNX graph (FLOPs count a multiply-accumulate as 2)."""

    name: str
    path: str
    params: int
    nodes: int  # compute nodes (bookkeeping nodes excluded)
    op_counts: Mapping[str, int] = field(hash=False)
    macs: int
    flops: int
    static_shapes: bool  # every graph input has fixed positive dims
    dla_fraction: float  # share of compute NODES the DLA supports
    dla_flops_fraction: float  # share of FLOPs in DLA-supported nodes
    unsupported_ops: tuple[str, ...]  # op types with at least one DLA-unsupported node
    inputs: tuple[TensorSpec, ...]  # dynamic dims shown as 1
    precision: str  # fp32 | fp16 | int8 (weights / Q-DQ present)
    peak_activation_bytes: int
    kind: str  # dnn | transformer (guessed from op types)

    @property
    def dla_blockers(self) -> tuple[str, ...]:
        """Why the graph should not go to a DLA; none means DLA-eligible (FP16/INT8 is a build
        choice, not a property of the graph)."""
        reasons = []
        if not self.static_shapes:
            reasons.append("its inputs have dynamic shapes (the DLA needs static ones)")
        if self.dla_fraction < DLA_THRESHOLD:
            reasons.append(f"only {self.dla_fraction:.0%} of its nodes run on the DLA (needs "
                           f">= {DLA_THRESHOLD:.0%}); unsupported: "
                           f"{', '.join(self.unsupported_ops)}")
        return tuple(reasons)

    @property
    def dla_compatible(self) -> bool:
        return not self.dla_blockers


def analyze_onnx(path: str | Path) -> OnnxAnalysis:
    """Parse, shape-infer and summarise ``path``."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx import shape_inference

    try:
        model = onnx.load(str(path))
    except DecodeError as exc:
        raise ValueError(f"{path} is not an ONNX model (protobuf: {exc})") from None
    if not model.graph.node:    # an empty file parses as an empty model
        raise ValueError(f"{path} is not an ONNX model (no graph nodes)")
    try:
        model = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - analysis still works on the shapes the file carries
        pass
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    constants = set(initializers) | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }
    shapes = _shapes(graph)
    real_inputs = [i for i in graph.input if i.name not in initializers]

    op_counts: Counter[str] = Counter()
    macs = dla_macs = supported = 0
    unsupported: set[str] = set()
    for node in graph.node:
        if node.op_type in NO_OP_OPS:
            continue
        op_counts[node.op_type] += 1
        node_macs = _macs(node, shapes, initializers)
        macs += node_macs
        if _dla_supports(node, constants):
            supported += 1
            dla_macs += node_macs
        else:
            unsupported.add(node.op_type)
    nodes = sum(op_counts.values())
    return OnnxAnalysis(
        name=Path(path).stem,
        path=str(path),
        params=sum(prod(t.dims) for t in initializers.values()),
        nodes=nodes,
        op_counts=MappingProxyType(dict(sorted(op_counts.items()))),
        macs=macs,
        flops=2 * macs,
        static_shapes=all(_static(i) for i in real_inputs),
        dla_fraction=supported / nodes if nodes else 0.0,
        dla_flops_fraction=dla_macs / macs if macs else 0.0,
        unsupported_ops=tuple(sorted(unsupported)),
        inputs=tuple(_tensor_spec(i) for i in real_inputs),
        precision=_precision(graph, op_counts),
        peak_activation_bytes=_peak_activation_bytes(graph, initializers),
        kind="transformer" if TRANSFORMER_OPS & set(op_counts) else "dnn",
    )


def profile_from_analysis(analysis: OnnxAnalysis, catalog: Catalog) -> ModelProfile:
    """A first ``ModelProfile`` for a model the catalog does not know.

    Per unit kind k: ``L_k = floor_k + MACs / R_k`` with the effective rate
    ``R_k = REFERENCE_MACS / (L_ref,k - floor_k)`` taken from the catalog's measured
    ``resnet50`` (same precision and reference platform), so a graph with ResNet-50's MACs gets
    ResNet-50's latency and cost grows linearly in MACs. FLOPs-proportional scaling is the
    interpreter's only information before the first run; it over-estimates transformer GEMMs
    (denser than convolutions) and under-estimates depthwise/overhead-bound CNNs -- the
    profiler's EWMA corrects both from observed runtimes. Sensitivities and utilisation are
    the reference model's.
    """
    ref = catalog.get(REFERENCE_MODEL)
    kinds = [k for k in ref.unit_kinds if k != "dla" or analysis.dla_compatible]
    latency = {}
    for kind in kinds:
        floor = LAUNCH_FLOOR_S[kind]
        rate = REFERENCE_MACS / (ref.latency_s[kind] - floor)
        latency[kind] = floor + analysis.macs / rate
    weight_bytes = {"int8": 1, "fp16": 2}.get(ref.precision, 4)
    memory_mb = (
        analysis.params * weight_bytes + 2 * analysis.peak_activation_bytes
    ) / 1e6 + CONTEXT_MB
    shapes = ", ".join(t.description for t in analysis.inputs)
    return ModelProfile(
        id=analysis.name,
        kind=analysis.kind,
        precision=f"{ref.precision} (assumed, as the reference {ref.id})",
        input=f"ONNX inputs: {shapes}",
        inputs=analysis.inputs,
        dla_fraction=analysis.dla_fraction,
        dla_compatible=analysis.dla_compatible,
        latency_s=MappingProxyType(latency),
        freq_sensitivity=MappingProxyType({k: ref.freq_sensitivity[k] for k in kinds}),
        utilization=MappingProxyType({k: ref.utilization[k] for k in kinds}),
        memory_mb=memory_mb,
        sources=(
            f"ONNX graph analysis of {analysis.path}: {analysis.macs / 1e9:.3f} GMAC, "
            f"{analysis.params} params; latency scaled by MACs from catalog '{ref.id}'",
        ),
    )


# --------------------------------------------------------------------- helpers
def _shapes(graph: Any) -> dict[str, tuple[int, ...]]:
    """Known tensor shapes by name (unknown or symbolic dims become 1)."""
    shapes = {t.name: tuple(int(d) for d in t.dims) for t in graph.initializer}
    for info in (*graph.input, *graph.value_info, *graph.output):
        tensor = info.type.tensor_type
        if tensor.HasField("shape"):
            shapes[info.name] = tuple(
                d.dim_value if d.dim_value > 0 else 1 for d in tensor.shape.dim
            )
    return shapes


def _static(info: Any) -> bool:
    tensor = info.type.tensor_type
    return tensor.HasField("shape") and all(d.dim_value > 0 for d in tensor.shape.dim)


def _tensor_spec(info: Any) -> TensorSpec:
    from onnx import helper

    tensor = info.type.tensor_type
    dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    dims = tuple(d.dim_value if d.dim_value > 0 else 1 for d in tensor.shape.dim)
    return TensorSpec(info.name, dtype, dims)


def _macs(node: Any, shapes: Mapping[str, tuple[int, ...]], initializers: Mapping[str, Any]) -> int:
    """Multiply-accumulates of the compute-heavy ops; 0 for the rest or unknown shapes."""
    op = node.op_type
    out = shapes.get(node.output[0]) if node.output else None
    if op == "Conv":
        weight = shapes.get(node.input[1])
        return prod(out) * prod(weight[1:]) if out and weight else 0
    if op == "ConvTranspose":
        data, weight = shapes.get(node.input[0]), shapes.get(node.input[1])
        return prod(data) * prod(weight[1:]) if data and weight else 0
    if op == "Gemm":
        a = shapes.get(node.input[0])
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        return prod(out) * (a[0] if trans_a else a[-1]) if out and a else 0
    if op == "MatMul":
        a = shapes.get(node.input[0])
        return prod(out) * a[-1] if out and a else 0
    return 0


def _dla_supports(node: Any, constants: set[str]) -> bool:
    if node.op_type not in DLA_SUPPORTED_OPS:
        return False
    if node.op_type == "MatMul":  # fully connected only: one operand must be a weight
        return any(name in constants for name in node.input)
    return True


def _precision(graph: Any, op_counts: Mapping[str, int]) -> str:
    from onnx import TensorProto

    if op_counts.get("QuantizeLinear") or op_counts.get("DequantizeLinear"):
        return "int8"
    weight_types = Counter(t.data_type for t in graph.initializer if len(t.dims) > 1)
    if not weight_types:
        return "fp32"
    dominant = weight_types.most_common(1)[0][0]
    return {TensorProto.INT8: "int8", TensorProto.FLOAT16: "fp16"}.get(dominant, "fp32")


def _peak_activation_bytes(graph: Any, initializers: Mapping[str, Any]) -> int:
    """Largest single intermediate tensor, at 4 bytes per element (activation memory scale)."""
    largest = 0
    for info in (*graph.value_info, *graph.output):
        if info.name in initializers or not info.type.tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in info.type.tensor_type.shape.dim]
        largest = max(largest, prod(dims))
    return 4 * largest
