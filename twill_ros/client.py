"""TwillClient: submit, run, cancel and await Twill jobs from any rclpy node in a few lines.

    client = TwillClient(node)                 # node spun by an executor in another thread
    client.wait_for_scheduler(5.0)
    job_id = client.submit(make_request("resnet50", priority=JobRequest.HIGH))
    result = client.wait_result(job_id, timeout_s=5.0)

The node must be spinning elsewhere (an executor in another thread): the blocking
calls here wait on futures and events, never spin themselves.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin on 3.10

from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from twill_msgs.action import RunJob
from twill_msgs.msg import JobRequest, JobResult
from twill_msgs.srv import CancelJob, SetPowerBudget, SubmitJob

from twill_ros import interfaces as ifc

# Results nobody waits for are dropped oldest-first beyond this many.
MAX_UNCLAIMED_RESULTS = 10_000
# How often the client looks on the ROS graph for the scheduler its pending jobs went to.
SCHEDULER_CHECK_S = 1.0


class SchedulerError(RuntimeError):
    """The scheduler refused a call, did not answer in time, or went away with the job."""


def make_request(model: str, *, priority: int = JobRequest.NORMAL, deadline_ms: float = 0.0,
                 prompt: str = "", max_new_tokens: int = 0, job_id: str = "",
                 inputs=()) -> JobRequest:
    # Humble's messages check field types: deadline_ms=50 (an int) would raise there
    return JobRequest(job_id=job_id, model=model, priority=int(priority),
                      deadline_ms=float(deadline_ms), prompt=prompt,
                      max_new_tokens=int(max_new_tokens), inputs=list(inputs))


class TwillClient:
    """Client side of the /twill interfaces, bound to one node."""

    def __init__(self, node: Node, namespace: str = ifc.NAMESPACE,
                 on_result: Callable[[JobResult], None] | None = None) -> None:
        """``namespace``: where the scheduler's interfaces are; the default ``twill`` is
        relative to ``node``'s namespace (a scheduler launched beside it), ``/robot1/twill``
        names one explicitly. ``on_result``, when given, receives every result of this
        client as it arrives (instead of keeping it for ``wait_result``)."""
        self.node = node
        self._on_result_cb = on_result
        self.client_id = node.get_fully_qualified_name()
        group = ReentrantCallbackGroup()
        self._jobs_pub = node.create_publisher(JobRequest, ifc.name(ifc.JOBS, namespace),
                                                ifc.JOB_QOS)
        self._submit, self._cancel, self._budget = (
            node.create_client(srv_type, ifc.name(leaf, namespace), qos_profile=ifc.JOB_QOS,
                               callback_group=group)
            for srv_type, leaf in ((SubmitJob, ifc.SUBMIT), (CancelJob, ifc.CANCEL),
                                   (SetPowerBudget, ifc.SET_POWER_BUDGET)))
        self._run_name = ifc.name(ifc.RUN, namespace)
        self._run = _WholeActionClient(node, RunJob, self._run_name, callback_group=group,
                                       **ifc.ACTION_QOS)
        self._lock = threading.Lock()
        self._waiting: dict[str, threading.Event] = {}
        # a result, or the error that stands for one that will never come
        self._results: OrderedDict[str, JobResult | SchedulerError] = OrderedDict()
        self._chosen_ids: set[str] = set()   # ids the caller chose, until their job ended
        self._runs: dict[str, JobRun] = {}   # jobs of run(): their JobRun gets the result
        # job id -> the scheduler instances (result publishers) that could have taken it
        self._pending: dict[str, frozenset[bytes]] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()   # ids whose result came
        self._results_sub = node.create_subscription(
            JobResult, ifc.name(ifc.RESULTS, namespace), self._on_result, ifc.JOB_QOS,
            callback_group=group)
        # steady: a node under use_sim_time would check only while /clock runs
        node.create_timer(SCHEDULER_CHECK_S, self._check_scheduler, callback_group=group,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))

    def wait_for_scheduler(self, timeout_s: float = 10.0) -> bool:
        """True once the submit service and the action server are reachable."""
        return (self._submit.wait_for_service(timeout_sec=timeout_s)
                and self._run.wait_for_server(timeout_sec=timeout_s))

    def scheduler_ready(self) -> bool:
        """Non-blocking: the scheduler is discovered on /twill/jobs and /twill/run."""
        return self._jobs_pub.get_subscription_count() > 0 and self._run.server_is_ready()

    # ------------------------------------------------------------ results
    def _on_result(self, result: JobResult) -> None:
        """Keep this client's results until awaited (a result may beat the submit reply)."""
        if result.client_id != self.client_id:
            return
        self._release(result.job_id)
        with self._lock:
            self._pending.pop(result.job_id, None)
            self._ended[result.job_id] = None
            while len(self._ended) > MAX_UNCLAIMED_RESULTS:
                self._ended.popitem(last=False)
            run = self._runs.pop(result.job_id, None)
        if run is not None:     # the same result as the goal's, whichever comes first
            run._succeed(result)
        if self._on_result_cb is not None:
            self._on_result_cb(result)
        elif run is None:       # a run's is not kept: nobody would claim it
            self._keep(result.job_id, result)

    def _keep(self, job_id: str, outcome: JobResult | SchedulerError) -> None:
        with self._lock:
            self._results[job_id] = outcome
            while len(self._results) > MAX_UNCLAIMED_RESULTS:
                dropped, _ = self._results.popitem(last=False)
                self._waiting.pop(dropped, None)
            self._arrived(job_id).set()

    # ------------------------------------------------------------ scheduler loss
    def _schedulers(self) -> frozenset[bytes]:
        """The scheduler instances on the graph now: the publishers of our results topic."""
        return frozenset(bytes(info.endpoint_gid) for info in
                         self.node.get_publishers_info_by_topic(self._results_sub.topic_name))

    def _track(self, job_id: str, unless_ended: bool = False) -> None:
        """Watch ``job_id`` until its result; ``unless_ended``: not if it came already (a
        result may beat the reply to the submit service)."""
        schedulers = self._schedulers()
        with self._lock:
            if not (unless_ended and job_id in self._ended):
                self._pending[job_id] = schedulers

    def _untrack(self, job_id: str) -> None:
        with self._lock:
            self._pending.pop(job_id, None)

    def _check_scheduler(self) -> None:
        """A job whose scheduler instances have all left the graph (a crash: a clean
        shutdown sends every live job a CANCELLED result) will never get a result: its
        JobRun fails, its ``wait_result`` raises, and the node logs it."""
        with self._lock:
            if not self._pending:
                return
        now = self._schedulers()
        lost = []
        with self._lock:
            for job_id, seen in list(self._pending.items()):
                if not seen:                       # submitted before its scheduler was seen
                    self._pending[job_id] = now
                elif not seen & now:
                    del self._pending[job_id]
                    lost.append((job_id, self._runs.pop(job_id, None)))
        if not lost:
            return
        self.node.get_logger().error(
            f"the scheduler at {self._results_sub.topic_name} went away: no result will come "
            f"for {len(lost)} job(s): {', '.join(job_id for job_id, _ in lost[:10])}")
        for job_id, run in lost:
            error = SchedulerError(f"job {job_id}: the scheduler went away before its result")
            self._release(job_id)
            if run is not None:
                run._fail(error)
            elif self._on_result_cb is None:
                self._keep(job_id, error)

    def _arrived(self, job_id: str) -> threading.Event:
        return self._waiting.setdefault(job_id, threading.Event())

    def wait_result(self, job_id: str, timeout_s: float = 10.0) -> JobResult | None:
        """The JobResult of a job this client submitted, or None on timeout (one waiter per
        job: a second one gets None); SchedulerError once the scheduler that had the job
        has gone (see ``_check_scheduler``)."""
        if self._on_result_cb is not None:
            raise ValueError("this client hands every result to its on_result callback")
        with self._lock:
            arrived = self._arrived(job_id)
        got = arrived.wait(timeout_s)
        with self._lock:
            self._waiting.pop(job_id, None)
            outcome = self._results.pop(job_id, None) if got else None
        if isinstance(outcome, SchedulerError):
            raise outcome
        return outcome

    # ------------------------------------------------------------ submission
    def submit(self, request: JobRequest, via: str = "topic", timeout_s: float = 5.0) -> str:
        """Submit by topic (fire and forget) or service (acknowledged); returns the job id.

        A refused service call raises SchedulerError with the scheduler's reason; a bad
        request sent by topic comes back as a REJECTED result instead. Submitting by topic
        before the scheduler is discovered raises SchedulerError rather than losing the job.
        """
        if via not in ("topic", "service"):
            raise ValueError(f"via must be 'topic' or 'service', got {via!r}")
        if via == "service":
            return self._call(self._submit, lambda: self.submit_async(request), timeout_s)
        request = self._own(request)
        if self._jobs_pub.get_subscription_count() == 0:
            # A message to nobody is dropped silently by DDS; refuse it instead.
            raise SchedulerError(f"no scheduler subscribed to {self._jobs_pub.topic_name}")
        self._reserve(request.job_id)
        request.job_id = request.job_id or self._new_id()
        self._track(request.job_id)
        self._jobs_pub.publish(request)
        return request.job_id

    def submit_async(self, request: JobRequest) -> Future:
        """Submit by service without blocking (e.g. from a callback of the executor spinning
        the node): a Future of the job id, whose exception is SchedulerError if the
        scheduler refuses the job. Raises SchedulerError at once while the service is not
        discovered."""
        request = self._own(request)
        chosen = self._reserve(request.job_id)

        def accepted(response: SubmitJob.Response) -> str:
            if not response.accepted:
                raise SchedulerError(f"job refused: {response.message}")
            self._track(response.job_id, unless_ended=True)
            return response.job_id

        def refused(future: Future) -> None:
            if future.exception() is not None:
                self._release(chosen)

        try:
            future = self._call_async(self._submit, SubmitJob.Request(request=request),
                                      accepted)
        except SchedulerError:
            self._release(chosen)
            raise
        future.add_done_callback(refused)
        return future

    def _own(self, request: JobRequest) -> JobRequest:
        """A copy to send: the caller's request may be a template sent again."""
        request = copy.deepcopy(request)
        request.client_id = request.client_id or self.client_id
        return request

    def _new_id(self) -> str:
        return f"{self.node.get_name()}-{uuid.uuid4().hex[:12]}"

    def run(self, request: JobRequest,
            feedback: Callable[[RunJob.Feedback], None] | None = None) -> JobRun:
        """Run a job as an action; ``JobRun.result()`` is the goal's JobResult.

        ``feedback`` receives state (queued/running/frozen), unit and tokens as they change.
        A request without an id gets one here (``JobRun.job_id``). Raises SchedulerError
        while no scheduler's action server is discovered (a goal sent to nobody would never
        be answered).
        """
        if not self._run.server_is_ready():
            raise SchedulerError(f"the {self._run_name} action server is not available")
        request = self._own(request)
        chosen = self._reserve(request.job_id)
        request.job_id = request.job_id or self._new_id()
        run = JobRun(request.job_id)
        with self._lock:
            self._runs[request.job_id] = run
        self._track(request.job_id)
        run._future.add_done_callback(lambda _f: self._release(chosen))

        def on_goal(goal_future) -> None:
            handle = goal_future.result()
            if not handle.accepted:
                with self._lock:
                    self._runs.pop(run.job_id, None)
                self._untrack(run.job_id)
                run._fail(SchedulerError("goal refused by the scheduler"))
                return
            run._accepted(handle)
            handle.get_result_async().add_done_callback(
                lambda f: self._goal_answered(run, f.result().result.result))

        self._run.send_goal_async(
            RunJob.Goal(request=request),
            feedback_callback=(lambda msg: feedback(msg.feedback)) if feedback else None,
        ).add_done_callback(on_goal)
        return run

    def _goal_answered(self, run: JobRun, result: JobResult) -> None:
        """The goal's result is in: the job is no longer the scheduler's to lose. A goal it
        refused before admission gets no copy on the results topic, so nothing else would
        stop watching it (the client reported it lost once the scheduler left)."""
        self._untrack(run.job_id)
        run._succeed(result)

    def _reserve(self, job_id: str) -> str:
        """Claim an id the caller chose (``""``: none, the scheduler or this client makes
        one). A second live job with it would be refused by the scheduler, and that REJECTED
        result would carry the same id and client id as the first job's result."""
        with self._lock:
            if job_id in self._chosen_ids:
                raise ValueError(f"job_id {job_id!r} is still in use by a job of this client "
                                 "that has no result yet")
            if job_id:
                self._chosen_ids.add(job_id)
                self._ended.pop(job_id, None)      # an id used again is a new job
                run = self._runs.get(job_id)
                if run is not None and run.done():   # a refused goal's: no copy will come
                    del self._runs[job_id]           # to take the new job's result
        return job_id

    def _release(self, job_id: str) -> None:
        with self._lock:
            self._chosen_ids.discard(job_id)

    def cancel(self, job_id: str, timeout_s: float = 5.0) -> tuple[bool, str]:
        """Cancel a job of any client by id: (cancelled, the scheduler's message)."""
        return self._call(self._cancel, lambda: self.cancel_async(job_id), timeout_s)

    def cancel_async(self, job_id: str) -> Future:
        """``cancel`` without blocking: a Future of (cancelled, message)."""
        return self._call_async(self._cancel, CancelJob.Request(job_id=job_id),
                                lambda response: (response.cancelled, response.message))

    def set_power_budget(self, budget_w: float, timeout_s: float = 5.0) -> float:
        """Set the module power budget; returns the budget in force, raises if refused."""
        return self._call(self._budget, lambda: self.set_power_budget_async(budget_w),
                          timeout_s)

    def set_power_budget_async(self, budget_w: float) -> Future:
        """``set_power_budget`` without blocking: a Future of the budget in force, whose
        exception is SchedulerError if the scheduler refuses it."""
        def in_force(response: SetPowerBudget.Response) -> float:
            if not response.success:
                raise SchedulerError(f"budget refused: {response.message}")
            return response.budget_w

        return self._call_async(self._budget, SetPowerBudget.Request(budget_w=float(budget_w)),
                                in_force)

    # ------------------------------------------------------------ service calls
    @staticmethod
    def _call(client, call_async: Callable[[], Future], timeout_s: float):
        """Block: wait for the service, then for the answer of ``call_async()``."""
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise SchedulerError(f"service {client.srv_name} not available")
        try:
            return call_async().result(timeout_s)
        except FutureTimeout:
            raise SchedulerError(
                f"service {client.srv_name} did not answer in {timeout_s} s") from None

    @staticmethod
    def _call_async(client, request, answer: Callable) -> Future:
        """Call without blocking: a Future of ``answer(response)``, or of the SchedulerError
        it raises. Raises SchedulerError at once while the service is not discovered."""
        if not client.service_is_ready():
            raise SchedulerError(f"service {client.srv_name} not available")
        future: Future = Future()

        def done(call) -> None:
            try:
                future.set_result(answer(call.result()))
            except SchedulerError as error:
                future.set_exception(error)

        client.call_async(request).add_done_callback(done)
        return future


class _WholeActionClient(ActionClient):
    """An ActionClient that may be created on a node another thread is spinning: rclpy 9.x
    (Kilted) adds it to the node before creating the lock its ``get_num_entities`` takes, and
    an executor that meets it in between dies (AttributeError: '_lock'), after which none of
    the node's callbacks run again."""

    def __init__(self, *args, **kwargs) -> None:
        self._lock = threading.Lock()     # replaced by the base class's own at the end
        super().__init__(*args, **kwargs)


class JobRun:
    """An action goal in flight: wait for its JobResult or cancel it."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._future: Future = Future()
        self._lock = threading.Lock()
        self._goal_handle = None
        self._cancel_asked = False

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout_s: float | None = None) -> JobResult:
        """The goal's JobResult; TimeoutError if it has not finished in time, SchedulerError
        if the goal was refused or the scheduler went away with it."""
        try:
            return self._future.result(timeout_s)
        except FutureTimeout:   # on 3.10 (Humble) not the builtin an `except TimeoutError` sees
            raise TimeoutError(f"job {self.job_id}: no result within {timeout_s} s") from None

    def add_done_callback(self, callback: Callable[[JobResult], None],
                          on_error: Callable[[SchedulerError], None] | None = None) -> None:
        """Call ``callback(result)`` once the goal has its JobResult, or ``on_error(error)``
        if it never will (refused, or the scheduler went away with it)."""
        def forward(future: Future) -> None:
            error = future.exception()
            if error is None:
                callback(future.result())
            elif on_error is not None:
                on_error(error)
        self._future.add_done_callback(forward)

    def _succeed(self, result: JobResult) -> None:
        with contextlib.suppress(InvalidStateError):  # it came by the other way already
            self._future.set_result(result)

    def _fail(self, error: SchedulerError) -> None:
        with contextlib.suppress(InvalidStateError):  # it has its result already
            self._future.set_exception(error)

    def cancel(self) -> None:
        """Ask the scheduler to cancel the goal; before it was accepted, as soon as it is."""
        with self._lock:
            self._cancel_asked = True
            handle = self._goal_handle
        if handle is not None:
            handle.cancel_goal_async()

    def _accepted(self, handle) -> None:
        with self._lock:
            self._goal_handle = handle
            cancel = self._cancel_asked
        if cancel:
            handle.cancel_goal_async()
