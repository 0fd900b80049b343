"""The node's output topics: one table (topic, message type, encoding, QoS) for the node, its tests and its docs.

The node creates its publishers from `OUTPUTS` and publishes each image with the row's encoding; `IMAGE_OUTPUTS`
(the image topics a probe subscribes to) comes from it, and tests/test_topics.py checks that the topic table in
docs/NODE.md lists the same rows, so the code, the tests and the docs cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from densehybrid_ros.core.open_set import open_set_map
from densehybrid_ros.core.overlay import colourise, overlay, status_text
from densehybrid_ros.ros import alert_message


@dataclass(frozen=True)
class OutputTopic:
    topic: str                # "~/x" is private to the node; "/diagnostics" is global
    msg_type: type
    encoding: str | None      # sensor_msgs/Image outputs only
    depth: int                # reliable, volatile, keep last `depth`
    created_at: str = "activate"   # "construction" for the outputs published in every lifecycle state

    @property
    def type_name(self) -> str:
        """"sensor_msgs/Image" (the message's package, as ROS tools write it)."""
        return f"{self.msg_type.__module__.split('.')[0]}/{self.msg_type.__name__}"

    @property
    def short_name(self) -> str:
        """The name below the node ("semantic" for "~/semantic")."""
        return self.topic.removeprefix("~/")

    @property
    def qos(self) -> QoSProfile:
        # Reliable (a reliable publisher serves best-effort and reliable subscribers alike, e.g. RViz) with a short
        # history: a slow viewer gets the newest frame, never a backlog.
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.depth, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)

    def qos_text(self) -> str:
        """The QoS as docs/NODE.md writes it."""
        return f"reliable, keep last {self.depth}"


OUTPUTS: tuple[OutputTopic, ...] = (
    OutputTopic("~/semantic", Image, "mono8", 1),
    OutputTopic("~/semantic_color", Image, "rgb8", 1),
    OutputTopic("~/anomaly_score", Image, "32FC1", 1),
    OutputTopic("~/open_set", Image, "mono8", 1),
    OutputTopic("~/overlay", Image, "rgb8", 1),
    OutputTopic("~/camera_info", CameraInfo, None, 1),
    # The alert keeps 10: a consumer that misses a frame's alert loses a safety message, not a picture.
    OutputTopic("~/obstacle_alert", alert_message.ALERT_TYPE, None, 10),
    OutputTopic("/diagnostics", DiagnosticArray, None, 10, created_at="construction"),
)

BY_TOPIC: dict[str, OutputTopic] = {row.topic: row for row in OUTPUTS}

# The image topics (short names), computed only while subscribed.
IMAGE_OUTPUTS: tuple[str, ...] = tuple(row.short_name for row in OUTPUTS if row.encoding is not None)


def image_outputs(wanted, rgb, class_id, score, state, card, tau, config, latency_s):
    """(topic, image) for each image output of one frame that someone subscribes to (`wanted(topic)`), computed
    lazily in publishing order; the open-set map is computed once for both its users. `latency_s()` is read when the
    overlay is drawn. Used by the detector and the multi-camera node."""
    want_overlay, want_open_set = wanted("~/overlay"), wanted("~/open_set")
    open_set = open_set_map(class_id, score, tau, card.anomaly_label) if want_overlay or want_open_set else None
    if wanted("~/semantic"):
        yield "~/semantic", class_id
    if wanted("~/semantic_color"):
        yield "~/semantic_color", colourise(class_id, card.palette)
    if wanted("~/anomaly_score"):
        yield "~/anomaly_score", np.asarray(score, np.float32)
    if want_open_set:
        yield "~/open_set", open_set
    if want_overlay:
        text = status_text(state, latency_s=latency_s(), tau=tau)
        yield "~/overlay", overlay(rgb, open_set, card.palette, card.anomaly_label, config.overlay_alpha, score=score,
                                   tau=tau, alert_state=state, corridor_polygon=config.corridor, text=text)
