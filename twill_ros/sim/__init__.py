"""Digital twin: workloads and the discrete-event simulator driving the core scheduler."""

from twill_ros.native import use_native

use_native(__name__, __path__)
