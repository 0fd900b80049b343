"""Lifecycle under traffic: the node in its own process is cycled deactivate -> cleanup -> configure -> activate over
its lifecycle services while camera frames stream in, with run-time parameter changes (threshold, corridor,
overlay_alpha) in every cycle. No crash, no refused transition, no leak across cycles, and no alert stamped after an
acknowledged threshold change carries the old threshold. CI runs 10 cycles; docs/RELIABILITY.md has 100."""
import pytest

from densehybrid_ros.ros.soak import lifecycle_trend, run_lifecycle_traffic

H, W = 128, 256
CYCLES = 10


@pytest.fixture(scope="module")
def model(untrained_model):
    return untrained_model(H, W)


@pytest.mark.slow
def test_lifecycle_cycles_and_parameter_changes_under_traffic(model):
    report = run_lifecycle_traffic(str(model), cycles=CYCLES, height=H, width=W, rate_hz=30.0,
                                   namespace="/lifecycle_ci")
    assert report.passed, report.problems
    assert report.transitions_ok == 4 * CYCLES
    assert report.parameter_changes == 3 * CYCLES
    assert report.alerts_checked > CYCLES and not report.stale_alerts
    assert report.served > CYCLES
    (slope, low, _), threads, fds = lifecycle_trend(report)
    # A model, session or thread pool kept per cycle would add megabytes and threads every cycle; the lower end of
    # the slope's 95% interval stays under 1 MB per cycle unless memory really grows with the cycles.
    assert low < 1.0, (slope, [s.rss_mb for s in report.samples])
    assert threads[1] - threads[0] <= 1 and fds[1] - fds[0] <= 1, (threads, fds)
