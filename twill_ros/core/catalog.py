"""Model catalog: per-model latency / token rates per unit kind, as the twin and scheduler see them.

Figures are for one job alone at the unit's maximum frequency on the catalog's reference
platform, under the conditions stated in the entry (precision, input). ``models/catalog.yaml``
cites a source or a derivation for each.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from twill_ros.core.platform import UNIT_KINDS
from twill_ros.resources import (
    Fields,
    existing_file,
    find_resource,
    load_yaml_mapping,
    search_roots,
)

MODEL_KINDS = ("dnn", "transformer", "llm")
# Files a model can be run from: a TorchScript module, an ONNX graph (TensorRT builds from it),
# a prebuilt TensorRT engine, a Hugging Face-style local directory (config + weights + tokenizer).
ARTEFACT_KINDS = ("torchscript", "onnx", "engine", "hf_dir")
LLM_UNIT_KINDS = ("gpu", "cpu")  # the DLA cannot run attention / LayerNorm / GELU
_EMPTY: Mapping[str, float] = MappingProxyType({})


class CatalogError(ValueError):
    """An invalid catalog file; the message names the file, the model id and the field."""


# Bytes per element of the dtypes a twill_msgs/Tensor may carry (little-endian on the wire).
DTYPE_SIZES = {
    "float64": 8, "float32": 4, "float16": 2,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def description(self) -> str:
        """``name dtype[AxBxC]``, as the analyze report and derived profiles show it."""
        return f"{self.name} {self.dtype}[{'x'.join(map(str, self.shape))}]"

    def check(self, tensor) -> None:
        """ValueError naming what differs: ``tensor`` has name, dtype, shape and data bytes
        (a twill_msgs/Tensor or a backend TensorData); an empty name means this input."""
        label = f"input '{tensor.name or self.name}'"
        if tensor.name and tensor.name != self.name:
            raise ValueError(f"{label}: the model expects input '{self.name}'")
        if tensor.dtype != self.dtype:
            raise ValueError(f"{label}: dtype '{tensor.dtype}' does not match the model's "
                             f"'{self.dtype}'")
        shape = tuple(int(d) for d in tensor.shape)
        if shape != self.shape:
            raise ValueError(f"{label}: shape {list(shape)} does not match the model's "
                             f"{list(self.shape)}")
        expected = math.prod(shape) * DTYPE_SIZES[self.dtype]
        if len(tensor.data) != expected:
            raise ValueError(f"{label}: data has {len(tensor.data)} bytes but shape "
                             f"{list(shape)} x {self.dtype} needs {expected}")


@dataclass(frozen=True)
class ModelProfile:
    """What the scheduler knows about one model (times in seconds, per unit kind)."""

    id: str
    kind: str
    precision: str
    input: str
    inputs: tuple[TensorSpec, ...]
    dla_fraction: float
    dla_compatible: bool
    latency_s: Mapping[str, float] = field(default_factory=lambda: _EMPTY, hash=False)
    prefill_tokens_per_s: Mapping[str, float] = field(default_factory=lambda: _EMPTY, hash=False)
    decode_tokens_per_s: Mapping[str, float] = field(default_factory=lambda: _EMPTY, hash=False)
    freq_sensitivity: Mapping[str, float] = field(default_factory=lambda: _EMPTY, hash=False)
    utilization: Mapping[str, float] = field(default_factory=lambda: _EMPTY, hash=False)
    memory_mb: float = 0.0
    default_prompt_tokens: int = 0
    default_max_new_tokens: int = 0
    # llm: prompt + generated tokens one sequence may hold; 0 = not stated (nothing checked)
    context_tokens: int = 0
    sources: tuple[str, ...] = ()
    # llm only: prefill is compute-bound and scales with clock more than (memory-bound) decode,
    # whose sensitivity is ``freq_sensitivity``; empty -> use ``freq_sensitivity``.
    prefill_freq_sensitivity: Mapping[str, float] = field(
        default_factory=lambda: _EMPTY, hash=False
    )
    # artefact kind (ARTEFACT_KINDS) -> path, absolute or relative to the checkout / ROS share
    artefacts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def artefact(self, kind: str) -> Path:
        """The existing file or directory of artefact ``kind``, resolved now (the generated tiny
        models appear after the catalog is loaded); FileNotFoundError says what is missing."""
        if kind not in self.artefacts:
            named = ", ".join(self.artefacts) or "none"
            raise FileNotFoundError(f"model '{self.id}' names no {kind} artefact in the catalog "
                                    f"(it names: {named})")
        path = Path(self.artefacts[kind])
        candidates = [path] if path.is_absolute() else [root / path for root in search_roots()]
        for candidate in candidates:
            if candidate.exists():
                return candidate
        tried = ", ".join(str(c) for c in candidates)
        raise FileNotFoundError(f"model '{self.id}': {kind} artefact not found (tried {tried}); "
                                f"the tiny models are generated by scripts/make_models.py")

    def check_inputs(self, tensors) -> None:
        """ValueError unless ``tensors`` match the input spec in number and order."""
        if len(tensors) != len(self.inputs):
            raise ValueError(
                f"model '{self.id}' takes {len(self.inputs)} input tensor(s) "
                f"({', '.join(s.name for s in self.inputs)}), got {len(tensors)}")
        for tensor, spec in zip(tensors, self.inputs, strict=True):
            spec.check(tensor)

    @property
    def is_llm(self) -> bool:
        return self.kind == "llm"

    def context_overflow(self, prompt_tokens: int, max_new_tokens: int) -> str | None:
        """Why a sequence of that many tokens does not fit this LLM's context, or None."""
        if self.context_tokens and prompt_tokens + max_new_tokens > self.context_tokens:
            return (f"prompt ({prompt_tokens} tokens) + max_new_tokens ({max_new_tokens}) "
                    f"exceed the {self.context_tokens}-token context of {self.id}")
        return None

    @property
    def unit_kinds(self) -> tuple[str, ...]:
        """Unit kinds this model can run on (``dla`` only when ``dla_compatible``)."""
        rates = self.decode_tokens_per_s if self.is_llm else self.latency_s
        return tuple(k for k in UNIT_KINDS if k in rates and (k != "dla" or self.dla_compatible))


class Catalog:
    """Model profiles by id; ``add`` registers profiles derived at run time (e.g. from ONNX)."""

    def __init__(
        self,
        profiles: Mapping[str, ModelProfile] | None = None,
        reference_platform: str = "",
        path: str = "",
    ) -> None:
        self.reference_platform = reference_platform
        self.path = path
        self._profiles: dict[str, ModelProfile] = dict(profiles or {})

    def get(self, model_id: str) -> ModelProfile:
        try:
            return self._profiles[model_id]
        except KeyError:
            raise KeyError(
                f"model {model_id!r} is not in the catalog "
                f"({self.path or 'in memory'}); known: {', '.join(self.ids)}"
            ) from None

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._profiles)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._profiles

    def __iter__(self) -> Iterator[ModelProfile]:
        return iter(self._profiles.values())

    def __len__(self) -> int:
        return len(self._profiles)

    def add(self, profile: ModelProfile) -> None:
        self._profiles[profile.id] = profile


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load ``models/catalog.yaml`` (``None``) or the given catalog file."""
    file = find_resource("models/catalog.yaml") if path is None else existing_file(
        Path(path), "catalog file")
    top = load_yaml_mapping(file, CatalogError)
    top.unknown_keys(("reference_platform", "models"))
    profiles: dict[str, ModelProfile] = {}
    for entry in top.entries("models", "model", "id"):
        profile = _profile(entry)
        if profile.id in profiles:
            entry.fail("id", f"duplicate model id {profile.id!r}")
        profiles[profile.id] = profile
    return Catalog(profiles, top.string("reference_platform"), str(file))


_FIELDS = (
    "id",
    "kind",
    "precision",
    "input",
    "inputs",
    "dla_fraction",
    "dla_compatible",
    "latency_ms",
    "prefill_tokens_per_s",
    "decode_tokens_per_s",
    "freq_sensitivity",
    "prefill_freq_sensitivity",
    "utilization",
    "memory_mb",
    "default_prompt_tokens",
    "default_max_new_tokens",
    "context_tokens",
    "sources",
    "artefacts",
)


def _profile(f: Fields) -> ModelProfile:
    f.unknown_keys(_FIELDS)
    kind = f.string("kind", choices=MODEL_KINDS)
    llm = kind == "llm"
    dla_compatible = f.boolean("dla_compatible")
    if llm:
        if "latency_ms" in f.data:
            f.fail("latency_ms", "an llm gives prefill_tokens_per_s / decode_tokens_per_s instead")
        if dla_compatible:
            f.fail("dla_compatible", "an llm cannot run on the DLA")
        prefill = f.number_map("prefill_tokens_per_s", keys=LLM_UNIT_KINDS, positive=True)
        decode = f.number_map("decode_tokens_per_s", keys=LLM_UNIT_KINDS, positive=True)
        if set(prefill) != set(decode):
            f.fail("decode_tokens_per_s", "must name the same unit kinds as prefill_tokens_per_s")
        kinds = set(decode)
        latency: dict[str, float] = {}
    else:
        for key in (
            "prefill_tokens_per_s",
            "decode_tokens_per_s",
            "prefill_freq_sensitivity",
            "default_prompt_tokens",
            "default_max_new_tokens",
            "context_tokens",
        ):
            if key in f.data:
                f.fail(key, "only an llm has this field")
        latency = {
            k: v / 1000.0
            for k, v in f.number_map("latency_ms", keys=UNIT_KINDS, positive=True).items()
        }
        prefill = decode = {}
        kinds = set(latency)
        if dla_compatible and "dla" not in latency:
            f.fail("latency_ms", "a dla_compatible model needs a dla latency")
    if not kinds:
        f.fail("decode_tokens_per_s" if llm else "latency_ms", "must give at least one unit kind")
    sensitivity = _per_kind(f, "freq_sensitivity", kinds)
    utilization = _per_kind(f, "utilization", kinds)
    prefill_sensitivity = _per_kind(f, "prefill_freq_sensitivity", kinds, {}) if llm else {}
    prompt, new, context = [f.integer(key, minimum=1) if llm else 0 for key in
                            ("default_prompt_tokens", "default_max_new_tokens", "context_tokens")]
    if prompt + new > context:
        f.fail("context_tokens", "must hold default_prompt_tokens + default_max_new_tokens")
    return ModelProfile(
        id=f.string("id"),
        kind=kind,
        precision=f.string("precision"),
        input=f.string("input"),
        inputs=tuple(_tensor(t) for t in f.entries("inputs", "input tensor")),
        dla_fraction=f.number("dla_fraction", minimum=0.0, maximum=1.0),
        dla_compatible=dla_compatible,
        latency_s=MappingProxyType(latency),
        prefill_tokens_per_s=MappingProxyType(prefill),
        decode_tokens_per_s=MappingProxyType(decode),
        freq_sensitivity=MappingProxyType(sensitivity),
        utilization=MappingProxyType(utilization),
        memory_mb=f.number("memory_mb", positive=True),
        default_prompt_tokens=prompt,
        default_max_new_tokens=new,
        context_tokens=context,
        sources=tuple(_sources(f)),
        prefill_freq_sensitivity=MappingProxyType(prefill_sensitivity),
        artefacts=MappingProxyType(_artefacts(f)),
    )


def _artefacts(f: Fields) -> dict[str, str]:
    raw = f.mapping("artefacts", {})
    for kind, path in raw.items():
        if kind not in ARTEFACT_KINDS:
            f.fail(f"artefacts.{kind}", f"unknown artefact; expected one of "
                                        f"{', '.join(ARTEFACT_KINDS)}")
        if not isinstance(path, str) or not path.strip():
            f.fail(f"artefacts.{kind}", f"must be a non-empty path string, got {path!r}")
    return {str(k): v for k, v in raw.items()}


def _per_kind(f: Fields, key: str, kinds: set[str], *default: dict[str, float]) -> dict[str, float]:
    """A ``{unit kind: fraction in [0, 1]}`` map covering every kind the model runs on."""
    values = f.number_map(key, *default, keys=UNIT_KINDS, minimum=0.0, maximum=1.0)
    if values and set(values) != kinds:
        missing = sorted(kinds - set(values)) or sorted(set(values) - kinds)
        f.fail(
            key,
            f"must give exactly the unit kinds the model runs on ({', '.join(sorted(kinds))}); "
            f"mismatch: {', '.join(missing)}",
        )
    return values


def _sources(f: Fields) -> list[str]:
    sources = f.sequence("sources")
    if not sources or not all(isinstance(s, str) and s.strip() for s in sources):
        f.fail("sources", "must be a non-empty list of strings")
    return sources


def _tensor(f: Fields) -> TensorSpec:
    f.unknown_keys(("name", "dtype", "shape"))
    shape = f.sequence("shape")
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in shape):
        f.fail("shape", f"must be a non-empty list of positive integers, got {shape!r}")
    return TensorSpec(f.string("name"), f.string("dtype", choices=tuple(DTYPE_SIZES)),
                      tuple(shape))
