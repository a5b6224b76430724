"""TensorData <-> numpy, checked against the catalog's input spec (shared by the real backends)."""

from __future__ import annotations

import math

import numpy as np

from twill_ros.backends.base import Payload, TensorData
from twill_ros.core.catalog import ModelProfile

# wire dtype (twill_msgs/Tensor) -> little-endian numpy dtype
DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<")
    for name in ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")
}


def input_arrays(payload: Payload, profile: ModelProfile) -> list[np.ndarray]:
    """The payload's inputs as arrays in the spec's order; no inputs -> zeros of the spec
    (synthetic input, as the twin runs). A mismatch raises ValueError naming the tensor."""
    if not payload.inputs:
        return [np.zeros(spec.shape, dtype=_dtype(spec.dtype)) for spec in profile.inputs]
    if len(payload.inputs) != len(profile.inputs):
        raise ValueError(f"model '{profile.id}' takes {len(profile.inputs)} input tensor(s) "
                         f"({', '.join(s.name for s in profile.inputs)}), "
                         f"got {len(payload.inputs)}")
    arrays = []
    for tensor, spec in zip(payload.inputs, profile.inputs, strict=True):
        if (tensor.name or spec.name) != spec.name or tensor.dtype != spec.dtype \
                or tuple(tensor.shape) != spec.shape:
            raise ValueError(f"input '{tensor.name}' {tensor.dtype}{list(tensor.shape)} does not "
                             f"match model '{profile.id}' input '{spec.name}' "
                             f"{spec.dtype}{list(spec.shape)}")
        dtype = _dtype(spec.dtype)
        if len(tensor.data) != math.prod(spec.shape) * dtype.itemsize:
            raise ValueError(f"input '{spec.name}': {len(tensor.data)} bytes, expected "
                             f"{math.prod(spec.shape) * dtype.itemsize}")
        arrays.append(np.frombuffer(tensor.data, dtype=dtype).reshape(spec.shape))
    return arrays


def tensor_data(name: str, array: np.ndarray) -> TensorData:
    """An output array as TensorData (little-endian, row-major)."""
    dtype = array.dtype.name
    if dtype not in DTYPES:
        raise ValueError(f"output '{name}' has dtype {dtype}, which a Tensor cannot carry")
    data = np.ascontiguousarray(array, dtype=DTYPES[dtype]).tobytes()
    return TensorData(name, dtype, tuple(int(d) for d in array.shape), data)


def _dtype(name: str) -> np.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"dtype '{name}' is not one of {', '.join(DTYPES)}") from None
