"""Execution backends: where the scheduler node's decisions turn into running jobs."""

from twill_ros.backends.base import (
    BACKENDS,
    Backend,
    Clock,
    EventSink,
    Output,
    Payload,
    TensorData,
    make_backend,
)

__all__ = ["BACKENDS", "Backend", "Clock", "EventSink", "Output", "Payload", "TensorData",
           "make_backend"]
