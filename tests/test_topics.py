"""The output-topic table (ros/topics.py) against the docs that list it: docs/NODE.md and docs/ARCHITECTURE.md.

The node's publishers are created from the same table, so a topic added, retyped or given another QoS in code
without the docs (or the other way round) fails here.
"""
from __future__ import annotations

import re
from pathlib import Path

from densehybrid_ros.ros.topics import IMAGE_OUTPUTS, OUTPUTS

DOCS = Path(__file__).resolve().parents[1] / "docs"
ROW = re.compile(r"^\|\s*`(?P<topic>~/[\w/]+|/diagnostics)`\s*\|(?P<cells>.*)\|\s*$")


def _rows(path: Path) -> dict[str, list[str]]:
    """Table rows whose first cell is an output topic: {topic: the other cells}."""
    rows = {}
    for line in path.read_text().splitlines():
        m = ROW.match(line)
        if m:
            rows[m["topic"]] = [c.strip() for c in m["cells"].split("|")]
    return rows


def test_node_md_lists_every_output_with_its_type_encoding_and_qos():
    rows = _rows(DOCS / "NODE.md")
    assert list(rows) == [row.topic for row in OUTPUTS], "docs/NODE.md topic table: other topics or another order"
    for row in OUTPUTS:
        kind, qos = rows[row.topic][0], rows[row.topic][1]
        expected = row.type_name + (f" `{row.encoding}`" if row.encoding else "")
        assert kind == expected, f"docs/NODE.md {row.topic}: type {kind!r}, code says {expected!r}"
        assert qos == row.qos_text(), f"docs/NODE.md {row.topic}: QoS {qos!r}, code says {row.qos_text()!r}"


def test_architecture_md_lists_every_output_with_its_type_and_encoding():
    rows = _rows(DOCS / "ARCHITECTURE.md")
    assert list(rows) == [row.topic for row in OUTPUTS], \
        "docs/ARCHITECTURE.md section 4: other output topics or another order"
    for row in OUTPUTS:
        direction, kind, encoding = rows[row.topic][:3]
        assert direction == "out"
        assert kind == row.type_name, f"docs/ARCHITECTURE.md {row.topic}: type {kind!r}, code says {row.type_name!r}"
        if row.encoding:
            assert encoding.split()[0] == row.encoding, \
                f"docs/ARCHITECTURE.md {row.topic}: encoding {encoding!r}, code says {row.encoding!r}"


def test_image_outputs_are_the_image_rows():
    assert IMAGE_OUTPUTS == ("semantic", "semantic_color", "anomaly_score", "open_set", "overlay")
    assert all(row.type_name == "sensor_msgs/Image" for row in OUTPUTS if row.encoding)
