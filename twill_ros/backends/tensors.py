"""TensorData <-> numpy, checked against the catalog's input spec (shared by the real backends)."""

from __future__ import annotations

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
    profile.check_inputs(payload.inputs)
    arrays = []
    for tensor, spec in zip(payload.inputs, profile.inputs, strict=True):
        dtype = _dtype(spec.dtype)
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
