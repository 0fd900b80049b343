"""Fuzzing the detector node in its own process over DDS (densehybrid_ros/ros/fuzz.py, `densehybrid fuzz`).

The generator is checked on its own first (seeded, every drop reason produced, labels agree with OpenCV's decoder),
then a seeded subset of 1,000 messages per input transport goes to a real node process with an untrained model:
the node must stay up, serve the valid frames interleaved with the bad ones, count every frame under the reason it
was built for, keep memory/threads/fds bounded and throttle its warnings. docs/RELIABILITY.md has the 10,000-message
run.
"""
from collections import Counter

import pytest

from densehybrid_ros.ros.conversions import DROP_REASONS
from densehybrid_ros.ros.fuzz import (CAMERA_INFO_REJECTED, NOT_A_FRAME, OK, MessageFuzzer, account, decodes,
                                     rss_growth_mb, run_fuzz)
from densehybrid_ros.ros.testing import export_untrained_model

H, W = 128, 256


def _pixels(msg):
    return bytes(msg.data) if hasattr(msg, "data") else repr(msg)


def test_the_generator_is_seeded_and_covers_every_drop_reason():
    raw = [MessageFuzzer(7, "raw").cases(600), MessageFuzzer(7, "raw").cases(600)]
    a, b = (list(x) for x in raw)
    assert [(c.label, c.expected, _pixels(c.msg)) for c in a] == [(c.label, c.expected, _pixels(c.msg)) for c in b]
    comp = list(MessageFuzzer(7, "compressed").cases(600))
    expected = Counter(c.expected for c in a + comp)
    for reason in DROP_REASONS:
        assert expected[reason] > 0, reason
    assert expected[OK] > 0 and expected[NOT_A_FRAME] > 0 and expected[CAMERA_INFO_REJECTED] > 0
    labels = {c.label for c in a + comp}
    for label in ("mixed_case_encoding", "claims_100000x100000", "limit_plus_one", "empty_data",
                  "header_claims_gigapixels", "decompression_bomb", "body_truncated", "at_pixel_limit"):
        assert label in labels, label


def test_damaged_bodies_are_labelled_by_what_opencv_decodes():
    for case in MessageFuzzer(3, "compressed").cases(400):
        if case.stage == "worker" and case.label != "liveness_probe" and case.expected != OK:
            assert not decodes(bytes(case.msg.data)), case.label
        if case.expected == OK:
            assert decodes(bytes(case.msg.data)), case.label


def test_the_accounting_finds_lost_double_counted_and_misfiled_frames():
    sent, worker = Counter(ok=10, truncated=3, decode_error=5), Counter(ok=10, decode_error=2)
    assert account(sent, worker, {"truncated": 3, "decode_error": 4, "superseded": 5}, 6) == []
    # A valid frame served and then also counted as failed (its alert was out before the error).
    assert account(sent, worker, {"truncated": 3, "decode_error": 3, "superseded": 5, "inference_error": 1}, 5)
    # A truncated frame counted under another reason.
    assert account(sent, worker, {"truncated": 2, "bad_step": 1, "decode_error": 3, "superseded": 5}, 5)
    # A frame lost without a count.
    assert account(sent, worker, {"truncated": 3, "decode_error": 3, "superseded": 5}, 4)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_untrained_model(tmp_path_factory.mktemp("fuzz_model") / "untrained.onnx", H, W)


# Negative stamp `sec` and 1x1 frames included: each was counted as served and as an inference_error before the
# node's fixes (docs/RELIABILITY.md, known issues 1-3).
@pytest.mark.slow
@pytest.mark.parametrize("transport", ["raw", "compressed"])
def test_node_process_survives_and_accounts_for_1000_fuzz_messages(model, transport):
    report = run_fuzz(str(model), messages=1000, seed=11, transport=transport, negative_stamps=True,
                      one_pixel_frames=True)
    assert report.passed, report.problems
    assert report.alive and report.exit_code == 0 and not report.traceback
    assert report.probes_served == report.probes_sent > 0
    assert report.served > 0 and report.image_outputs > 0
    assert sum(report.drops.values()) > 500
    assert report.camera_info_rejected is not None and report.camera_info_rejected > 0
    assert rss_growth_mb(report) < 64, report.rss_mb
    assert max(report.threads) - min(report.threads) <= 2 and max(report.fds) - min(report.fds) <= 2
