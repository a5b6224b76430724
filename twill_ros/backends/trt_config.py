"""What a TensorRT engine build is asked to do, decided without TensorRT (so it is tested anywhere).

Parameters follow Isaac ROS's TensorRT node (``model_file_path``, ``engine_file_path``,
``force_engine_update``, ``dla_core`` with -1 = GPU, ``enable_fp16``, ``max_workspace_size``;
ros_jetson_conventions.md A1) plus ``enable_int8``. The unit decides the DLA core: ``gpu`` ->
-1, ``dla0`` -> 0, ``dla1`` -> 1. A DLA build sets the default device type DLA, the core, GPU
fallback and FP16/INT8 (the DLA runs nothing else; ros_jetson_conventions.md D). Engines are
cached per (model, ONNX content, unit, precisions and workspace, TensorRT version, catalog
input shapes): a plan is only valid for the TensorRT version and the device (GPU or DLA core)
it was built for, and takes only the shapes it was built for.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twill_ros.core.onnx_analysis import OnnxAnalysis

if TYPE_CHECKING:
    from twill_ros.core.catalog import TensorSpec
    from twill_ros.core.platform import UnitSpec

DEFAULT_WORKSPACE_BYTES = 64 * 1024 * 1024   # Isaac ROS max_workspace_size default (64 MiB)
GPU = -1                                     # dla_core of a GPU build


@dataclass(frozen=True)
class EngineConfig:
    """One engine build, in Isaac ROS's parameter names.

    ``engine_file_path`` empty means "the cache path" (``engine_path``); ``enable_int8``
    needs a graph with Q/DQ scales (no calibrator is run), FP16 then covers the rest.
    """

    model_file_path: str
    engine_file_path: str = ""
    force_engine_update: bool = False
    dla_core: int = GPU
    enable_fp16: bool = True
    enable_int8: bool = False
    max_workspace_size: int = DEFAULT_WORKSPACE_BYTES

    def __post_init__(self) -> None:
        if self.dla_core < GPU:
            raise ValueError(f"dla_core must be -1 (GPU) or a DLA core index, got {self.dla_core}")
        if self.uses_dla and not (self.enable_fp16 or self.enable_int8):
            raise ValueError(f"a DLA build (dla_core {self.dla_core}) needs enable_fp16 or "
                             f"enable_int8: the DLA runs only FP16 and INT8")
        if self.max_workspace_size <= 0:
            raise ValueError(f"max_workspace_size must be > 0, got {self.max_workspace_size}")

    @property
    def uses_dla(self) -> bool:
        return self.dla_core != GPU

    @property
    def precision(self) -> str:
        """The lowest precision the build allows: int8 | fp16 | fp32."""
        return "int8" if self.enable_int8 else "fp16" if self.enable_fp16 else "fp32"

    @property
    def build_settings(self) -> str:
        """What, besides the device, shapes the plan: the precisions the builder may use
        (``int8+fp16`` and ``int8`` differ: the latter runs the rest in FP32) and the
        workspace limit (which bounds the tactics it may choose)."""
        allowed = [name for name, on in (("int8", self.enable_int8), ("fp16", self.enable_fp16))
                   if on]
        return f"{'+'.join(allowed) or 'fp32'}_ws{self.max_workspace_size}"

    @classmethod
    def for_unit(cls, unit: UnitSpec, model_file_path: str,
                 params: Mapping[str, Any] | None = None) -> EngineConfig:
        """The config for ``unit`` from Isaac-style ``params``; the unit fixes ``dla_core``
        (a conflicting ``dla_core`` parameter is an error, not silently overridden)."""
        params = dict(params or {})
        known = {f.name for f in fields(cls)} - {"model_file_path"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown engine parameter(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        core = dla_core_of(unit)
        if params.setdefault("dla_core", core) != core:
            raise ValueError(f"dla_core={params['dla_core']} conflicts with unit {unit.name} "
                             f"(dla_core {core})")
        return cls(model_file_path=model_file_path, **params)


@dataclass(frozen=True)
class BuilderSettings:
    """What to set on a TensorRT IBuilderConfig; names are ``trt.BuilderFlag`` /
    ``trt.DeviceType`` members, so the build applies them with ``getattr``."""

    flags: tuple[str, ...]
    default_device_type: str            # GPU | DLA
    dla_core: int | None                # IBuilderConfig.DLA_core (DLA builds only)
    workspace_bytes: int                # memory pool limit of MemoryPoolType.WORKSPACE


@dataclass(frozen=True)
class DlaEligibility:
    """Whether a graph should go to a DLA, why not, and the precision to build it in."""

    eligible: bool
    reasons: tuple[str, ...]
    precision: str                      # int8 (the graph has Q/DQ scales) | fp16


def dla_core_of(unit: UnitSpec) -> int:
    """``gpu`` units -> -1; ``dla<k>`` units -> k; other units cannot run TensorRT."""
    if unit.kind == "gpu":
        return GPU
    match = re.fullmatch(r"\D*(\d+)", unit.name)
    if unit.kind == "dla" and match:
        return int(match.group(1))
    raise ValueError(f"unit {unit.name} (kind {unit.kind}) cannot run a TensorRT engine; "
                     f"it runs on gpu and dla<k> units")


def builder_flags(config: EngineConfig) -> BuilderSettings:
    """The builder settings for ``config``. A DLA build adds GPU_FALLBACK: layers the DLA
    cannot run go to the GPU instead of failing the build (and are logged as such)."""
    flags = [flag for flag, on in (("FP16", config.enable_fp16), ("INT8", config.enable_int8))
             if on]
    if config.uses_dla:
        flags.append("GPU_FALLBACK")
    return BuilderSettings(
        flags=tuple(flags),
        default_device_type="DLA" if config.uses_dla else "GPU",
        dla_core=config.dla_core if config.uses_dla else None,
        workspace_bytes=config.max_workspace_size,
    )


def cache_key(model: str, unit: str, build_settings: str, trt_version: str,
              model_digest: str = "", inputs: Sequence[TensorSpec] = ()) -> str:
    """File-name-safe key of an engine: a plan is valid only for this model (and this content
    of its ONNX file), device, build settings (``EngineConfig.build_settings``), TensorRT
    version and the catalog's input shapes (``inputs``: dynamic inputs are built for exactly
    those, see ``profile_shapes``, so a new batch size needs a new plan)."""
    raw = f"{model}__{unit}__{build_settings}__trt{trt_version}" + (
        f"__{model_digest}" if model_digest else "") + (
        f"__in{'-'.join('x'.join(map(str, t.shape)) for t in inputs)}" if inputs else "")
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)


def model_digest(path: str | Path) -> str:
    """The first 12 hex digits of the file's SHA-256: a regenerated or replaced model gets a
    new cache key whatever its modification time (``cp -p`` and ``rsync -a`` keep old ones)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def engine_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / f"{key}.plan"


def needs_build(config: EngineConfig, engine: Path) -> bool:
    """Build when forced or when no plan exists (a changed model has another cache key)."""
    return config.force_engine_update or not engine.is_file()


def profile_shapes(network_inputs: Mapping[str, tuple[int, ...]],
                   spec: Sequence[TensorSpec]) -> dict[str, tuple[int, ...]]:
    """The shape to build each dynamic network input for (min = opt = max): the catalog's
    input spec, which is also what requests are checked against. Without an optimization
    profile TensorRT refuses a network with dynamic inputs."""
    shapes = {t.name: tuple(t.shape) for t in spec}
    fixed = {}
    for name, dims in network_inputs.items():
        if all(d >= 0 for d in dims):
            continue
        shape = shapes.get(name)
        if shape is None or len(shape) != len(dims) or any(
                d >= 0 and d != s for d, s in zip(dims, shape, strict=True)):
            known = ", ".join(f"{n} {list(s)}" for n, s in shapes.items()) or "none"
            raise ValueError(f"network input '{name}' {list(dims)} is dynamic and the "
                             f"catalog's inputs give no matching shape for it ({known})")
        fixed[name] = shape
    return fixed


def dla_eligible(analysis: OnnxAnalysis) -> DlaEligibility:
    """DLA eligibility from the graph (Twill's affinity rule, OnnxAnalysis.dla_blockers)."""
    reasons = analysis.dla_blockers
    return DlaEligibility(eligible=not reasons, reasons=reasons,
                          precision="int8" if analysis.precision == "int8" else "fp16")
