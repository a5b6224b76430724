"""Real ROS 2 processes for tests: the scheduler as its installed entry point, a client node.

Every process gets a ROS_DOMAIN_ID of this test run and discovery limited to localhost, so
parallel runs cannot answer each other and nothing leaves the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

from twill_ros.loopback import child_env

REPO = Path(__file__).resolve().parents[1]
PARAMS_FILE = REPO / "config" / "twill.yaml"


def load_launch_file(name: str):
    """generate_launch_description() of launch/<name> (needs the launch packages)."""
    import importlib.util

    path = REPO / "launch" / name
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_domain_id() -> int:
    """A domain for this pytest run (ids 10..99 stay clear of the default 0)."""
    return 10 + os.getpid() % 90


test_domain_id.__test__ = False  # a helper, not a test


def image_tensor(shape=(1, 3, 32, 32), dtype="float32", name="input", nbytes=None):
    """A zero-filled twill_msgs/Tensor (tiny-cnn's input by default); ``nbytes`` overrides the
    data length shape x dtype would give."""
    import math

    from twill_msgs.msg import Tensor

    size = math.prod(shape) * 4 if nbytes is None else nbytes
    return Tensor(name=name, shape=list(shape), dtype=dtype, data=bytes(size))


class NodeProcess:
    """An installed node entry point (``EXE --ros-args [-r __ns:=NS] [--params-file F] -p
    ...``) in its own process, its output collected in ``log``."""

    def __init__(self, executable: str, domain_id: int,
                 params: dict[str, object] | None = None,
                 params_file: Path | None = None, namespace: str | None = None) -> None:
        exe = shutil.which(executable)
        if exe is None:
            raise RuntimeError(f"{executable} is not on PATH: run scripts/setup.sh and "
                               "source env.sh first")
        self.name = executable
        args = [exe, "--ros-args"]
        if namespace is not None:
            args += ["-r", f"__ns:={namespace}"]
        if params_file is not None:
            args += ["--params-file", str(params_file)]
        for name, value in (params or {}).items():
            args += ["-p", f"{name}:={value}"]
        self.log: list[str] = []
        self.proc = subprocess.Popen(args, env=child_env(domain_id), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.log.append(line.rstrip())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log[-lines:])

    def exited(self, timeout_s: float = 60.0) -> tuple[int, str]:
        """Wait for a process that stops by itself (a refused start): its exit code and
        whole log."""
        code = self.proc.wait(timeout_s)
        self._reader.join(2.0)
        return code, "\n".join(self.log)

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 15.0) -> int:
        if self.alive():
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired as timeout:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} did not exit after {signal.Signals(sig).name}:"
                                 f"\n{self.tail()}") from timeout
        finally:
            self._reader.join(2.0)


class SchedulerProcess(NodeProcess):
    """``twill_scheduler --ros-args --params-file config/twill.yaml -p ...``."""

    def __init__(self, domain_id: int, params: dict[str, object] | None = None,
                 params_file: Path = PARAMS_FILE, namespace: str | None = None) -> None:
        super().__init__("twill_scheduler", domain_id, params, params_file, namespace)


class ClientNode:
    """A client node with TwillClient, spun by a background executor in this process.

    It also records every message on twill/results, twill/state (in its ``namespace``) and
    /diagnostics, so tests can check what observers see (exactly one result per job, state
    and health changes).
    """

    def __init__(self, domain_id: int, name: str = "test_client", namespace: str = "/") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import MultiThreadedExecutor
        from twill_msgs.msg import JobResult, SchedulerState

        from twill_ros import interfaces as ifc
        from twill_ros.client import TwillClient
        from twill_ros.node.lifecycle import spin_while

        os.environ.update(child_env(domain_id))
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, namespace=namespace, context=self.context)
        self.client = TwillClient(self.node)
        self.results: dict[str, list] = defaultdict(list)
        self.states: list = []
        self.diagnostics: list = []
        self._lock = threading.RLock()    # wait_until predicates may call the readers below
        self.node.create_subscription(JobResult, ifc.name(ifc.RESULTS), self._on_result,
                                      ifc.JOB_QOS)
        self.node.create_subscription(SchedulerState, ifc.name(ifc.STATE), self._on_state, 10)
        self.node.create_subscription(DiagnosticArray, ifc.DIAGNOSTICS, self._on_diag, 10)
        self.executor = MultiThreadedExecutor(num_threads=3, context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        # spin_while, as user nodes are told to: rclpy's own spin() starves the pool threads
        self._spin = threading.Thread(target=spin_while, daemon=True,
                                      args=(self.executor, lambda: True, self._stop))
        self._spin.start()

    def _on_result(self, msg) -> None:
        with self._lock:
            self.results[msg.job_id].append(msg)

    def _on_state(self, msg) -> None:
        with self._lock:
            self.states.append((time.monotonic(), msg))

    def _on_diag(self, msg) -> None:
        with self._lock:
            self.diagnostics.append((time.monotonic(), msg))

    def newest_status(self, name: str, since: float = float("-inf")):
        """The newest /diagnostics status called ``name`` received after ``since``
        (time.monotonic()), or None."""
        with self._lock:
            for stamp, array in reversed(self.diagnostics):
                if stamp < since:
                    return None
                for status in array.status:
                    if status.name == name:
                        return status
        return None

    def results_for(self, job_id: str) -> list:
        with self._lock:
            return list(self.results.get(job_id, ()))

    def wait_until(self, predicate, timeout_s: float, poll_s: float = 0.05) -> bool:
        """Poll ``predicate`` (no sleeps-as-assertions: it returns as soon as it holds)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if predicate():
                    return True
            time.sleep(poll_s)
        with self._lock:
            return bool(predicate())

    def close(self) -> None:
        self._stop.set()
        self._spin.join(2.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
