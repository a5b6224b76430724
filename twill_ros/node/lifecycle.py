"""Spinning and stopping nodes the same way in every entry point (Humble-compatible).

rclpy's own SIGINT handler shuts the context down at once, before a node can publish its
goodbyes; the entry points init rclpy with SignalHandlerOptions.NO and use these instead, so
the scheduler can give every live job a CANCELLED result before it exits.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

import rclpy
from rclpy.exceptions import InvalidParameterTypeException, ParameterException
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from twill_ros.errors import error_text


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (call from the main thread)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


SPIN_S = 0.05    # longest wait for a callback before the condition is asked again


def spin_while(executor: Executor, keep_going: Callable[[], bool],
               stop: threading.Event | None = None, timeout_s: float | None = None,
               wake_in: Callable[[], float] | None = None) -> None:
    """Spin until ``keep_going()`` is false, ``stop`` is set or ``timeout_s`` passes;
    ``wake_in()`` (seconds) asks the condition again that soon, for a condition that acts
    at given times (a replay publishing requests at their recorded offsets).

    The yield after each callback lets a MultiThreadedExecutor's pool threads start the task
    just handed to them. Without it, an rclpy from before the fixes discussed in
    ros2/rclpy#1452 and PR #1547 (such as the Kilted 9.1.2 wheels) keeps the GIL in the
    spinning thread, sees the queued task as ready again and re-submits it in a busy loop;
    the composed demo then missed its 30 Hz camera rate."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while keep_going() and not (stop is not None and stop.is_set()):
        if deadline is not None and time.monotonic() >= deadline:
            return
        wait = SPIN_S if wake_in is None else min(SPIN_S, max(0.0, wake_in()))
        executor.spin_once(timeout_sec=wait)
        time.sleep(0)   # releases the GIL; os.sched_yield did not before gh-96078


def spin_until_stopped(nodes: Sequence[Node], executor: Executor,
                       before_exit: Callable[[Executor], None] | None = None) -> None:
    """Spin ``nodes`` on ``executor`` until SIGINT/SIGTERM, run ``before_exit`` still
    spinning, clean up. A callback that raises stops the spin too: ``before_exit`` still
    runs (live jobs get their results, clocks go back), then the error propagates."""
    stop = stop_on_signals()
    for node in nodes:
        executor.add_node(node)
    try:
        try:
            spin_while(executor, lambda: True, stop)
        finally:
            if before_exit is not None:
                before_exit(executor)
    finally:
        executor.shutdown()
        for node in nodes:
            node.destroy_node()


# A bad parameter or a missing file/runtime while a node is built: said in one line, not a
# traceback.
STARTUP_ERRORS = (ValueError, KeyError, OSError, RuntimeError, ParameterException)


def startup_error_text(error: Exception) -> str:
    """What went wrong, and for a number of the other type how to write it: ROS parameter
    types are strict, so ``-p power_budget_w:=10`` (or ``power_budget_w: 10`` in a parameter
    file) is an integer, and ``-p max_queue:=500.0`` a double."""
    text = error_text(error)
    if isinstance(error, InvalidParameterTypeException):
        if "expecting type 'DOUBLE'" in text:
            text += " (write a double with a decimal point, e.g. 10.0)"
        elif "expecting type 'INTEGER'" in text:
            text += " (write a whole number without a decimal point, e.g. 500)"
    return text


def _interrupt_start_up(signum: int, _frame: object) -> None:
    """Unwind a node's start-up by KeyboardInterrupt, carrying the signal for the exit code."""
    raise KeyboardInterrupt(signum)


def node_main(factory: Callable[[], Node]) -> Callable[[list[str] | None], None]:
    """A console-script entry point: spin one node; its ``on_exit(executor)`` runs last.

    One thread is enough (and cheapest per callback): the nodes' callbacks never block,
    action goals wait as coroutines."""
    def main(args: list[str] | None = None) -> None:
        # Ctrl-C during start-up even when started with SIGINT ignored (a background job of
        # a script), where Python installs no KeyboardInterrupt handler of its own; SIGTERM
        # (systemd, a supervisor) alike, instead of dying with the machine half set up (an
        # nvpmodel mode set at start goes back as the node unwinds)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _interrupt_start_up)
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        name = getattr(factory, "__name__", "node")
        try:
            try:
                node = factory()
            except STARTUP_ERRORS as error:
                sys.exit(f"{name}: cannot start: {startup_error_text(error)}")
            except KeyboardInterrupt as interrupt:   # while it starts (an engine build is long)
                print(f"{name}: start-up interrupted", file=sys.stderr)
                sys.exit(128 + (interrupt.args[0] if interrupt.args else signal.SIGINT))
            spin_until_stopped([node], SingleThreadedExecutor(), before_exit=node.on_exit)
        finally:
            rclpy.try_shutdown()
    return main
