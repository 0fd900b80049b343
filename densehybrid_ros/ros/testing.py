"""Helpers for tests and demos of the node: an untrained model from the real exporter, a spinning executor, and
a probe node that publishes camera frames and records everything the detector publishes.

No torch here: the model is exported by running `densehybrid export` in a subprocess.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import traceback
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, ShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from densehybrid_ros.ros import alert_message
from densehybrid_ros.ros.topics import IMAGE_OUTPUTS


def export_untrained_model(out: Path, height: int, width: int, seed: int = 0, decoder_width: int = 32,
                           dynamic: bool = False, timeout: float = 300.0) -> Path:
    """`densehybrid export --untrained` into `out` (an .onnx path); returns it. The card is written beside it."""
    cmd = [sys.executable, "-m", "densehybrid_ros.cli", "export", "--untrained", "--out", str(out),
           "--height", str(height), "--width", str(width), "--seed", str(seed),
           "--decoder-width", str(decoder_width), "--no-verify"]
    if dynamic:
        cmd.append("--dynamic")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # the machine is shared
    if done.returncode != 0 or not Path(out).is_file():
        raise RuntimeError(f"export failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    return Path(out)


class Spinner:
    """Spin nodes on a background executor thread (the detector's executor thread in production).

    A callback that raises stops the executor (rclpy re-raises it from `spin`). The exception is printed with its
    traceback at once, kept in `error`, and raised again by `check()` and `stop()`, so a test fails with the
    callback's traceback instead of a timeout waiting for messages that will never come. Only the shutdown of the
    ROS context (the end of a test) ends the spin quietly.
    """

    def __init__(self, *nodes: Node, threads: int = 2) -> None:
        self.executor = MultiThreadedExecutor(num_threads=threads)
        for n in nodes:
            self.executor.add_node(n)
        self.error: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except (ExternalShutdownException, ShutdownException):
            pass  # the context was shut down: the end of a test
        except Exception as e:  # noqa: BLE001 - surfaced through check()/stop()
            if self._stopping:
                return  # endpoints torn down under a spin that was being stopped
            self.error = e
            traceback.print_exception(e, file=sys.stderr)

    def check(self) -> None:
        """Raise the exception that stopped the executor, if one did."""
        if self.error is not None:
            raise RuntimeError(f"the executor stopped on an exception in a callback: {self.error!r}") from self.error

    def add(self, node: Node) -> None:
        self.executor.add_node(node)

    def remove(self, node: Node) -> None:
        self.executor.remove_node(node)

    def stop(self) -> None:
        """Shut the executor down; raise the exception that stopped it earlier, if any."""
        self._stopping = True
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=5.0)
        self.check()


def wait_for(condition: Callable[[], Any], timeout: float, period: float = 0.01) -> Any:
    """Poll `condition` until it returns something truthy (returned) or `timeout` seconds pass (None)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(period)
    return None


class Probe(Node):
    """Publishes camera frames to a detector and records its outputs (with arrival times)."""

    def __init__(self, detector_ns: str = "", detector_name: str = "detector", name: str = "probe",
                 reliable_input: bool = False, outputs: tuple[str, ...] = IMAGE_OUTPUTS, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        ns = detector_ns.rstrip("/")
        private = f"{ns}/{detector_name}"
        qos_in = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1 if not reliable_input else 10,
                            reliability=ReliabilityPolicy.RELIABLE if reliable_input
                            else ReliabilityPolicy.BEST_EFFORT)
        self.image_pub = self.create_publisher(Image, f"{ns}/image", qos_in)
        self.compressed_pub = self.create_publisher(CompressedImage, f"{ns}/image/compressed", qos_in)
        self.info_pub = self.create_publisher(CameraInfo, f"{ns}/camera_info", qos_in)
        self.lock = threading.Lock()
        # topic -> [(arrival time on this node's clock in ns, message)]
        self.received: dict[str, list[tuple[int, Any]]] = defaultdict(list)
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self._subs = []
        for topic in outputs:
            self._subs.append(self.create_subscription(Image, f"{private}/{topic}", self._recorder(topic), out_qos))
        self._subs.append(self.create_subscription(alert_message.ALERT_TYPE, f"{private}/obstacle_alert",
                                                   self._recorder("obstacle_alert"), out_qos))
        self._subs.append(self.create_subscription(CameraInfo, f"{private}/camera_info",
                                                   self._recorder("camera_info"), out_qos))
        self._subs.append(self.create_subscription(DiagnosticArray, "/diagnostics", self._recorder("diagnostics"),
                                                   out_qos))

    def _recorder(self, topic: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            with self.lock:
                self.received[topic].append((self.get_clock().now().nanoseconds, msg))
        return record

    def messages(self, topic: str) -> list[Any]:
        with self.lock:
            return [m for _, m in self.received[topic]]

    def clear(self) -> None:
        with self.lock:
            self.received.clear()

    def connected(self, detector_subscribes: str = "image") -> bool:
        """The detector's subscription and all of our output subscriptions are matched."""
        pub = self.image_pub if detector_subscribes == "image" else self.compressed_pub
        return pub.get_subscription_count() > 0 and all(s.get_publisher_count() > 0 for s in self._subs[:-1])

    def disconnected(self, detector_subscribes: str = "image") -> bool:
        """Every endpoint of the detector is gone from the graph (after a deactivate): waiting for this before the
        next activate makes `connected()` mean the new endpoints, not the old ones still listed."""
        pub = self.image_pub if detector_subscribes == "image" else self.compressed_pub
        return pub.get_subscription_count() == 0 and all(s.get_publisher_count() == 0 for s in self._subs[:-1])

    def stamped(self, stamp_ns: int, topic: str) -> Any:
        """The message on `topic` whose header stamp is `stamp_ns`, or None."""
        for msg in self.messages(topic):
            st = msg.header.stamp
            if st.sec * 1_000_000_000 + st.nanosec == stamp_ns:
                return msg
        return None

    def detector_status(self, name_contains: str = "detector") -> Any:
        """The latest DiagnosticStatus of the detector, or None."""
        for msg in reversed(self.messages("diagnostics")):
            for st in msg.status:
                if name_contains in st.name and "obstacle" not in st.name:
                    return st
        return None


def status_values(status: Any) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


@contextmanager
def detector_with_probe(namespace: str, parameters: dict[str, Any], probe_name: str
                        ) -> Iterator[tuple[Any, Probe]]:
    """An active DetectorNode in `namespace` and a connected Probe, spinning in the background (rclpy initialised
    here); on exit everything is released and rclpy shut down. For the demo and the scripts that drive the real
    node over DDS from one process."""
    import rclpy
    from rclpy.parameter import Parameter

    from densehybrid_ros.ros.detector_node import DetectorNode

    rclpy.init()
    node = DetectorNode(namespace=namespace,
                        parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()])
    probe = Probe(detector_ns=namespace, name=probe_name)
    spinner = Spinner(node, probe)
    try:
        if node.lifecycle_state != "active":
            raise RuntimeError(f"detector did not activate: {node.error}")
        if not wait_for(lambda: probe.connected("image"), 15.0):
            raise RuntimeError("DDS discovery between the probe and the detector did not complete")
        yield node, probe
    finally:
        spinner.stop()
        node.close()
        node.destroy_node()
        probe.destroy_node()
        rclpy.try_shutdown()


def write_shape_sensitive_model(out: Path, card_from: Path) -> Path:
    """A real ONNX model with the node's graph contract (uint8 image of any size in, class_id / anomaly_score /
    confidence out) whose graph fails inside ONNX Runtime for frames with an odd number of pixels: it reshapes the
    (1, H, W) grey image to (1, -1, 2) and back. It gives the tests a genuine backend error in the middle of an
    inference for a frame the node accepts, without mocking the node or the backend. The card (classes, colours)
    is copied from `card_from` with this model's size (dynamic) and sha256. Needs the `onnx` package (dev only)."""
    import onnx
    from onnx import TensorProto, helper

    from densehybrid_ros.config.model_card import card_path_for, load_model_card, sha256_of

    out = Path(out)
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["grey"], axes=[3], keepdims=0),
        helper.make_node("Shape", ["grey"], ["grey_shape"]),
        helper.make_node("Reshape", ["grey", "pairs"], ["paired"]),  # fails when H*W is odd
        helper.make_node("Reshape", ["paired", "grey_shape"], ["back"]),
        helper.make_node("Sub", ["back", "mid"], ["anomaly_score"]),
        helper.make_node("Div", ["back", "full"], ["confidence"]),
        helper.make_node("Mul", ["back", "zero"], ["zeros"]),
        helper.make_node("Cast", ["zeros"], ["class_id"], to=TensorProto.UINT8),
    ]
    inits = [helper.make_tensor("pairs", TensorProto.INT64, [3], [1, -1, 2]),
             helper.make_tensor("mid", TensorProto.FLOAT, [], [128.0]),
             helper.make_tensor("full", TensorProto.FLOAT, [], [255.0]),
             helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    graph = helper.make_graph(
        nodes, "shape_sensitive",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, "H", "W", 3])],
        [helper.make_tensor_value_info("class_id", TensorProto.UINT8, [1, "H", "W"]),
         helper.make_tensor_value_info("anomaly_score", TensorProto.FLOAT, [1, "H", "W"]),
         helper.make_tensor_value_info("confidence", TensorProto.FLOAT, [1, "H", "W"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    tmp = out.with_name(out.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    card = load_model_card(card_from, verify_sha=False)
    card.name, card.model_file, card.sha256 = out.stem, out.name, sha256_of(out)
    card.input_height = card.input_width = None
    card.save(card_path_for(out))
    return out
