"""The `multi_detector` lifecycle node: one model, several cameras, one batched inference per round.

Camera `c` (parameter `cameras`) is read from `<c>/<camera_image_topic>` and answered on `<c>/detector/<output>`,
the topics of a `detector` node in namespace `c`, each output with the header of that camera's frame. Each camera
has its own one-slot mailbox (latest frame wins, per camera: ros/latest_frames.py), its own obstacle alert (the
hysteresis follows one camera's frames), its own frame accounting and its own /diagnostics status, named
`/<c>/detector: detector` like a detector node's. The worker takes whatever cameras have a new frame, runs them
through the model in one call (runtime/batch.py: each frame resized to the graph size as the single-camera node
does, outputs mapped back to that frame's size) and publishes per camera, so the batch holds 1..N frames and a
camera that stops publishing only drops out of it.

The model must have a batch axis (`densehybrid batch-graph --model <model>` writes `<model>_batch.onnx`; an empty
`model` means the batch copy of the shipped model, made that way); every other parameter is the
detector's (config/detector.py), applied to every camera; the three parameters of this node are in
config/multi_camera.py. Lifecycle, threading and shutdown follow ros/detector_node.py.
"""
from __future__ import annotations

import copy
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from densehybrid_ros.config.detector import DetectorConfig
from densehybrid_ros.config.multi_camera import NAMES as CAMERA_PARAMETERS
from densehybrid_ros.config.multi_camera import SPECS as CAMERA_SPECS
from densehybrid_ros.config.multi_camera import MultiCameraConfig, check_backend
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.core.alert import ObstacleAlertDetector
from densehybrid_ros.ros import alert_message
from densehybrid_ros.ros.conversions import (ImageConverter, MalformedImage, camera_info_problem, check_compressed,
                                             check_image, quiet_decoder_logging)
from densehybrid_ros.ros.detector_node import (NODE_NAME, WARN_THROTTLE_S, Frame, _arrival_ns, cancel_and_join,
                                               default_model_dirs, destroy_lifecycle_node, find_default_model,
                                               run_until_stopped, sensor_qos)
from densehybrid_ros.ros.diagnostics import (INFERENCE_ERROR, SUPERSEDED, FrameStats, detector_status,
                                             diagnostic_array)
from densehybrid_ros.ros.latest_frames import LatestFrames
from densehybrid_ros.ros.parameters import declare_parameters, read_values, validate_update, warn_unknown_overrides
from densehybrid_ros.ros.topics import BY_TOPIC, OUTPUTS, image_outputs
from densehybrid_ros.runtime.base import InputError

MULTI_NODE_NAME = "multi_detector"


def resolve_batch_model_path(model: str) -> Path:
    """The `model` parameter, or when it is empty the batch copy of the shipped default model beside it."""
    from densehybrid_ros.runtime.batch_graph import default_out_path

    if model:
        return Path(model).expanduser()
    default = find_default_model(default_model_dirs())
    batch = default_out_path(default)
    if not batch.is_file():
        raise ConfigError(f"parameter 'model' is empty and the batch copy of the default model ({batch}) does not "
                          f"exist; make it once with `densehybrid batch-graph --model {default}` or set "
                          "model:=<a graph with a batch axis>")
    return batch


@dataclass
class Camera:
    """One camera's endpoints, alert and accounting."""

    name: str
    alert: ObstacleAlertDetector
    stats: FrameStats = field(default_factory=FrameStats)
    pubs: dict[str, Any] = field(default_factory=dict)      # output row topic ("~/semantic") -> publisher
    camera_info: CameraInfo | None = None
    camera_info_rejected: int = 0
    alert_state: Any = None
    last_frame_desc: str = ""
    last_frame_id: str = ""
    published: Counter = field(default_factory=Counter)

    def output_topic(self, row_topic: str) -> str:
        return f"{self.name}/{NODE_NAME}/{row_topic.removeprefix('~/')}"


class MultiCameraNode(LifecycleNode):
    def __init__(self, node_name: str = MULTI_NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        quiet_decoder_logging()
        self._start_errors = declare_parameters(self)
        self._start_errors.update(self._declare_camera_parameters())
        for message in self._start_errors.values():
            self.get_logger().error(message)
        self.unknown_parameters = warn_unknown_overrides(self)
        self._lifecycle = "unconfigured"
        self._error = ""
        self._lock = threading.Lock()        # config, card, backend, tau and cameras between threads
        self._alert_lock = threading.Lock()  # the alert detectors are stateful
        self._config: DetectorConfig | None = None
        self._cameras_config: MultiCameraConfig | None = None
        self._card = None
        self._backend = None
        self._tau: float | None = None
        self._cameras: dict[str, Camera] = {}
        self._converter = ImageConverter(prefer_cv_bridge=False)
        self._slots: LatestFrames[str, Frame] | None = None
        self._worker: threading.Thread | None = None
        self._subs: list[Any] = []
        self._batch_lock = threading.Lock()
        self._batch_sizes: Counter[int] = Counter()  # since configure
        self._batch_seconds: list[float] = []        # this diagnostics window
        self.add_on_set_parameters_callback(self._on_set_parameters)

        diagnostics = BY_TOPIC["/diagnostics"]
        self._diag_pub = self.create_publisher(diagnostics.msg_type, diagnostics.topic, diagnostics.qos)
        period = self.get_parameter("diagnostics_period").value
        self._diag_timer = self.create_timer(float(period), self._publish_diagnostics)

        if self.get_parameter("autostart").value:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    def _declare_camera_parameters(self) -> dict[str, str]:
        """This node's parameters (string and string-array); a value of the wrong type is reported, not raised."""
        errors = {}
        for spec in CAMERA_SPECS:
            kind = ParameterType.PARAMETER_STRING_ARRAY if isinstance(spec.default, list) else \
                ParameterType.PARAMETER_STRING
            descriptor = ParameterDescriptor(name=spec.name, type=kind, description=spec.description,
                                             additional_constraints="read at configure")
            try:
                self.declare_parameter(spec.name, spec.default, descriptor)
            except (InvalidParameterValueException, InvalidParameterTypeException) as e:
                errors[spec.name] = f"parameter '{spec.name}' rejected: {e}; expected: {spec.description}"
                self.declare_parameter(spec.name, spec.default, descriptor, ignore_override=True)
        return errors

    # -- lifecycle --------------------------------------------------------------------------------------------------
    @property
    def lifecycle_state(self) -> str:
        return self._lifecycle

    @property
    def error(self) -> str:
        return self._error

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(self._cameras)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            config, cameras_config = self._validated_parameters()
            model_path = resolve_batch_model_path(config.model)
            from densehybrid_ros.runtime import resolve_card
            from densehybrid_ros.runtime.batch import load_batch_backend

            card = resolve_card(model_path)
            tau = config.tau_for(card)
            options: dict[str, Any] = {"warmup": config.warmup_runs}
            if config.backend_threads:
                options["threads"] = config.backend_threads
            backend = load_batch_backend(card, **options)
            backend.warm_up_batch(len(cameras_config.cameras))
            alert_config = config.alert_config_for(card, tau)
            cameras = {name: Camera(name, ObstacleAlertDetector(alert_config)) for name in cameras_config.cameras}
        except Exception as e:  # noqa: BLE001 - any failure must leave the node alive and unconfigured
            self._error = f"configure failed: {e}"
            self.get_logger().error(self._error)
            self._release()
            return TransitionCallbackReturn.FAILURE
        with self._lock:
            self._config, self._cameras_config, self._card, self._backend = config, cameras_config, card, backend
            self._tau, self._cameras = tau, cameras
        self._converter = ImageConverter(prefer_cv_bridge=config.prefer_cv_bridge)
        self._error = ""
        with self._batch_lock:
            self._batch_sizes.clear()
            self._batch_seconds = []
        if abs(self._diag_timer.timer_period_ns - config.diagnostics_period * 1e9) > 1:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(config.diagnostics_period, self._publish_diagnostics)
        self._lifecycle = "inactive"
        self.get_logger().info(
            f"configured: {len(cameras)} cameras ({', '.join(cameras)}), model {card.model_path()} (batch axis), "
            f"K={card.num_classes}, tau={tau:.4g} ({config.threshold_source})")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        config, cams = self._config, self._cameras_config
        with self._alert_lock:  # as the detector: each camera's alert starts afresh after a pause
            for camera in self._cameras.values():
                camera.alert.reset()
                camera.alert_state = None
        try:
            qos = sensor_qos(config.qos_reliability, config.qos_depth)
            self._slots = LatestFrames()
            for camera in self._cameras.values():
                for row in OUTPUTS:
                    if row.created_at == "activate":
                        camera.pubs[row.topic] = self.create_publisher(row.msg_type, camera.output_topic(row.topic),
                                                                       row.qos)
                image = f"{camera.name}/{cams.camera_image_topic}"
                if config.input_transport == "compressed":
                    self._subs.append(self.create_subscription(
                        CompressedImage, f"{image}/compressed", self._on_compressed_for(camera), qos))
                else:
                    self._subs.append(self.create_subscription(Image, image, self._on_image_for(camera), qos))
                if config.use_camera_info:
                    self._subs.append(self.create_subscription(
                        CameraInfo, f"{camera.name}/{cams.camera_info_topic}", self._on_camera_info_for(camera),
                        qos))
            self._worker = threading.Thread(target=self._work, args=(self._slots,), name="multi-detector-inference",
                                            daemon=True)
            self._worker.start()
        except Exception as e:  # noqa: BLE001
            self.get_logger().error(f"activate failed: {e}")
            self._stop_and_destroy_endpoints()
            return TransitionCallbackReturn.FAILURE
        self._lifecycle = "active"
        self.get_logger().info(f"active: {len(self._cameras)} cameras, outputs under <camera>/{NODE_NAME}/")
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
        self._stop_and_destroy_endpoints()
        self._release()
        self._lifecycle = "finalized"

    def batch_sizes(self) -> dict[int, int]:
        """How many batched inferences of each size ran since configure."""
        with self._batch_lock:
            return dict(self._batch_sizes)

    def frames_out_total(self, camera: str) -> int:
        return self._cameras[camera].stats.frames_out_total

    # -- configure helpers ------------------------------------------------------------------------------------------
    def _validated_parameters(self) -> tuple[DetectorConfig, MultiCameraConfig]:
        errors = list(self._start_errors.values())
        values = {k: v for k, v in read_values(self).items() if k not in self._start_errors}
        config = cameras = None
        try:
            config = DetectorConfig.from_values(values)
            check_backend(config.backend)
        except ConfigError as e:
            errors.append(str(e))
        own = {name: _plain(self.get_parameter(name).value) for name in CAMERA_PARAMETERS
               if name not in self._start_errors}
        try:
            cameras = MultiCameraConfig.from_values(own)
        except ConfigError as e:
            errors.append(str(e))
        if errors:
            raise ConfigError("; ".join(errors))
        return config, cameras

    def _release(self) -> None:
        with self._lock:
            backend, self._backend = self._backend, None
            self._config = self._card = self._tau = None
            self._cameras = {}
        if backend is not None:
            backend.close()

    def destroy_node(self) -> None:
        destroy_lifecycle_node(self)

    def stop_worker(self, timeout: float) -> bool:
        """Take no more frames and cancel the batch in flight; True once the worker has ended (within `timeout` s).
        The endpoints and the model stay (the detector's contract, used by its bounded stop after a signal)."""
        slots, worker = self._slots, self._worker
        self._slots = self._worker = None
        if slots is not None:
            for name in slots.close():
                camera = self._cameras.get(name)
                if camera is not None:
                    camera.stats.drop(SUPERSEDED)
        return cancel_and_join(worker, lambda: self._backend, timeout)

    def _stop_and_destroy_endpoints(self) -> None:
        self.stop_worker(timeout=10.0)
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        for camera in self._cameras.values():
            for pub in camera.pubs.values():
                self.destroy_publisher(pub)
            camera.pubs = {}

    # -- parameters -------------------------------------------------------------------------------------------------
    def _on_set_parameters(self, params: list) -> SetParametersResult:
        configured = self._lifecycle in ("inactive", "active")
        own = [p for p in params if p.name in CAMERA_PARAMETERS]
        if own and configured:
            return SetParametersResult(successful=False, reason=(
                f"parameter '{own[0].name}' is read at configure and cannot change while the node is configured; "
                "deactivate and clean up first"))
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
            alert_config = new.alert_config_for(card, tau)
        except (ConfigError, ValueError) as e:
            return SetParametersResult(successful=False, reason=str(e))
        with self._alert_lock:
            for camera in self._cameras.values():
                camera.alert.set_config(alert_config)  # each camera keeps its temporal evidence
        with self._lock:
            self._config, self._tau = new, tau
        return SetParametersResult(successful=True)

    # -- executor thread: cheap checks, then the camera's slot -------------------------------------------------------
    def _max_pixels(self) -> int:
        config = self._config
        return config.max_image_pixels if config is not None else DetectorConfig().max_image_pixels

    def _on_image_for(self, camera: Camera):
        def on_image(msg: Image, info) -> None:
            camera.stats.frame_in()
            try:
                enc = check_image(msg, self._max_pixels())
            except MalformedImage as e:
                self._drop_malformed(camera, e, msg)
                return
            self._post(camera, Frame(msg, enc, False, _arrival_ns(info)))
        return on_image

    def _on_compressed_for(self, camera: Camera):
        def on_compressed(msg: CompressedImage, info) -> None:
            camera.stats.frame_in()
            try:
                _, rgb_order = check_compressed(msg, self._max_pixels())
            except MalformedImage as e:
                self._drop_malformed(camera, e, msg)
                return
            self._post(camera, Frame(msg, None, rgb_order, _arrival_ns(info)))
        return on_compressed

    def _on_camera_info_for(self, camera: Camera):
        def on_camera_info(msg: CameraInfo) -> None:
            problem = camera_info_problem(msg)
            if problem:
                camera.camera_info_rejected += 1
                self.get_logger().warning(f"{camera.name}: rejected a camera_info: {problem}",
                                          throttle_duration_sec=WARN_THROTTLE_S)
                return
            camera.camera_info = msg
        return on_camera_info

    def _post(self, camera: Camera, frame: Frame) -> None:
        slots = self._slots
        if slots is not None and slots.put(camera.name, frame) is not None:
            camera.stats.drop(SUPERSEDED)

    def _drop_malformed(self, camera: Camera, e: MalformedImage, msg: Any) -> None:
        camera.stats.drop(e.reason)
        self.get_logger().warning(
            f"{camera.name}: dropped a frame (stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}, "
            f"frame_id {msg.header.frame_id!r}): {e}", throttle_duration_sec=WARN_THROTTLE_S)

    # -- worker thread ----------------------------------------------------------------------------------------------
    def _work(self, slots: LatestFrames[str, Frame]) -> None:
        while not slots.closed:
            frames = slots.take_all(timeout=0.2)
            if not frames:
                continue
            # Frames of this batch not yet served or dropped: a failure counts each frame once, and only those.
            pending = set(frames)
            try:
                self._process_batch(frames, pending)
            except Exception as e:  # noqa: BLE001 - a failed batch must not kill the node
                if slots.closed or not rclpy.ok(context=self.context):
                    for name in pending:
                        self._cameras[name].stats.drop(SUPERSEDED)
                    return
                for name in pending:
                    self._cameras[name].stats.drop(INFERENCE_ERROR)
                self.get_logger().error(f"batch of {len(frames)} failed: {type(e).__name__}: {e}",
                                        throttle_duration_sec=WARN_THROTTLE_S)

    def _process_batch(self, frames: dict[str, Frame], pending: set[str]) -> None:
        started = time.monotonic()
        with self._lock:
            backend, card, tau, config, cameras = self._backend, self._card, self._tau, self._config, self._cameras
        if backend is None:
            return
        names, rgbs, queue_s = [], [], {}
        for name, frame in frames.items():
            queue_s[name] = 1e-9 * (time.time_ns() - frame.arrival_ns)
            try:
                if frame.encoding is not None:
                    rgb = self._converter.to_rgb(frame.msg, frame.encoding)
                else:
                    rgb = self._converter.compressed_to_rgb(frame.msg, frame.rgb_order)
            except MalformedImage as e:  # this camera's frame only; the others go on
                self._drop_malformed(cameras[name], e, frame.msg)
                pending.discard(name)
                continue
            try:
                # One camera's frame the graph cannot take (a side outside a dynamic graph's range) would fail the
                # whole batch in infer_batch: refuse it here, for its camera alone.
                backend.check_frame(rgb)
            except InputError as e:
                cameras[name].stats.drop(INFERENCE_ERROR)
                pending.discard(name)
                self.get_logger().error(f"{name}: frame refused by the model: {e}",
                                        throttle_duration_sec=WARN_THROTTLE_S)
                continue
            rgbs.append(rgb)
            names.append(name)
        if not names:
            return
        t0 = time.monotonic()
        results = backend.infer_batch(rgbs)
        t1 = time.monotonic()
        with self._batch_lock:
            self._batch_sizes[len(names)] += 1
            self._batch_seconds.append(t1 - t0)
        # Every camera's alert goes out before any camera's image outputs are computed: the alert is what the
        # vehicle acts on, and camera k's must not wait for the overlays of cameras 1..k-1.
        alerted = []
        for name, rgb, result in zip(names, rgbs, results):
            camera, frame = cameras[name], frames[name]
            header = frame.msg.header  # this camera's frame's header, unchanged
            h, w = rgb.shape[:2]
            camera.last_frame_desc = f"{w}x{h} {getattr(frame.msg, 'encoding', None) or getattr(frame.msg, 'format', '')}"
            camera.last_frame_id = header.frame_id
            t_cam = time.monotonic()
            with self._alert_lock:
                state = camera.alert.update(result.anomaly_score, result.class_id)
            camera.alert_state = state
            self._publish(camera, "~/obstacle_alert",
                          alert_message.to_message(alert_message.report_from_state(state, w, h), header))
            alerted.append((name, rgb, result, state, time.monotonic() - t_cam))
        for name, rgb, result, state, alert_s in alerted:
            camera, frame = cameras[name], frames[name]
            header = frame.msg.header
            t2 = time.monotonic()
            try:
                self._publish_images(camera, rgb, result.class_id, result.anomaly_score, state, header, card, tau,
                                     config)
            except Exception as e:  # noqa: BLE001 - the frame is served once its alert is out
                camera.stats.output_error()
                self.get_logger().error(f"{camera.name}: image outputs failed for a served frame: "
                                        f"{type(e).__name__}: {e}", throttle_duration_sec=WARN_THROTTLE_S)
            end = time.monotonic()
            camera.stats.frame_out(self._latency_s(header), end - started, t1 - t0,
                                   arrival_s=1e-9 * (time.time_ns() - frame.arrival_ns),
                                   stages={"queue": queue_s[name], "convert": t0 - started, "alert": alert_s,
                                           "image_outputs": end - t2})
            pending.discard(name)

    def _wanted(self, camera: Camera, topic: str) -> bool:
        pub = camera.pubs.get(topic)
        return pub is not None and pub.get_subscription_count() > 0

    def _publish(self, camera: Camera, topic: str, msg: Any) -> None:
        camera.pubs[topic].publish(msg)
        camera.published[topic] += 1

    def _publish_image(self, camera: Camera, topic: str, array: np.ndarray, header) -> None:
        self._publish(camera, topic, self._converter.to_msg(array, BY_TOPIC[topic].encoding, header))

    def _publish_images(self, camera: Camera, rgb: np.ndarray, class_id: np.ndarray, score: np.ndarray, state,
                        header, card, tau, config) -> None:
        """As the detector's: each image output only while someone subscribes to it."""
        for topic, image in image_outputs(lambda t: self._wanted(camera, t), rgb, class_id, score, state, card, tau,
                                          config, lambda: self._latency_s(header)):
            self._publish_image(camera, topic, image, header)
        info = camera.camera_info
        if info is not None and self._wanted(camera, "~/camera_info"):
            out = copy.copy(info)
            out.header = header
            self._publish(camera, "~/camera_info", out)

    def _latency_s(self, header) -> float:
        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        return (self.get_clock().now().nanoseconds - stamp_ns) * 1e-9

    # -- diagnostics ------------------------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        with self._lock:
            card, config, tau, cameras = self._card, self._config, self._tau, dict(self._cameras)
        with self._batch_lock:
            sizes, seconds = dict(self._batch_sizes), self._batch_seconds
            self._batch_seconds = []
        batches = sum(sizes.values())
        shared = {"backend": "onnxruntime (batched)" if card is not None else "",
                  "model": str(card.model_path()) if card is not None else self.get_parameter("model").value,
                  "model_sha256": card.sha256 if card is not None else "",
                  "threshold": f"{tau:.6g}" if tau is not None else "",
                  "threshold_source": config.threshold_source if config is not None else "",
                  "converter": self._converter.name,
                  "multi_camera_node": self.get_fully_qualified_name(),
                  "cameras": ", ".join(cameras),
                  "batches_total": str(batches),
                  "batch_size_mean": f"{sum(k * v for k, v in sizes.items()) / batches:.2f}" if batches else "n/a",
                  "batch_infer_ms_mean": f"{1e3 * sum(seconds) / len(seconds):.2f}" if seconds else "n/a"}
        statuses = []
        if not cameras:  # unconfigured: one status says why
            statuses.append(detector_status(f"{self.get_fully_qualified_name()}: multi_detector", "",
                                            self._lifecycle, None, shared, self._error))
        for camera in cameras.values():
            info = dict(shared, last_frame=camera.last_frame_desc,
                        camera_info_rejected=str(camera.camera_info_rejected))
            if camera.alert_state is not None:
                info["alert_state"] = camera.alert_state.state
            cam = camera.camera_info
            info["camera_info"] = f"{cam.width}x{cam.height} {cam.distortion_model}" if cam is not None else "none"
            # Named like a detector node in the camera's namespace, so per-camera monitors need no change.
            name = f"{self.resolve_topic_name(f'{camera.name}/{NODE_NAME}')}: detector"
            statuses.append(detector_status(name, camera.last_frame_id, self._lifecycle, camera.stats.take_window(),
                                            info, self._error))
        try:
            self._diag_pub.publish(diagnostic_array(self.get_clock().now().to_msg(), statuses))
        except Exception:  # noqa: BLE001 - the context is shutting down
            pass


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return list(value) if isinstance(value, tuple) else value


def main(args: list[str] | None = None) -> int:
    return run_until_stopped(MultiCameraNode, args)  # the detector's bounded stop after a signal


if __name__ == "__main__":
    sys.exit(main())
