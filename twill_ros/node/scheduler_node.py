"""The twill_scheduler node: the ROS 2 shell around the pure scheduler core.

Requests arrive by topic, service or action; each becomes a core ``JobArrived`` event.
Backends report progress as core events too. Every event goes through ``_feed`` under one
lock, and the core's actions are applied to backends and turned into results, feedback,
/twill/state and /diagnostics. The node holds no scheduling logic of its own.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.task import Future
from twill_msgs.action import RunJob
from twill_msgs.msg import JobRequest, JobResult, SchedulerState, UnitState
from twill_msgs.srv import CancelJob, SetPowerBudget, SubmitJob

from twill_ros import interfaces as ifc
from twill_ros.backends.base import Backend
from twill_ros.backends.trt_config import DEFAULT_WORKSPACE_BYTES
from twill_ros.core import events as ev
from twill_ros.core.catalog import load_catalog
from twill_ros.core.jobs import Job, JobRecord, JobStatus
from twill_ros.core.metrics import WINDOW_S
from twill_ros.core.platform import load_platform
from twill_ros.core.policies import POLICIES
from twill_ros.core.power import (
    BUDGET_RANGE_W,
    CAP_PROFILES,
    DEFAULT_CAPS_PROFILE,
    check_budget_w,
)
from twill_ros.core.profiler import Profiler
from twill_ros.core.scheduler import Scheduler
from twill_ros.node.diagnostics import OK, WINDOWS_SPAN, HealthMonitor, Snapshot, UnitSnapshot
from twill_ros.node.execution import Execution
from twill_ros.node.lifecycle import node_main, spin_while
from twill_ros.node.params import descriptor
from twill_ros.node.requests import Limits, RequestError, to_job
from twill_ros.node.results import (
    attach_output,
    payload_of,
    rejected_result,
    result_from_record,
)
from twill_ros.platforms import PlatformControl, make_control

LEVEL_BYTES = {level: bytes([level]) for level in range(4)}
MODEL_CONTROL = "model"        # no control: power and clocks are the model's
CONTROL_KINDS = (MODEL_CONTROL, "jetson", "host")
OVERHEAD_SAMPLES = 1000


class Refused(Exception):
    """A request turned away before the core saw it."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(reason)
        self.job_id, self.reason = job_id, reason


@dataclass
class LiveJob:
    """The node's view of one accepted job until its result is out."""

    job: Job
    request: JobRequest
    on_feedback: Callable[[RunJob.Feedback], None] | None = None
    status: JobStatus = JobStatus.QUEUED
    unit: str = ""
    started_s: float = 0.0
    tokens: int = 0
    backend: Backend | None = None    # where it runs (or last ran: a frozen LLM's state)
    finished_s: float | None = None   # backend's finish time, for the finish->result overhead
    goal: object | None = None          # the action goal it answers, if any
    result: JobResult | None = None
    finished: Future = field(default_factory=Future)   # awaited by the action coroutine


class TwillSchedulerNode(Node):
    """Schedules inference jobs onto the platform's units with the chosen core policy."""

    def __init__(self, **kwargs) -> None:
        super().__init__("twill_scheduler", **kwargs)
        self._declare_parameters()
        p = self._param
        self.platform = load_platform(p("platform"))
        control = self._make_control()
        try:
            self._set_up(control)
        except BaseException:
            if control is not None:     # e.g. an nvpmodel mode set at start goes back
                control.restore()
            raise

    def _set_up(self, control: PlatformControl | None) -> None:
        """Everything after the control exists (it may have changed the machine already)."""
        p = self._param
        offline = control.offline_units() if control is not None else ()
        if offline:     # the core, the backends and the state leave them out
            self.platform = self.platform.without_units(offline)
            self.get_logger().warning(
                f"{', '.join(offline)}: every core offline (the nvpmodel mode's CPU_ONLINE), "
                f"not scheduled; a mode with them online needs a reboot")
        check_budget_w(p("power_budget_w"), self.platform)   # as at run time: the units here
        self.catalog = load_catalog(p("catalog_path") or None)
        self.profiler = Profiler(self.catalog, self.platform)
        self.limits = Limits(max_new_tokens=p("max_new_tokens"),
                             max_payload_bytes=p("max_payload_bytes"))
        self.policy = p("policy")
        self._lock = threading.RLock()
        self._live: dict[str, LiveJob] = {}
        self._goals_in_flight = 0
        self._closing = False      # set at SIGINT/SIGTERM: no job is admitted after it
        # Ids it assigns: unique to this start, so they collide neither with ids clients chose
        # (twill-2 sent by a client) nor with those of an earlier run of the node.
        self._ids = (f"twill-{uuid.uuid4().hex[:8]}-{n}" for n in itertools.count(1))
        self._counters = {status: 0 for status in JobStatus if status.terminal}
        self._deadline_misses = 0
        self._power_window: deque[float] = deque(
            maxlen=round(1.0 / self.platform.power_sample_period_s))
        self._power_lost = False      # the sensor stopped answering
        # the budget is judged on 100 ms windows: the last 10 s of them, over or not
        self._window_samples: list[float] = []
        self._samples_per_window = max(1, round(WINDOW_S / self.platform.power_sample_period_s))
        self._windows_over: deque[bool] = deque(maxlen=WINDOWS_SPAN)
        # the budget they are judged against: the one set, at once (the core takes it up
        # when its BudgetChanged event is drained, a few samples later)
        self._windows_budget_w = p("power_budget_w")
        # since the previous diagnostics: refusals, and failures per unit, with the latest reason
        self._period_rejected = 0
        self._last_rejection = ""
        self._period_failed: Counter[str] = Counter()
        self._last_failure: dict[str, str] = {}
        # /twill/state reports the mean since the previous state message, so a subscriber
        # at 10 Hz sees the 100 ms windows the budget is judged on.
        self._power_since_state: list[float] = []
        self._health = HealthMonitor()
        # Utilization is read once per state period (a backend reports it since its last read).
        self._utilization = {unit: 0.0 for unit in self.platform.unit_names}
        # Node overhead samples (seconds): request callback -> backend start for jobs that
        # start at once, and backend finish -> result published.
        self._overhead = {name: deque(maxlen=OVERHEAD_SAMPLES)
                          for name in ("submit_to_dispatch", "finish_to_result")}

        self._events: queue.SimpleQueue[ev.Event] = queue.SimpleQueue()
        group = ReentrantCallbackGroup()
        self._wake = self.create_guard_condition(self._drain_events, callback_group=group)
        self.execution = Execution(
            self.platform, self.catalog, self.profiler, self._backend_kinds(), control,
            self._post_event, time.monotonic, options={"tensorrt": self._tensorrt_options()})
        # built after the execution: the core plans around the clocks no control sets
        self.scheduler = Scheduler(self.platform, self.catalog, self.policy, p("power_budget_w"),
                                   seed=p("seed"), profiler=self.profiler,
                                   max_queue=p("max_queue"),
                                   tick_period_s=p("control_period_s"),
                                   fixed_clocks_hz=self.execution.fixed_clocks_hz(),
                                   caps_profile=p("static_caps_profile"))
        self._power_source = "not read yet"
        self._rails_w: dict[str, float] = {}
        self._alarm = (OK, "")        # the worst over-current alarm since the last snapshot

        self.results_pub = self.create_publisher(JobResult, ifc.name(ifc.RESULTS), ifc.JOB_QOS)
        self.state_pub = self.create_publisher(SchedulerState, ifc.name(ifc.STATE), 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, ifc.DIAGNOSTICS, 10)
        self.create_subscription(JobRequest, ifc.name(ifc.JOBS), self._on_job_topic, ifc.JOB_QOS,
                                 callback_group=group)
        for srv_type, leaf, callback in ((SubmitJob, ifc.SUBMIT, self._on_submit),
                                         (CancelJob, ifc.CANCEL, self._on_cancel),
                                         (SetPowerBudget, ifc.SET_POWER_BUDGET,
                                          self._on_set_budget)):
            self.create_service(srv_type, ifc.name(leaf), callback, qos_profile=ifc.JOB_QOS,
                                callback_group=group)
        self._action = ActionServer(
            self, RunJob, ifc.name(ifc.RUN), execute_callback=self._execute_goal,
            goal_callback=lambda _goal: GoalResponse.ACCEPT,
            cancel_callback=self._on_cancel_goal, callback_group=group, **ifc.ACTION_QOS)
        # The board's power and the jobs run on real time, also under use_sim_time:=true
        # (the node clock would then follow /clock, or stand still without one); stamps
        # stay on the node clock.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(p("control_period_s"), self._on_control_tick, callback_group=group,
                          clock=steady)
        # every sample goes to the core, at the cadence the twin feeds it: the controller's
        # intra-period boost ends on the sample after which it would overspend
        self.create_timer(self.platform.power_sample_period_s, self._on_power_sample,
                          callback_group=group, clock=steady)
        self.create_timer(1.0 / p("state_rate_hz"), self._publish_state, callback_group=group,
                          clock=steady)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=group, clock=steady)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        fixed = ", ".join(f"{name} {hz / 1e6:g} MHz"
                          for name, hz in self.scheduler.fixed_clocks_hz.items())
        self.get_logger().info(
            f"twill_scheduler ready: platform {self.platform.name}, policy {self.policy}, "
            f"budget {self.scheduler.budget_w:.1f} W, units {', '.join(self.platform.unit_names)}"
            + (f"; fixed clocks (planned around): {fixed}" if fixed else ""))

    # ------------------------------------------------------------ parameters
    def _declare_parameters(self) -> None:
        policies = tuple(sorted(POLICIES))
        self.declare_parameter("platform", "orin_nx_16gb", descriptor(
            "Platform file name under config/platforms/ or a path.", read_only=True))
        self.declare_parameter("policy", "twill", descriptor(
            "Scheduling policy.", read_only=True, choices=policies))
        self.declare_parameter("static_caps_profile", DEFAULT_CAPS_PROFILE, descriptor(
            "Which units a policy without DVFS gives its static power budget to "
            "(twill compare picks each baseline's best); unused with DVFS.", read_only=True,
            choices=tuple(CAP_PROFILES)))
        self.declare_parameter("power_budget_w", 15.0, descriptor(
            "Module power budget in watts, not below the platform's idle power; applied on "
            "the next control tick.",
            float_range=BUDGET_RANGE_W))
        self.declare_parameter("control_period_s", 0.1, descriptor(
            "Period of the power/DVFS control tick.", read_only=True,
            float_range=(0.01, 1.0)))
        self.declare_parameter("state_rate_hz", 5.0, descriptor(
            "Rate of /twill/state.", read_only=True, float_range=(0.1, 100.0)))
        self.declare_parameter("max_queue", 1000, descriptor(
            "Most jobs queued (frozen ones not counted) before new ones are rejected.",
            int_range=(1, 1_000_000)))
        self.declare_parameter("max_payload_bytes", 16 * 1024 * 1024, descriptor(
            "Largest accepted request payload (input tensors + prompt), bytes.",
            read_only=True, int_range=(1, 1 << 30)))
        self.declare_parameter("max_new_tokens", 1024, descriptor(
            "Largest max_new_tokens an LLM job may ask for.", read_only=True,
            int_range=(1, 1 << 20)))
        self.declare_parameter("catalog_path", "", descriptor(
            "Model catalog YAML; empty = the shipped models/catalog.yaml.", read_only=True))
        self.declare_parameter("backend", "simulated", descriptor(
            "Execution backend for units without backends.<unit>.", read_only=True,
            choices=("simulated", "torch", "llm", "tensorrt")))
        self.declare_parameter("control", MODEL_CONTROL, descriptor(
            "Where power readings and clock control come from: the model (twin), or the "
            "real platform.", read_only=True, choices=CONTROL_KINDS))
        self.declare_parameter("seed", 0, descriptor(
            "Seed of the core's tie-breaking randomness.", read_only=True,
            int_range=(0, 2**31 - 1)))

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _tensorrt_options(self) -> dict:
        """Engine build settings in Isaac ROS's names (``tensorrt.*`` parameters)."""
        declared = {
            "force_engine_update": (False, "Rebuild engines even when a cached one exists."),
            "enable_fp16": (True, "Allow FP16 kernels (DLA builds need FP16 or INT8)."),
            "enable_int8": (False, "Allow INT8 kernels (the ONNX graph must carry Q/DQ scales)."),
            "max_workspace_size": (DEFAULT_WORKSPACE_BYTES,
                                   "Builder workspace memory pool limit, bytes."),
            "engine_cache_dir": ("", "Engine cache directory; empty = $TWILL_ENGINE_CACHE or "
                                     "~/.cache/twill_ros/engines."),
        }
        values = {name: self.declare_parameter(f"tensorrt.{name}", default, descriptor(
            text, read_only=True)).value for name, (default, text) in declared.items()}
        cache_dir = values.pop("engine_cache_dir")
        return {"engine_params": values, "cache_dir": cache_dir or None}

    def _make_control(self) -> PlatformControl | None:
        """The ``control`` with its settings (``platform_root``, ``jetson.*`` parameters);
        ``None`` for the model's (the twin, or the platform file)."""
        if self._param("control") not in CONTROL_KINDS:
            raise ValueError(f"unknown control {self._param('control')!r}; choose from: "
                             f"{', '.join(CONTROL_KINDS)}")
        root = self.declare_parameter("platform_root", "/", descriptor(
            "Filesystem root under which the control reads sys/, etc/ and usr/ (/ on a robot; "
            "e.g. /host when the host's sysfs is bind-mounted into a container).",
            read_only=True)).value
        mode = str(self.declare_parameter("jetson.nvpmodel_mode", "", descriptor(
            "With control jetson: nvpmodel mode (name or id from /etc/nvpmodel.conf) set once "
            "at start-up, the mode found put back on exit; empty = keep the current mode. A "
            "mode that needs a reboot is declined and reported.", read_only=True,
            dynamic_typing=True)).value).strip()     # -p jetson.nvpmodel_mode:=0 is an int
        use_jtop = self.declare_parameter("jetson.use_jtop", True, descriptor(
            "With control jetson and no INA3221 hwmon files (e.g. a container that does not "
            "see the I2C device): read power from the jetson-stats service.",
            read_only=True)).value
        kind = self._param("control")
        if kind != "jetson" and mode:
            raise ValueError(f"jetson.nvpmodel_mode {mode!r} needs control: jetson "
                             f"(control is {kind!r})")
        if kind == MODEL_CONTROL:
            return None
        options = {"nvpmodel_mode": mode or None, "use_jtop": use_jtop} if kind == "jetson" else {}
        return make_control(kind, self.platform, root, **options)

    def _backend_kinds(self) -> dict[str, list[str]]:
        """Per unit, its backends (``backends.<unit>``, comma-separated; default ``backend``)."""
        kinds = {}
        for unit in self.platform.unit_names:
            value = self.declare_parameter(f"backends.{unit}", self._param("backend"),
                                           descriptor(f"Execution backend(s) of unit {unit}, "
                                                      "comma-separated, e.g. torch,llm.",
                                                      read_only=True)).value
            kinds[unit] = [k.strip() for k in value.split(",") if k.strip()]
        return kinds

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Apply accepted values. rclpy has already refused a value of the wrong type or out
        of its descriptor's range (with a reason naming the parameter) before calling this;
        a budget below the module's idle power is refused here, before anything applies."""
        for param in params:
            if param.name == "power_budget_w":
                try:
                    check_budget_w(param.value, self.platform)
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
        for param in params:
            if param.name == "power_budget_w":
                self._post_event(ev.BudgetChanged(time.monotonic(), float(param.value)))
                with self._lock:    # windows are judged against the budget in force
                    self._windows_over.clear()
                    self._windows_budget_w = float(param.value)
            elif param.name == "max_queue":
                with self._lock:
                    self.scheduler.max_queue = param.value
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------ core driving
    def _post_event(self, event: ev.Event) -> None:
        """Thread-safe: backends and callbacks hand events to the executor."""
        self._events.put(event)
        self._wake.trigger()

    def _drain_events(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            self._feed(event)

    def _feed(self, event: ev.Event) -> None:
        with self._lock:
            self._track(event)
            for action in self.scheduler.handle(event):
                self._apply(action)

    def _track(self, event: ev.Event) -> None:
        live = self._live.get(getattr(event, "job_id", ""))
        if live is None:
            return
        if isinstance(event, ev.StepFinished):
            live.tokens = event.tokens
            self._feedback(live)
        elif isinstance(event, ev.JobFrozen):
            live.status, live.tokens = JobStatus.FROZEN, event.tokens_done
            self._feedback(live)
        elif isinstance(event, ev.JobFinished):
            live.finished_s = event.t

    def _apply(self, action) -> None:
        if isinstance(action, ev.Dispatch):
            self._start(action.job_id, action.unit, tokens_done=0, share=action.share)
        elif isinstance(action, ev.Unfreeze):
            live = self._live[action.job_id]
            self._start(action.job_id, action.unit, tokens_done=live.tokens)
        elif isinstance(action, ev.Freeze):
            backend = self._live[action.job_id].backend
            if backend is not None:
                backend.freeze(action.job_id)
        elif isinstance(action, ev.WithdrawFreeze):
            backend = self._live[action.job_id].backend
            if backend is not None:
                backend.withdraw_freeze(action.job_id)
        elif isinstance(action, ev.Cancel):
            live = self._live.get(action.job_id)
            if live is not None and live.backend is not None:  # running, or frozen with state
                live.backend.cancel(action.job_id)
        elif isinstance(action, ev.SetFrequency):
            self.execution.set_frequency(action.unit, action.freq_hz)
        elif isinstance(action, ev.Complete):
            self._finish(action.record)
        # Migrate is advisory for queued jobs and Reject is followed by Complete.

    def _start(self, job_id: str, unit: str, tokens_done: int, share: float = 1.0) -> None:
        live = self._live[job_id]
        live.status, live.unit, live.started_s = JobStatus.RUNNING, unit, time.monotonic()
        try:
            live.backend = self.execution.start(live.job, unit, tokens_done,
                                                payload_of(live.request), share)
        except Exception as error:  # noqa: BLE001 - any backend failure fails this job only
            self._post_event(ev.JobFinished(time.monotonic(), job_id, unit, ok=False,
                                            message=f"could not start on {unit}: {error}"))
            return
        self._feedback(live)

    def _finish(self, record: JobRecord) -> None:
        live = self._live.pop(record.job.job_id, None)
        if live is None:
            return
        self._counters[record.status] += 1
        if record.deadline_missed:
            self._deadline_misses += 1
        if record.status is JobStatus.FAILED:
            self._period_failed[record.unit] += 1
            self._last_failure[record.unit] = record.message
        elif record.status is JobStatus.REJECTED:
            self._period_rejected += 1
            self._last_rejection = record.message
        live.result = result_from_record(record, live.request)
        if live.backend is not None:
            attach_output(live.result, live.backend.take_output(live.job.job_id))
        self.results_pub.publish(live.result)
        live.finished.set_result(True)
        if live.finished_s is not None:
            self._overhead["finish_to_result"].append(time.monotonic() - live.finished_s)

    def _feedback(self, live: LiveJob) -> None:
        if live.on_feedback is None:
            return
        partial = live.backend.partial_text(live.job.job_id) if live.backend else ""
        live.on_feedback(RunJob.Feedback(
            state=live.status.value, unit=live.unit, tokens=live.tokens, partial_text=partial,
            elapsed_ms=(time.monotonic() - live.job.submit_s) * 1000.0))

    # ------------------------------------------------------------ admission
    def _admit(self, request: JobRequest, on_feedback=None, goal=None) -> LiveJob:
        """Hand a valid request to the core; Refused with a specific reason otherwise."""
        received = time.monotonic()
        with self._lock:
            job_id = request.job_id or next(self._ids)
            if self._closing:   # it still spins to send its goodbyes, but would exit with it
                raise Refused(job_id, "scheduler shutting down")
            if job_id in self._live:
                raise Refused(job_id, f"duplicate job_id '{job_id}': a job with it is still live")
            try:
                job = to_job(request, job_id, time.monotonic(), self.catalog, self.limits)
            except RequestError as exc:
                raise Refused(job_id, str(exc)) from None
            if not self.execution.runnable(job.model):
                raise Refused(job_id, f"no unit's execution backend can run model "
                                      f"'{job.model}' (parameters backend / backends.<unit>)")
            live = LiveJob(job=job, request=request, on_feedback=on_feedback, goal=goal)
            self._live[job_id] = live
            self._feed(ev.JobArrived(job.submit_s, job))
            if live.status is JobStatus.RUNNING:  # dispatched at once: pure node overhead
                self._overhead["submit_to_dispatch"].append(time.monotonic() - received)
            elif live.status is JobStatus.QUEUED and not live.finished.done():
                self._feedback(live)
            return live

    def _refuse(self, request: JobRequest, refusal: Refused) -> JobResult:
        self.get_logger().warn(f"rejected job {refusal.job_id}: {refusal.reason}")
        with self._lock:
            self._counters[JobStatus.REJECTED] += 1
            self._period_rejected += 1
            self._last_rejection = refusal.reason
        return rejected_result(request, refusal.job_id, refusal.reason)

    def _on_job_topic(self, request: JobRequest) -> None:
        try:
            self._admit(request)
        except Refused as error:
            self.results_pub.publish(self._refuse(request, error))

    def _on_submit(self, call: SubmitJob.Request, response: SubmitJob.Response):
        try:
            live = self._admit(call.request)
        except Refused as error:
            result = self._refuse(call.request, error)
            response.accepted, response.job_id, response.message = False, result.job_id, \
                result.message
            return response
        response.job_id = live.job.job_id
        if live.finished.done() and live.result.status == JobResult.REJECTED:
            response.accepted, response.message = False, live.result.message
        else:
            response.accepted = True
            response.message = "accepted; the result follows on /twill/results"
        return response

    def _on_cancel(self, call: CancelJob.Request, response: CancelJob.Response):
        with self._lock:
            if call.job_id not in self._live:
                response.cancelled = False
                response.message = f"no live job '{call.job_id}' (unknown or already finished)"
                return response
            self._feed(ev.CancelRequested(time.monotonic(), call.job_id,
                                          "cancelled through /twill/cancel"))
        response.cancelled = True
        response.message = "cancelled"
        return response

    def _on_cancel_goal(self, goal_handle) -> CancelResponse:
        with self._lock:
            live = next((j for j in self._live.values() if j.goal is goal_handle), None)
            if live is None:
                return CancelResponse.REJECT
            self._feed(ev.CancelRequested(time.monotonic(), live.job.job_id,
                                          "cancelled by the action client"))
        return CancelResponse.ACCEPT

    def _on_set_budget(self, call: SetPowerBudget.Request, response: SetPowerBudget.Response):
        result = self.set_parameters([Parameter(
            "power_budget_w", value=float(call.budget_w))])[0]
        response.success, response.message = result.successful, result.reason or "ok"
        response.budget_w = float(self._param("power_budget_w"))
        return response

    async def _execute_goal(self, goal_handle) -> RunJob.Result:
        """A coroutine: it waits for the job without holding an executor thread."""
        with self._lock:
            self._goals_in_flight += 1
        try:
            return await self._run_goal(goal_handle)
        finally:
            with self._lock:
                self._goals_in_flight -= 1

    async def _run_goal(self, goal_handle) -> RunJob.Result:
        request = goal_handle.request.request
        try:
            live = self._admit(request, on_feedback=goal_handle.publish_feedback,
                               goal=goal_handle)
        except Refused as error:
            goal_handle.abort()
            return RunJob.Result(result=self._refuse(request, error))
        await live.finished
        result = live.result
        if result.status == JobResult.COMPLETED:
            goal_handle.succeed()
        elif result.status == JobResult.CANCELLED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        return RunJob.Result(result=result)

    # ------------------------------------------------------------ timers
    def _on_power_sample(self) -> None:
        reading = self.execution.power(self._utilization)
        self._power_lost = reading is None
        if reading is None:     # no sample: the controller keeps its last correction
            return
        self._power_source = reading.source
        self._rails_w = reading.rails
        if reading.alarm_level > self._alarm[0]:
            self._alarm = (reading.alarm_level, reading.alarm)
        self._power_window.append(reading.total_w)
        self._power_since_state.append(reading.total_w)
        self._window_samples.append(reading.total_w)
        if len(self._window_samples) == self._samples_per_window:
            mean = sum(self._window_samples) / len(self._window_samples)
            with self._lock:
                self._windows_over.append(mean > self._windows_budget_w)
            self._window_samples.clear()
        self._feed(ev.PowerSample(time.monotonic(), reading.total_w))

    def _on_control_tick(self) -> None:
        self._feed(ev.Tick(time.monotonic()))

    def _live_summary(self) -> tuple[dict[str, list[LiveJob]], Counter[JobStatus]]:
        """One walk over the live jobs: the running ones per unit (in admission order) and
        how many are in each status."""
        running: dict[str, list[LiveJob]] = {unit: [] for unit in self.platform.unit_names}
        counts: Counter[JobStatus] = Counter()
        for live in self._live.values():
            counts[live.status] += 1
            if live.status is JobStatus.RUNNING:
                running.setdefault(live.unit, []).append(live)
        return running, counts

    def _unit_states(self, running_on: dict[str, list[LiveJob]]) -> list[UnitState]:
        states = []
        for spec in self.platform.units:
            freq = self.execution.frequency_hz(spec.name)
            running = [j.job.job_id for j in running_on[spec.name]]
            util = self._utilization[spec.name] = self.execution.utilization(spec.name)
            states.append(UnitState(
                name=spec.name, kind=spec.kind, frequency_hz=freq,
                max_frequency_hz=spec.max_frequency_hz, utilization=util, running=running,
                queue_length=self.scheduler.units[spec.name].queued,
                power_w=spec.power.power_w(freq, spec.max_frequency_hz, util)))
        return states

    def _publish_state(self) -> None:
        with self._lock:
            running_on, counts = self._live_summary()
            msg = SchedulerState(
                stamp=self.get_clock().now().to_msg(), policy=self.policy,
                static_caps=self.scheduler.static_caps or "",
                platform=self.platform.name, power_w=self._state_power(),
                power_budget_w=self.scheduler.budget_w, units=self._unit_states(running_on),
                queued=counts[JobStatus.QUEUED],
                running=counts[JobStatus.RUNNING],
                frozen=counts[JobStatus.FROZEN],
                completed=self._counters[JobStatus.COMPLETED],
                failed=self._counters[JobStatus.FAILED],
                rejected=self._counters[JobStatus.REJECTED],
                cancelled=self._counters[JobStatus.CANCELLED])
        self.state_pub.publish(msg)

    def _state_power(self) -> float:
        samples, self._power_since_state = self._power_since_state, []
        if samples:
            return sum(samples) / len(samples)
        return float(self._power_window[-1]) if self._power_window else 0.0

    def _mean_power(self) -> float | None:
        if not self._power_window:
            return None
        return sum(self._power_window) / len(self._power_window)

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        with self._lock:
            running_on, counts = self._live_summary()
            units = []
            for spec in self.platform.units:
                running = running_on[spec.name]
                freq = self.execution.frequency_hz(spec.name)
                units.append(UnitSnapshot(
                    name=spec.name, frequency_hz=freq, max_frequency_hz=spec.max_frequency_hz,
                    utilization=self._utilization[spec.name],
                    running=tuple(j.job.job_id for j in running),
                    running_for=tuple((j.job.job_id, now - j.started_s,
                                       self.profiler.job_s(j.job, spec.name, freq))
                                      for j in running),
                    failed=self._period_failed[spec.name],
                    last_failure=self._last_failure.get(spec.name, "")))
            control_level, control = self.execution.control_status()
            snap = Snapshot(
                power_w=None if self._power_lost else self._mean_power(),
                budget_w=self.scheduler.budget_w,
                power_source=self._power_source, control=control, control_level=control_level,
                queued=counts[JobStatus.QUEUED], frozen=counts[JobStatus.FROZEN],
                power_held=self.scheduler.power_held,
                queue_limit=self._param("max_queue"), deadline_misses=self._deadline_misses,
                completed=self._counters[JobStatus.COMPLETED], units=tuple(units),
                overhead_s={name: tuple(samples) for name, samples in self._overhead.items()},
                rails_w=dict(self._rails_w), windows_over=sum(self._windows_over),
                windows=len(self._windows_over), rejected=self._period_rejected,
                last_rejection=self._last_rejection, alarm_level=self._alarm[0],
                alarm=self._alarm[1])
            self._deadline_misses = self._period_rejected = 0
            self._alarm = (OK, "")
            self._period_failed.clear()
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        # /diagnostics is one topic for the robot: a namespaced stack names its statuses
        namespace = self.get_namespace().strip("/")
        for status in self._health.statuses(snap):
            array.status.append(DiagnosticStatus(
                level=LEVEL_BYTES[status.level],
                name=f"{namespace}/{status.name}" if namespace else status.name,
                message=status.message,
                hardware_id=self.platform.name,
                values=[KeyValue(key=k, value=v) for k, v in status.values.items()]))
        self.diag_pub.publish(array)

    # ------------------------------------------------------------ shutdown
    def cancel_all(self, reason: str) -> int:
        """Give every live job a CANCELLED result and refuse new ones (SIGINT/SIGTERM)."""
        with self._lock:
            self._closing = True
            live_ids = list(self._live)
            for job_id in live_ids:
                self._feed(ev.CancelRequested(time.monotonic(), job_id, reason))
            for job_id in list(self._live):  # anything the policy did not end itself
                live = self._live[job_id]
                self._finish(JobRecord(job=live.job, status=JobStatus.CANCELLED,
                                       unit=live.unit, finish_s=time.monotonic(),
                                       message=reason))
        return len(live_ids)

    def on_exit(self, executor) -> None:
        """Cancel live jobs with a reason, let results go out, stop the backends (and put the
        clocks back) even when a callback raises again meanwhile."""
        count = self.cancel_all("scheduler shutting down")
        self.get_logger().info(f"shutting down: cancelled {count} live job(s)")
        try:
            spin_while(executor, lambda: self._goals_in_flight > 0, timeout_s=2.0)
            spin_while(executor, lambda: True, timeout_s=0.3)  # flush the last messages
        finally:
            self.execution.close()


main = node_main(TwillSchedulerNode)

