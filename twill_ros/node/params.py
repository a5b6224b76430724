"""Parameter descriptors for the scheduler and the demo nodes (light: rcl_interfaces only)."""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


def descriptor(description: str, *, read_only: bool = False, float_range=None,
               int_range=None, choices: tuple[str, ...] = (),
               dynamic_typing: bool = False) -> ParameterDescriptor:
    """A descriptor with the description (and ``choices``, if any), read-only flag and range;
    ``dynamic_typing`` for a value that may come as a name or a number."""
    text = description + (f" One of: {', '.join(choices)}." if choices else "")
    desc = ParameterDescriptor(description=text, read_only=read_only,
                               dynamic_typing=dynamic_typing)
    if float_range:
        desc.floating_point_range = [FloatingPointRange(
            from_value=float(float_range[0]), to_value=float(float_range[1]), step=0.0)]
    if int_range:
        desc.integer_range = [IntegerRange(
            from_value=int(int_range[0]), to_value=int(int_range[1]), step=1)]
    return desc
