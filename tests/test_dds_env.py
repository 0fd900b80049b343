"""params/dds.env and its reader: the KEY=VALUE file a user sources in a shell (`set -a; . params/dds.env; set +a`)
and every entry point of the project applies before rclpy starts."""
import os
import subprocess
from pathlib import Path

import pytest

from densehybrid_ros.config.dds import apply_dds_env, default_dds_env_path, read_dds_env
from densehybrid_ros.config.validation import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "<profiles/>\n"


def checkout(tmp_path: Path, env_text: str, profile: str | None = "params/fastdds.xml") -> Path:
    """A folder laid out like the repository (or share/densehybrid_ros): params/dds.env (+ the profile)."""
    params = tmp_path / "params"
    params.mkdir()
    if profile is not None:
        (tmp_path / profile).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / profile).write_text(PROFILE)
    env = params / "dds.env"
    env.write_text(env_text)
    return env


def test_reads_key_value_lines_skipping_comments_blank_lines_and_quotes(tmp_path):
    env = checkout(tmp_path, "# a comment\n\nRMW_IMPLEMENTATION=rmw_fastrtps_cpp\n"
                             "  ROS_AUTOMATIC_DISCOVERY_RANGE = \"LOCALHOST\"  \nEMPTY=\nQUOTED='a b'\n")
    assert read_dds_env(env) == {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                                 "EMPTY": "", "QUOTED": "a b"}


def test_relative_profile_path_is_resolved_from_the_folder_above_params(tmp_path, monkeypatch):
    env = checkout(tmp_path, "FASTDDS_DEFAULT_PROFILES_FILE=params/fastdds.xml\n")
    monkeypatch.chdir(tmp_path / "params")  # not the working directory: the file's own location counts
    value = read_dds_env(env)["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert Path(value).is_absolute()
    assert Path(value) == (tmp_path / "params" / "fastdds.xml").resolve()


def test_absolute_profile_path_is_kept(tmp_path):
    elsewhere = tmp_path / "etc" / "vehicle.xml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(PROFILE)
    env = checkout(tmp_path, f"FASTDDS_DEFAULT_PROFILES_FILE={elsewhere}\n", profile=None)
    assert read_dds_env(env)["FASTDDS_DEFAULT_PROFILES_FILE"] == str(elsewhere)


def test_a_missing_profile_is_named_with_the_file_and_line(tmp_path):
    env = checkout(tmp_path, "RMW_IMPLEMENTATION=rmw_fastrtps_cpp\nFASTDDS_DEFAULT_PROFILES_FILE=params/gone.xml\n")
    with pytest.raises(ConfigError) as e:
        read_dds_env(env)
    message = str(e.value)
    assert f"{env}:2" in message
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in message and str(tmp_path / "params" / "gone.xml") in message


@pytest.mark.parametrize("line", ["export RMW_IMPLEMENTATION=rmw_fastrtps_cpp", "no equals sign", "=value",
                                  "BAD-KEY=1"])
def test_a_malformed_line_is_reported_with_its_number_and_text(tmp_path, line):
    env = checkout(tmp_path, f"# header\nRMW_IMPLEMENTATION=rmw_fastrtps_cpp\n{line}\n")
    with pytest.raises(ConfigError) as e:
        read_dds_env(env)
    assert f"{env}:3" in str(e.value) and repr(line) in str(e.value)


def test_a_missing_settings_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path / "nowhere.env")):
        read_dds_env(tmp_path / "nowhere.env")


def test_apply_keeps_values_already_set_unless_override(tmp_path):
    env = checkout(tmp_path, "RMW_IMPLEMENTATION=rmw_fastrtps_cpp\nROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST\n")
    environ = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp", "UNRELATED": "1"}
    applied = apply_dds_env(environ, env)
    assert applied == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    assert environ == {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp", "UNRELATED": "1",
                       "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}

    applied = apply_dds_env(environ, env, override=True)
    assert applied == {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    assert environ["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp" and environ["UNRELATED"] == "1"


def test_a_bad_file_changes_nothing(tmp_path):
    env = checkout(tmp_path, "RMW_IMPLEMENTATION=rmw_fastrtps_cpp\nFASTDDS_DEFAULT_PROFILES_FILE=params/gone.xml\n")
    environ = {"UNRELATED": "1"}
    with pytest.raises(ConfigError):
        apply_dds_env(environ, env, override=True)
    assert environ == {"UNRELATED": "1"}


def test_the_shipped_file_names_fast_dds_an_existing_profile_and_localhost():
    assert default_dds_env_path() == ROOT / "params" / "dds.env"
    values = read_dds_env()
    assert values["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
    assert Path(values["FASTDDS_DEFAULT_PROFILES_FILE"]) == ROOT / "params" / "fastdds.xml"
    assert values["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    # The builtin LARGE_DATA transports lose camera-sized frames under LOCALHOST (1 of 20 measured): the file
    # must not turn them on.
    assert "FASTDDS_BUILTIN_TRANSPORTS" not in values


def test_the_shipped_file_sourced_by_a_shell_from_the_repo_root_gives_the_same_settings():
    """What the README tells a user to type before a camera driver or a bag replay."""
    keys = sorted(read_dds_env())
    script = "set -a; . params/dds.env; set +a; " + "; ".join(f'echo "{k}=${k}"' for k in keys)
    env = {k: v for k, v in os.environ.items() if k not in keys}
    out = subprocess.run(["sh", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    sourced = dict(line.split("=", 1) for line in out.splitlines())
    for key, value in read_dds_env().items():
        if key == "FASTDDS_DEFAULT_PROFILES_FILE":
            assert (ROOT / sourced[key]).resolve() == Path(value)  # relative in the shell, from the repo root
        else:
            assert sourced[key] == value


@pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v make"], capture_output=True).returncode != 0,
                    reason="make is not installed")
def test_make_recipes_run_with_the_shipped_settings_the_profile_path_absolute():
    """`make demo`, `make test` and `make benchmark` read params/dds.env (make's own parser, so the file must stay
    plain KEY=VALUE); a recipe started in another folder must still find the profile."""
    keys = sorted(read_dds_env())
    show = "dds-show: ; @" + " && ".join(f'echo "{k}=$${k}"' for k in keys)
    env = {k: v for k, v in os.environ.items() if k not in keys and not k.startswith("MAKE")}
    out = subprocess.run(["make", "-s", "--no-print-directory", f"--eval={show}", "dds-show"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert dict(line.split("=", 1) for line in out.splitlines()) == read_dds_env()


def test_the_shipped_profile_gives_every_node_shared_memory_that_holds_several_1080p_frames():
    from densehybrid_ros.config.dds import read_profile_transports
    transports = read_profile_transports(Path(read_dds_env()["FASTDDS_DEFAULT_PROFILES_FILE"]))
    assert transports.default_participant
    assert transports.shm_segment >= 4 * 1920 * 1080 * 3
    assert not transports.builtin_transports  # FASTDDS_BUILTIN_TRANSPORTS cannot add LARGE_DATA behind its back
    assert min(transports.udp_buffers) >= 1920 * 1080 * 3


def test_a_profile_that_is_missing_or_not_xml_is_named(tmp_path):
    from densehybrid_ros.config.dds import read_profile_transports
    with pytest.raises(ConfigError, match="does not exist"):
        read_profile_transports(tmp_path / "gone.xml")
    broken = tmp_path / "broken.xml"
    broken.write_text("<profiles>")
    with pytest.raises(ConfigError, match=f"{broken} is not valid XML"):
        read_profile_transports(broken)
