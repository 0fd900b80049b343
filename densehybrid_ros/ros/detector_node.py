"""The `detector` lifecycle node: camera frames in; semantic, anomaly-score, open-set, overlay and alert out.

Lifecycle (rclpy managed node; `autostart` runs configure + activate itself so a plain launch just works):
- configure: validate every parameter (config/detector.py), load the model card and the backend, warm up.
  Any failure (a bad parameter, a missing or corrupt model file) is logged naming the parameter or file, the node
  stays unconfigured and alive, /diagnostics reports the error, and the operator can fix the parameter and
  configure again: no crash loop.
- activate: create publishers and subscriptions and start the inference worker.
- deactivate / cleanup / shutdown: stop the worker, destroy the endpoints, release the model.

Threads: the executor thread only checks headers (O(1)) and drops the message in a one-slot mailbox; a worker
thread converts, infers and publishes, so a slow inference never blocks the executor (parameter services,
lifecycle services, diagnostics keep answering) and never builds a queue of stale frames.

Glue only: conversions in conversions.py, parameters in config/detector.py, maths in core/ and runtime/.
"""
from __future__ import annotations

import copy
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from densehybrid_ros.config.detector import DetectorConfig
from densehybrid_ros.config.model_card import ModelCard
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.core.alert import AlertConfig, ObstacleAlertDetector
from densehybrid_ros.ros import alert_message
from densehybrid_ros.ros.conversions import (Encoding, ImageConverter, MalformedImage, camera_info_problem,
                                             check_compressed, check_image, quiet_decoder_logging)
from densehybrid_ros.ros.diagnostics import (INFERENCE_ERROR, SUPERSEDED, FrameStats, detector_status,
                                             diagnostic_array)
from densehybrid_ros.ros.fastdds_shm import remove_stale_segments
from densehybrid_ros.ros.latest_frame import LatestFrameMailbox
from densehybrid_ros.ros.parameters import (declare_parameters, file_parameter_problems, read_values,
                                            validate_update, warn_unknown_overrides)
from densehybrid_ros.ros.signals import RCLError, spin_until_signal
from densehybrid_ros.ros.topics import BY_TOPIC, OUTPUTS, image_outputs

NODE_NAME = "detector"
PACKAGE = "densehybrid_ros"
WARN_THROTTLE_S = 5.0

# Outputs (topic, type, encoding, QoS) are the table in topics.py (docs/ARCHITECTURE.md section 4); inputs are
# `image`, `image/compressed` and `camera_info`.


@dataclass
class Frame:
    """What the executor thread hands to the worker."""

    msg: Image | CompressedImage
    encoding: Encoding | None    # raw frames
    rgb_order: bool              # compressed frames: payload already RGB
    arrival_ns: int              # system clock when the middleware received it (the start of the node's cost)


def sensor_qos(reliability: str, depth: int) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE)



# The model an empty `model` parameter means: the one shipped in models/ (its card beside it).
DEFAULT_MODEL_NAME = "densehybrid_lite0_camvid.onnx"


def default_model_dirs() -> list[Path]:
    """Where an empty `model` parameter looks: the installed share/ folder, then the source checkout."""
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory
        dirs.append(Path(get_package_share_directory(PACKAGE)) / "models")
    except Exception:  # noqa: BLE001 - not installed through colcon/ament (pip or source checkout)
        pass
    dirs.append(Path(__file__).resolve().parents[2] / "models")
    return dirs


def resolve_model_path(model: str) -> Path:
    """The `model` parameter, or when it is empty the shipped DEFAULT_MODEL_NAME from `default_model_dirs()`.

    Never a guess: a folder holding other models (real, synthetic, INT8) but not the default is an error listing
    them, since picking one by name order could run the wrong model on a vehicle.
    """
    if model:
        return Path(model).expanduser()
    return find_default_model(default_model_dirs())


def find_default_model(searched: list[Path]) -> Path:
    for d in searched:
        if (d / DEFAULT_MODEL_NAME).is_file():
            return d / DEFAULT_MODEL_NAME
    others = sorted(str(p) for d in searched for p in d.glob("*.onnx"))
    where = " or ".join(str(d) for d in searched)
    if others:
        raise ConfigError(f"parameter 'model' is empty and the default model {DEFAULT_MODEL_NAME} is not in {where}; "
                          f"other models are there ({', '.join(others)}): set model:=<one of them>")
    raise ConfigError(f"parameter 'model' is empty and the default model {DEFAULT_MODEL_NAME} is not in {where} "
                      f"(no *.onnx model there either); set model:=/path/to/model.onnx")


class DetectorNode(LifecycleNode):
    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        quiet_decoder_logging()
        # Overrides rejected at declaration (out of range, wrong type): reported by configure until fixed.
        self._start_errors = declare_parameters(self)
        for message in self._start_errors.values():
            self.get_logger().error(message)
        self.unknown_parameters = warn_unknown_overrides(self)
        self._lifecycle = "unconfigured"
        self._error = ""
        self._lock = threading.Lock()        # guards config, card, backend and tau between threads
        self._alert_lock = threading.Lock()  # the alert detector is stateful and not thread-safe
        self._config: DetectorConfig | None = None
        self._card: ModelCard | None = None
        self._model_path: Path | None = None
        self._backend = None
        self._backend_name = ""
        self._tau: float | None = None
        self._alert = None
        self._alert_state = None
        self._converter = ImageConverter(prefer_cv_bridge=False)
        self._stats = FrameStats()
        self._mailbox: LatestFrameMailbox[Frame] | None = None
        self._worker: threading.Thread | None = None
        self._pubs: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._camera_info: CameraInfo | None = None
        self._camera_info_rejected = 0
        self._last_frame_desc = ""
        self._last_frame_id = ""
        self._published: Counter[str] = Counter()
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # /diagnostics exists in every state, so a node that failed to configure says why on the bus.
        diagnostics = BY_TOPIC["/diagnostics"]
        self._diag_pub = self.create_publisher(diagnostics.msg_type, diagnostics.topic, diagnostics.qos)
        period = self.get_parameter("diagnostics_period").value
        self._diag_timer = self.create_timer(float(period), self._publish_diagnostics)

        if self.get_parameter("autostart").value:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    # -- lifecycle --------------------------------------------------------------------------------------------------
    @property
    def lifecycle_state(self) -> str:
        return self._lifecycle

    @property
    def error(self) -> str:
        """Why the last configure failed ("" after a success)."""
        return self._error

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            config = self._validated_parameters()
            model_path = resolve_model_path(config.model)
            # The runtime package loads onnxruntime; importing it here keeps an unconfigured node light.
            from densehybrid_ros.runtime import create_backend, resolve_card
            card = resolve_card(model_path)  # names the missing/corrupt file; checks the card's sha256
            tau = config.tau_for(card)
            backend = create_backend(card, backend=config.backend, **self._backend_options(config))
            alert = self._make_alert_detector(config, card, tau)
        except Exception as e:  # noqa: BLE001 - any failure must leave the node alive and unconfigured
            self._error = f"configure failed: {e}"
            self.get_logger().error(self._error)
            self._release()
            return TransitionCallbackReturn.FAILURE
        with self._lock:
            self._config, self._card, self._model_path, self._backend = config, card, model_path, backend
            self._tau, self._alert, self._alert_state = tau, alert, None
        self._backend_name = getattr(backend, "name", config.backend)
        self._converter = ImageConverter(prefer_cv_bridge=config.prefer_cv_bridge)
        self._error = ""
        self._stats.reset()
        self._restart_diagnostics_timer(config.diagnostics_period)
        self._lifecycle = "inactive"
        self.get_logger().info(
            f"configured: model {card.model_path()} (sha256 {card.sha256[:12]}), backend {self._backend_name}, "
            f"K={card.num_classes}, tau={tau:.4g} ({config.threshold_source}), converter {self._converter.name}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        config = self._config
        # Evidence from before a pause is about a scene that may be long gone: the alert starts afresh, as after
        # configure (the worker is stopped while inactive, so nothing updates it concurrently).
        with self._alert_lock:
            if self._alert is not None:
                self._alert.reset()
            self._alert_state = None
        try:
            for row in OUTPUTS:
                if row.created_at == "activate":
                    self._pubs[row.topic] = self.create_publisher(row.msg_type, row.topic, row.qos)
            qos = sensor_qos(config.qos_reliability, config.qos_depth)
            if config.input_transport == "compressed":
                self._subs.append(self.create_subscription(CompressedImage, "image/compressed",
                                                           self._on_compressed, qos))
            else:
                self._subs.append(self.create_subscription(Image, "image", self._on_image, qos))
            if config.use_camera_info:
                self._subs.append(self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos))
            self._mailbox = LatestFrameMailbox()
            self._worker = threading.Thread(target=self._work, args=(self._mailbox,), name="detector-inference",
                                            daemon=True)
            self._worker.start()
        except Exception as e:  # noqa: BLE001
            self.get_logger().error(f"activate failed: {e}")
            self._stop_and_destroy_endpoints()
            return TransitionCallbackReturn.FAILURE
        self._lifecycle = "active"
        topic = self.resolve_topic_name("image/compressed" if config.input_transport == "compressed" else "image")
        self.get_logger().info(f"active: listening on {topic} ({config.qos_reliability}, depth {config.qos_depth})")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_and_destroy_endpoints()
        self._lifecycle = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._lifecycle = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_and_destroy_endpoints()
        self._release()
        self._lifecycle = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_and_destroy_endpoints()
        self._release()
        self._lifecycle = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Stop the worker and release the model: call before destroy_node (idempotent)."""
        self._stop_and_destroy_endpoints()
        self._release()
        if self._lifecycle != "finalized":
            self._lifecycle = "finalized"

    def destroy_node(self) -> None:
        destroy_lifecycle_node(self)

    def stop_worker(self, timeout: float) -> bool:
        """Take no more frames and cancel the inference in flight; True once the worker has ended (within
        `timeout` s). The endpoints and the model stay: `close()` or the process exit releases them."""
        mailbox, worker = self._mailbox, self._worker
        self._mailbox = None
        if mailbox is not None and mailbox.close() is not None:
            self._stats.drop(SUPERSEDED)
        return cancel_and_join(worker, lambda: self._backend, timeout)

    def current_tau(self) -> float | None:
        """The threshold in use (the card's calibrated tau or the `threshold` parameter)."""
        with self._lock:
            return self._tau

    @property
    def card(self) -> ModelCard | None:
        return self._card

    @property
    def camera_info(self) -> CameraInfo | None:
        return self._camera_info

    def drop_counts(self) -> dict[str, int]:
        """Frames dropped since configure, by reason (the /diagnostics drops.* values)."""
        return self._stats.drops()

    def frames_out_total(self) -> int:
        return self._stats.frames_out_total

    def frames_in_total(self) -> int:
        return self._stats.frames_in_total

    def camera_info_rejected(self) -> int:
        """camera_info messages refused (zero size, non-finite intrinsics) since start."""
        return self._camera_info_rejected

    def output_errors_total(self) -> int:
        """Served frames whose image outputs failed (not drops: their alert was published)."""
        return self._stats.output_errors_total

    def published_counts(self) -> dict[str, int]:
        """Messages published per output topic since start (outputs without subscribers are not computed)."""
        return {row.topic: self._published[row.topic] for row in OUTPUTS if row.created_at == "activate"}

    def subscriber_count(self, topic: str) -> int:
        pub = self._pubs.get(topic)
        return 0 if pub is None else pub.get_subscription_count()

    def worker_alive(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    # -- configure helpers ------------------------------------------------------------------------------------------
    def _validated_parameters(self) -> DetectorConfig:
        """Every parameter checked; all problems reported together, each naming the parameter and its range."""
        errors = list(self._start_errors.values())
        values = {k: v for k, v in read_values(self).items() if k not in self._start_errors}
        config = None
        try:
            config = DetectorConfig.from_values(values)
        except ConfigError as e:
            errors.append(str(e))
        if config is not None:
            errors.extend(file_parameter_problems(config))
        if errors:
            raise ConfigError("; ".join(errors))
        return config

    @staticmethod
    def _backend_options(config: DetectorConfig) -> dict[str, Any]:
        # The backend warms up on a blank frame at construction (lazy allocations, kernel selection).
        options: dict[str, Any] = {"warmup": config.warmup_runs}
        if config.backend_threads:
            options["threads"] = config.backend_threads
        # The engine parameters of the TensorRT engines (native, or onnxruntime's TensorRT provider; the onnxruntime
        # backend ignores them without that provider). auto passes them on only when it picks one of those two
        # (create_backend): OpenVINO's own `precision` means something else.
        from densehybrid_ros.runtime import ENGINE_BACKENDS

        if config.backend in (*ENGINE_BACKENDS, "auto"):
            options.update(precision=config.engine_precision, engine_policy=config.engine_policy,
                           engine_cache_dir=config.engine_cache_dir)
        return options

    @staticmethod
    def _alert_config(config: DetectorConfig, card: ModelCard, tau: float) -> AlertConfig:
        return config.alert_config_for(card, tau)

    def _make_alert_detector(self, config: DetectorConfig, card: ModelCard, tau: float) -> ObstacleAlertDetector:
        return ObstacleAlertDetector(self._alert_config(config, card, tau))

    def _release(self) -> None:
        with self._lock:
            backend, self._backend = self._backend, None
            self._config = self._card = self._alert = self._alert_state = None
            self._tau = None
        close = getattr(backend, "close", None)
        if callable(close):
            close()

    def _restart_diagnostics_timer(self, period: float) -> None:
        if abs(self._diag_timer.timer_period_ns - period * 1e9) > 1:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(period, self._publish_diagnostics)

    def _stop_and_destroy_endpoints(self) -> None:
        self.stop_worker(timeout=10.0)
        self._worker = None
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs = {}

    # -- parameters -------------------------------------------------------------------------------------------------
    def _on_set_parameters(self, params: list) -> SetParametersResult:
        configured = self._lifecycle in ("inactive", "active")
        with self._lock:
            current = self._config if configured else None
            card = self._card
        new, reason = validate_update(params, current)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        if not configured:
            for p in params:
                self._start_errors.pop(p.name, None)
            return SetParametersResult(successful=True)
        try:
            tau = new.tau_for(card)
            alert_config = self._alert_config(new, card, tau)
        except (ConfigError, ValueError) as e:
            return SetParametersResult(successful=False, reason=str(e))
        with self._alert_lock:
            # The temporal evidence is kept: a raised alert clears through clean frames, never by a parameter change.
            if self._alert is not None:
                self._alert.set_config(alert_config)
        with self._lock:
            self._config, self._tau = new, tau
        changed = ", ".join(f"{p.name}={p.value!r}" for p in params)
        self.get_logger().info(f"run-time parameters updated: {changed} (tau={tau:.4g})")
        return SetParametersResult(successful=True)

    # -- executor thread: cheap checks, then the mailbox ------------------------------------------------------------
    def _max_pixels(self) -> int:
        config = self._config
        return config.max_image_pixels if config is not None else DetectorConfig().max_image_pixels

    # Two parameters, so rclpy passes the message info: its received_timestamp is when the middleware got the
    # frame, before the executor took it, so the measured node cost includes the executor's own delay.
    def _on_image(self, msg: Image, info: MessageInfo) -> None:
        self._stats.frame_in()
        try:
            enc = check_image(msg, self._max_pixels())
        except MalformedImage as e:
            self._drop_malformed(e, msg)
            return
        self._post(Frame(msg, enc, False, _arrival_ns(info)))

    def _on_compressed(self, msg: CompressedImage, info: MessageInfo) -> None:
        self._stats.frame_in()
        try:
            _, rgb_order = check_compressed(msg, self._max_pixels())
        except MalformedImage as e:
            self._drop_malformed(e, msg)
            return
        self._post(Frame(msg, None, rgb_order, _arrival_ns(info)))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        problem = camera_info_problem(msg)
        if problem:  # the last valid one stays in use
            self._camera_info_rejected += 1
            self.get_logger().warning(f"rejected a camera_info (frame_id {msg.header.frame_id!r}): {problem}",
                                      throttle_duration_sec=WARN_THROTTLE_S)
            return
        self._camera_info = msg

    def _post(self, frame: Frame) -> None:
        mailbox = self._mailbox
        if mailbox is None:
            return
        if mailbox.put(frame) is not None:
            self._stats.drop(SUPERSEDED)

    def _drop_malformed(self, e: MalformedImage, msg: Any) -> None:
        self._stats.drop(e.reason)
        self.get_logger().warning(
            f"dropped a frame (stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}, frame_id "
            f"{msg.header.frame_id!r}): {e}", throttle_duration_sec=WARN_THROTTLE_S)

    # -- worker thread ----------------------------------------------------------------------------------------------
    def _work(self, mailbox: LatestFrameMailbox[Frame]) -> None:
        while not mailbox.closed:
            frame = mailbox.take(timeout=0.2)
            if frame is None:
                continue
            try:
                self._process(frame)
            except MalformedImage as e:
                self._drop_malformed(e, frame.msg)
            except Exception as e:  # noqa: BLE001 - one bad frame or a transient runtime error must not kill the node
                if mailbox.closed:  # the node is stopping (its run cancelled by Backend.cancel): not a fault
                    self._stats.drop(SUPERSEDED)
                    return
                if not rclpy.ok(context=self.context):
                    return
                self._stats.drop(INFERENCE_ERROR)
                self.get_logger().error(f"frame failed: {type(e).__name__}: {e}",
                                        throttle_duration_sec=WARN_THROTTLE_S)

    def _wanted(self, topic: str) -> bool:
        pub = self._pubs.get(topic)
        return pub is not None and pub.get_subscription_count() > 0

    def _publish(self, topic: str, msg: Any) -> None:
        self._pubs[topic].publish(msg)
        self._published[topic] += 1

    def _publish_image(self, topic: str, array: np.ndarray, header) -> None:
        self._publish(topic, self._converter.to_msg(array, BY_TOPIC[topic].encoding, header))

    def _process(self, frame: Frame) -> None:
        # Stage times go to /diagnostics (`*_ms_mean`), so the node's cost on top of its model can be read on a
        # running vehicle, not only in a benchmark.
        started = time.monotonic()
        queue_s = 1e-9 * (time.time_ns() - frame.arrival_ns)  # waiting in the executor and the mailbox
        msg = frame.msg
        if frame.encoding is not None:
            rgb = self._converter.to_rgb(msg, frame.encoding)
        else:
            rgb = self._converter.compressed_to_rgb(msg, frame.rgb_order)
        with self._lock:
            backend, card, tau, config = self._backend, self._card, self._tau, self._config
        alert = self._alert
        if backend is None or alert is None:
            return
        t0 = time.monotonic()
        result = backend.infer(rgb)
        t1 = time.monotonic()
        header = msg.header  # every output carries the input's header unchanged
        h, w = rgb.shape[:2]
        self._last_frame_desc = f"{w}x{h} {getattr(msg, 'encoding', None) or getattr(msg, 'format', '')}"
        self._last_frame_id = header.frame_id

        class_id, score = result.class_id, result.anomaly_score
        with self._alert_lock:
            state = alert.update(score, class_id)
        self._alert_state = state
        # The alert goes out first: it is the safety output, the images are for people.
        self._publish("~/obstacle_alert",
                      alert_message.to_message(alert_message.report_from_state(state, w, h), header))
        t2 = time.monotonic()
        # The frame is served once its alert is out: a failure in the images for people is counted apart from the
        # drops (frames in = served + drops) and must not stop the frame's accounting.
        try:
            self._publish_images(rgb, class_id, score, state, header, card, tau, config)
        except Exception as e:  # noqa: BLE001
            self._stats.output_error()
            self.get_logger().error(f"image outputs failed for a served frame: {type(e).__name__}: {e}",
                                    throttle_duration_sec=WARN_THROTTLE_S)
        end = time.monotonic()
        self._stats.frame_out(self._latency_s(header), end - started, t1 - t0,
                              arrival_s=1e-9 * (time.time_ns() - frame.arrival_ns),
                              stages={"queue": queue_s, "convert": t0 - started, "alert": t2 - t1,
                                      "image_outputs": end - t2})

    def _publish_images(self, rgb: np.ndarray, class_id: np.ndarray, score: np.ndarray, state, header, card, tau,
                        config) -> None:
        """The image outputs and camera_info; each is computed only while someone subscribes to it."""
        for topic, image in image_outputs(self._wanted, rgb, class_id, score, state, card, tau, config,
                                          lambda: self._latency_s(header)):
            self._publish_image(topic, image, header)
        info = self._camera_info
        if info is not None and self._wanted("~/camera_info"):
            # Paired with the outputs (same header), so RViz's Camera display and image_proc-style consumers
            # can use ~/overlay + ~/camera_info like a camera.
            out = copy.copy(info)
            out.header = header
            self._publish("~/camera_info", out)

    def _latency_s(self, header) -> float:
        # From integers: rclpy's Time refuses a negative `sec`, which a camera (or an attacker) may send, and this
        # runs after the frame's alert is out.
        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        return (self.get_clock().now().nanoseconds - stamp_ns) * 1e-9

    # -- diagnostics ------------------------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        summary = self._stats.take_window()
        with self._lock:
            card, config, tau, state = self._card, self._config, self._tau, self._alert_state
        info = {"backend": self._backend_name if card is not None else "",
                "model": str(card.model_path()) if card is not None else self.get_parameter("model").value,
                "model_sha256": card.sha256 if card is not None else "",
                "threshold": f"{tau:.6g}" if tau is not None else "",
                "threshold_source": config.threshold_source if config is not None else "",
                "converter": self._converter.name,
                "last_frame": self._last_frame_desc}
        if state is not None:
            info["alert_state"] = state.state
        cam = self._camera_info
        info["camera_info"] = f"{cam.width}x{cam.height} {cam.distortion_model}" if cam is not None else "none"
        info["camera_info_rejected"] = str(self._camera_info_rejected)
        status = detector_status(f"{self.get_fully_qualified_name()}: detector", self._last_frame_id, self._lifecycle,
                                 summary, info, self._error)
        try:
            self._diag_pub.publish(diagnostic_array(self.get_clock().now().to_msg(), [status]))
        except Exception:  # noqa: BLE001 - the context is shutting down
            pass


def _arrival_ns(info: MessageInfo) -> int:
    # The middleware's reception time is on the system clock; 0 when the RMW does not provide it.
    received = info.get("received_timestamp") if info else 0
    return int(received) if received else time.time_ns()


# After a signal the process must be gone within 2 s (issue 15; `ros2 launch` escalates to SIGTERM after 5 s) even on
# a CPU shared with other processes. The steps of the stop get this long from the executor's wake-up, and the wait for
# a cancelled inference to return at most WORKER_WAIT_S of it; a step that hangs beyond is cut short by ending the
# process. Measured under load in docs/RELIABILITY.md section 5.
SHUTDOWN_BUDGET_S = 1.2
WORKER_WAIT_S = 0.3


class BoundedStop:
    """The node's stop after `executor.spin()` returned: each step timed, the whole bounded by `budget` s.

    A watchdog thread ends the process with `code` when the budget runs out; otherwise `exit()` ends it right after
    the ROS teardown, skipping the interpreter's own (freeing every module and object takes 0.3-0.9 s of CPU on a
    loaded machine and achieves nothing for a process about to exit). One line on stderr says what each step took.
    """

    def __init__(self, budget: float, code: int) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + budget
        self.code = code
        self.steps: list[tuple[str, float]] = []
        self.step = "start"
        self._t = self.started
        self._done = threading.Event()
        threading.Thread(target=self._watch, name="shutdown-watchdog", daemon=True).start()

    def mark(self, step: str) -> None:
        now = time.monotonic()
        self.steps.append((self.step, now - self._t))
        self.step, self._t = step, now

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def report(self, outcome: str) -> str:
        steps = ", ".join(f"{name} {seconds:.3f}" for name, seconds in self.steps[1:])
        return (f"[detector] shutdown {outcome} {time.monotonic() - self.started:.3f} s after the executor stopped "
                f"(monotonic {self.started:.3f}; {steps})")

    def _watch(self) -> None:
        if not self._done.wait(max(0.0, self.deadline - time.monotonic())):
            self.mark("watchdog")
            _exit_process(self.code, self.report(f"cut short in step '{self.steps[-1][0]}' at"))

    def exit(self) -> None:
        self.mark("exit")
        self._done.set()
        _exit_process(self.code, self.report("done"))


def _exit_process(code: int, line: str) -> None:
    print(line, file=sys.stderr, flush=True)
    try:
        sys.stdout.flush()
        import ctypes
        ctypes.CDLL(None).fflush(None)  # the C stdio buffers of rcutils' console logging
    except Exception:  # noqa: BLE001 - best effort: the exit must happen
        pass
    os._exit(code)


def shut_down(node: DetectorNode, executor: SingleThreadedExecutor, stop: BoundedStop) -> None:
    """Take no more frames, cancel the inference in flight, then destroy the node and the DDS participant so the
    other participants see its endpoints go at once (a process that just vanished stays matched for the 20 s DDS
    lease). The node is destroyed even when the worker has not yet left its run: rclpy frees a publisher only once
    no call is using it, and the worker stops at the publisher it finds destroyed. The model is not freed: its session
    may still be in the run, and the process exit frees it."""
    stop.mark("worker")
    node.stop_worker(timeout=min(WORKER_WAIT_S, stop.remaining()))
    stop.mark("executor")
    executor.shutdown(timeout_sec=stop.remaining())
    stop.mark("destroy_node")
    node.destroy_node()
    stop.mark("dds_teardown")
    rclpy.try_shutdown(context=node.context)
    node.context.destroy()


def destroy_lifecycle_node(node: LifecycleNode) -> None:
    """LifecycleNode.destroy_node, then the lifecycle state machine, which rclpy leaves alive. That state machine
    holds the node handle, the node handle holds the context, and so the DDS participant outlived destroy_node. The
    process then ends by os._exit (BoundedStop) and the participant's 64 MB shared-memory segment (params/fastdds.xml)
    stayed in /dev/shm: 2 segments per node process, 20 GB after a day of test runs, until a CI run was killed for
    memory (docs/RELIABILITY.md, known issue 12)."""
    LifecycleNode.destroy_node(node)
    machine = getattr(node, "_state_machine", None)
    if machine is not None:
        machine.destroy_when_not_in_use()


def cancel_and_join(worker: threading.Thread | None, backend_of, timeout: float) -> bool:
    """End a node's inference worker within `timeout` s: True once it has ended (or there is none, or it is the
    caller). `backend_of()` reads the node's current backend, which a reconfigure may swap meanwhile."""
    if worker is None or worker is threading.current_thread():
        return True
    # Cancel instead of waiting for the run (seconds on a loaded CPU: `ros2 launch` escalates to SIGTERM after
    # 5 s). Repeated, since the worker may start a run just after a cancel.
    deadline = time.monotonic() + timeout
    while worker.is_alive() and time.monotonic() < deadline:
        backend = backend_of()
        if backend is not None:
            backend.cancel()
        worker.join(timeout=0.02)
    return not worker.is_alive()


def run_until_stopped(make_node, args: list[str] | None = None) -> int:
    """Spin a node until SIGINT/SIGTERM, then the bounded stop that ends the process (exit code 0; 1 with the
    traceback when spinning failed for any other reason). `make_node` builds the node once rclpy is up."""
    # A node respawned after crashes would otherwise leave 64 MB of RAM in /dev/shm per crash (fastdds_shm.py);
    # only segments whose owner process has ended are removed.
    freed = remove_stale_segments()
    try:
        rclpy.init(args=sys.argv if args is None else args)
    except RCLError as e:
        # rcl refuses a --params-file it cannot parse (or other bad --ros-args) before any node exists: one line
        # naming it, not a traceback; exit 2, a usage error a respawn cannot fix.
        print(f"{NODE_NAME}: cannot start ROS: {str(e).strip()}", file=sys.stderr)
        return 2
    node = make_node()
    if freed.removed:
        node.get_logger().info(freed.summary())
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        spin_until_signal(executor, node.context)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    else:
        code = 0
    stop = BoundedStop(SHUTDOWN_BUDGET_S, code)
    shut_down(node, executor, stop)
    stop.exit()
    return code  # not reached: stop.exit() ends the process


def main(args: list[str] | None = None) -> int:
    return run_until_stopped(DetectorNode, args)


if __name__ == "__main__":
    sys.exit(main())
