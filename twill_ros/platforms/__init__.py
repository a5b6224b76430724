"""Platform controls: measured power and real clocks for the scheduler node (Jetson, host)."""

from twill_ros.platforms.base import (
    CONTROLS,
    ControlStatus,
    PlatformControl,
    PowerReading,
    make_control,
)

__all__ = ["CONTROLS", "ControlStatus", "PlatformControl", "PowerReading", "make_control"]
