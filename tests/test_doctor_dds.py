"""`densehybrid doctor`, DDS section: says what in a shell's settings would lose camera frames between processes,
and what to do. The findings are computed from an environment mapping and socket limits passed in, so each case
is one dictionary; the last tests run the real command in a subprocess."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from densehybrid_ros.cli.doctor import (FAIL, FRAME_BYTES, INFO, OK, RECOMMENDED_SOCKET_BUFFER, WARN, dds_findings,
                                        read_socket_limits)
from densehybrid_ros.config.dds import read_dds_env

ROOT = Path(__file__).resolve().parents[1]
BIG = {"rmem_max": RECOMMENDED_SOCKET_BUFFER, "wmem_max": RECOMMENDED_SOCKET_BUFFER, "rmem_default": 212992,
       "wmem_default": 212992}
SMALL = {"rmem_max": 4194304, "wmem_max": 4194304, "rmem_default": 212992, "wmem_default": 212992}
DDS_KEYS = ("RMW_IMPLEMENTATION", "FASTDDS_DEFAULT_PROFILES_FILE", "ROS_AUTOMATIC_DISCOVERY_RANGE",
            "ROS_LOCALHOST_ONLY", "FASTDDS_BUILTIN_TRANSPORTS")


def profile(tmp_path: Path, transports: str, participant: str | None = None, name: str = "p.xml") -> Path:
    """A Fast DDS profiles file with `transports` descriptors and a default participant using all of them."""
    ids = [line.split("<transport_id>")[1].split("<")[0] for line in transports.splitlines() if "<transport_id>" in line]
    if participant is None:
        participant = ('<participant profile_name="x" is_default_profile="true"><rtps><userTransports>'
                       + "".join(f"<transport_id>{i}</transport_id>" for i in ids)
                       + "</userTransports><useBuiltinTransports>false</useBuiltinTransports></rtps></participant>")
    path = tmp_path / name
    path.write_text('<?xml version="1.0"?>\n<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">'
                    f"<transport_descriptors>{transports}</transport_descriptors>{participant}</profiles>\n")
    return path


SHM_1MB = """<transport_descriptor>
<transport_id>shm</transport_id><type>SHM</type><segment_size>1048576</segment_size></transport_descriptor>"""
UDP_PLAIN = """<transport_descriptor>
<transport_id>udp</transport_id><type>UDPv4</type></transport_descriptor>"""


def by_what(findings) -> dict[str, tuple[str, str]]:
    return {what: (status, detail) for status, what, detail in findings}


def statuses(findings) -> set[str]:
    return {status for status, _, _ in findings}


def test_the_shipped_settings_pass_without_a_warning():
    found = dds_findings(read_dds_env(), BIG)
    assert statuses(found) <= {OK, INFO}, found
    status, detail = by_what(found)["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert status == OK and "67.1 MB" in detail


def test_no_profile_warns_that_frames_are_lost_and_says_what_to_run():
    found = by_what(dds_findings({}, BIG))
    status, detail = found["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert status == WARN
    assert "not set" in detail and "set -a; . params/dds.env; set +a" in detail
    assert found["RMW_IMPLEMENTATION"][0] == OK


def test_localhost_range_without_a_shared_memory_profile_warns_large_images_will_be_lost():
    for environ in ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, {"ROS_LOCALHOST_ONLY": "1"}):
        status, detail = by_what(dds_findings(environ, BIG))["ROS_AUTOMATIC_DISCOVERY_RANGE"]
        assert status == WARN and "large images between processes will be lost" in detail, environ
    shipped = read_dds_env()
    assert by_what(dds_findings(shipped, BIG))["ROS_AUTOMATIC_DISCOVERY_RANGE"][0] == OK


def test_a_named_profile_that_does_not_exist_fails_naming_it(tmp_path):
    missing = tmp_path / "gone.xml"
    found = dds_findings({"FASTDDS_DEFAULT_PROFILES_FILE": str(missing)}, BIG)
    status, detail = by_what(found)["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert status == FAIL and str(missing) in detail and "does not exist" in detail


def test_a_profile_that_is_not_xml_fails_naming_it(tmp_path):
    broken = tmp_path / "broken.xml"
    broken.write_text("<profiles><participant>")
    status, detail = by_what(dds_findings({"FASTDDS_DEFAULT_PROFILES_FILE": str(broken)}, BIG))[
        "FASTDDS_DEFAULT_PROFILES_FILE"]
    assert status == FAIL and str(broken) in detail and "not valid XML" in detail


def test_a_profile_whose_shared_memory_segment_cannot_hold_a_camera_frame_warns(tmp_path):
    small = profile(tmp_path, SHM_1MB + UDP_PLAIN)
    environ = {"FASTDDS_DEFAULT_PROFILES_FILE": str(small), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    found = by_what(dds_findings(environ, BIG))
    status, detail = found["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert status == WARN and "1.0 MB segment" in detail and f"{FRAME_BYTES / 1e6:.1f} MB" in detail
    assert found["ROS_AUTOMATIC_DISCOVERY_RANGE"][0] == WARN


def test_a_profile_without_shared_memory_warns(tmp_path):
    udp_only = profile(tmp_path, UDP_PLAIN)
    status, detail = by_what(dds_findings({"FASTDDS_DEFAULT_PROFILES_FILE": str(udp_only)}, BIG))[
        "FASTDDS_DEFAULT_PROFILES_FILE"]
    assert status == WARN and "no shared-memory transport" in detail


def test_a_profile_that_no_participant_uses_by_default_warns(tmp_path):
    unused = profile(tmp_path, SHM_1MB, participant='<participant profile_name="named_only"><rtps/></participant>')
    status, detail = by_what(dds_findings({"FASTDDS_DEFAULT_PROFILES_FILE": str(unused)}, BIG))[
        "FASTDDS_DEFAULT_PROFILES_FILE"]
    assert status == WARN and "is_default_profile" in detail


def test_large_data_builtin_transports_under_localhost_fail_unless_the_profile_turns_them_off():
    environ = {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    status, detail = by_what(dds_findings(environ, BIG))["FASTDDS_BUILTIN_TRANSPORTS"]
    assert status == FAIL and "LOCALHOST" in detail and "unset it" in detail
    # Without LOCALHOST LARGE_DATA does carry them (measured 20 of 20): reported, not failed.
    status, _ = by_what(dds_findings({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}, BIG))["FASTDDS_BUILTIN_TRANSPORTS"]
    assert status == INFO
    # The shipped profile switches the builtin transports off, so the variable has no effect.
    status, detail = by_what(dds_findings({**read_dds_env(), **environ}, BIG))["FASTDDS_BUILTIN_TRANSPORTS"]
    assert status == INFO and "ignored" in detail


def test_another_rmw_is_told_the_profile_does_not_apply():
    found = dds_findings({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp", "FASTDDS_DEFAULT_PROFILES_FILE": "x"}, BIG)
    status, detail = by_what(found)["RMW_IMPLEMENTATION"]
    assert status == WARN and "rmw_cyclonedds_cpp" in detail and "Fast DDS profile" in detail
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in by_what(found)  # not read by that RMW


def test_small_socket_buffers_warn_with_the_sysctl_that_fixes_them():
    status, detail = by_what(dds_findings(read_dds_env(), SMALL))["socket buffers"]
    assert status == WARN
    assert "net.core.rmem_max=4194304" in detail
    assert f"sudo sysctl -w net.core.rmem_max={RECOMMENDED_SOCKET_BUFFER} net.core.wmem_max=" in detail
    assert by_what(dds_findings(read_dds_env(), BIG))["socket buffers"][0] == OK
    unreadable = {k: None for k in BIG}
    assert by_what(dds_findings(read_dds_env(), unreadable))["socket buffers"][0] == INFO


def test_a_udp_transport_that_asks_for_no_buffer_size_gets_the_system_default_and_is_warned(tmp_path):
    plain = profile(tmp_path, UDP_PLAIN)
    status, detail = by_what(dds_findings({"FASTDDS_DEFAULT_PROFILES_FILE": str(plain)}, BIG))["socket buffers"]
    assert status == WARN and "rmem_default=212992" in detail and "receiveBufferSize" in detail


def test_a_broken_project_settings_file_fails_naming_it(tmp_path):
    env = tmp_path / "params" / "dds.env"
    env.parent.mkdir()
    env.write_text("FASTDDS_DEFAULT_PROFILES_FILE=params/gone.xml\n")
    status, detail = by_what(dds_findings(read_dds_env(), BIG, dds_env=env))["params/dds.env"]
    assert status == FAIL and f"{env}:1" in detail


def test_socket_limits_are_read_from_proc_style_files(tmp_path):
    (tmp_path / "rmem_max").write_text("4194304\n")
    (tmp_path / "wmem_max").write_text("8388608\n")
    limits = read_socket_limits(tmp_path)
    assert limits == {"rmem_max": 4194304, "wmem_max": 8388608, "rmem_default": None, "wmem_default": None}
    if Path("/proc/sys/net/core/rmem_max").is_file():
        assert read_socket_limits()["rmem_max"] > 0


def doctor(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    empty_models = tmp_path / "models"
    empty_models.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "densehybrid_ros.cli", "doctor", "--no-infer", "--models",
                           str(empty_models)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DDS_KEYS}
    env.update(settings)
    return env


def test_doctor_command_warns_in_a_shell_without_the_settings_and_passes_with_them(tmp_path):
    bare = doctor(clean_env(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST"), tmp_path)
    assert bare.returncode == 0, bare.stdout + bare.stderr
    assert "[warn] FASTDDS_DEFAULT_PROFILES_FILE: not set" in bare.stdout
    assert "[warn] ROS_AUTOMATIC_DISCOVERY_RANGE: LOCALHOST without a shared-memory profile" in bare.stdout
    configured = doctor(clean_env(**read_dds_env()), tmp_path)
    assert configured.returncode == 0, configured.stdout + configured.stderr
    assert "[  ok] FASTDDS_DEFAULT_PROFILES_FILE" in configured.stdout
    assert "[  ok] ROS_AUTOMATIC_DISCOVERY_RANGE: LOCALHOST" in configured.stdout


@pytest.mark.parametrize("settings, needle", [
    ({"FASTDDS_DEFAULT_PROFILES_FILE": "/nonexistent/fastdds.xml"}, "/nonexistent/fastdds.xml does not exist"),
    ({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"},
     "[FAIL] FASTDDS_BUILTIN_TRANSPORTS: LARGE_DATA together with the LOCALHOST range"),
], ids=["missing-profile", "large-data-localhost"])
def test_doctor_command_fails_on_settings_that_lose_camera_frames(tmp_path, settings, needle):
    done = doctor(clean_env(**settings), tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert needle in done.stdout


def test_live_check_counts_large_frames_between_two_processes_with_and_without_the_settings():
    """`densehybrid doctor --dds-live`: the same two processes (publisher and listener) with this run's domain, once
    with params/dds.env and once with Fast DDS's defaults under LOCALHOST, where they lose camera-sized frames."""
    from densehybrid_ros.cli.doctor import dds_live_finding
    status, _, detail = dds_live_finding(clean_env(**read_dds_env()), frames=5)
    assert (status, detail) == (OK, "5 of 5 frames arrived")
    status, _, detail = dds_live_finding(clean_env(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST"), frames=5)
    assert status == FAIL and "of 5 frames arrived" in detail and "set -a; . params/dds.env" in detail
