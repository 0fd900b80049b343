"""Soak, short version for CI: 500 frames at 512x1024 through the node in its own process with every image output
subscribed (an untrained 128x256 model; the node converts, resizes and publishes full-size outputs). The memory trend
after warm-up is estimated with Theil-Sen (median of pairwise slopes, with its 95% interval), so a late allocator
release or a GC pause cannot fail it and a real per-frame leak cannot hide: a leak of 60 kB per served frame is
~20 MB per 1000 frames. docs/RELIABILITY.md has the 10,000-frame run with the shipped model."""
import numpy as np
import pytest

from densehybrid_ros.ros.soak import leak_trend, run_soak
from densehybrid_ros.ros.testing import export_untrained_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_untrained_model(tmp_path_factory.mktemp("soak_model") / "untrained.onnx", 128, 256)


@pytest.mark.slow
def test_500_frames_at_512x1024_show_no_memory_thread_or_fd_trend(model):
    report = run_soak(str(model), frames=500, height=512, width=1024, rate_hz=40.0, warmup_frames=100,
                      sample_period_s=0.2, namespace="/soak_ci", parameters=dict(threshold_source="parameter"))
    assert report.alive and report.exit_code == 0, report.node_output_tail
    assert report.served > 20 and report.image_outputs >= 5 * report.served - 5
    assert set(report.drops) <= {"superseded"}, report.drops
    trend = leak_trend(report)
    assert trend.low_mb < 20.0, (trend, [round(s.rss_mb, 1) for s in report.samples])
    assert trend.threads[1] - trend.threads[0] <= 1 and trend.fds[1] - trend.fds[0] <= 1, trend


def _report(rss_by_frame):
    from densehybrid_ros.ros.node_process import ProcessSample
    from densehybrid_ros.ros.soak import SoakReport
    samples = [ProcessSample(float(i), rss, 20, 26, frame) for i, (frame, rss) in enumerate(rss_by_frame)]
    return SoakReport(frames=samples[-1].label, height=512, width=1024, rate_hz=40.0, seconds=10.0, served=100,
                      image_outputs=500, drops={}, samples=samples, warmup_frames=100, exit_code=0,
                      exit_seconds=0.5, alive=True, model="m")


def test_the_leak_trend_sees_a_small_leak_and_ignores_a_few_outliers():
    rng = np.random.default_rng(0)
    frames = np.arange(0, 520, 10)
    noise = rng.normal(0.0, 0.3, frames.size)
    # 60 kB per frame: 60 MB per 1000 frames.
    leak = leak_trend(_report(list(zip(frames, 250 + 0.06 * frames + noise))))
    assert leak.low_mb > 20.0
    # Flat with three large excursions (an allocator holding memory for a while): no trend.
    flat = 250 + noise
    flat[[20, 21, 40]] += 40.0
    steady = leak_trend(_report(list(zip(frames, flat))))
    assert steady.low_mb < 20.0 and abs(steady.per_1000_frames_mb) < 5.0
