"""runtime/aspect.py: which camera frames a fixed-size graph stretches, and the warning that says so."""
import pytest

from densehybrid_ros.runtime.aspect import aspect_name, stretch_factor, stretch_warning

CAMVID_FRAME = (360, 480)
CAMVID_GRAPH = (384, 512)
SYNTHETIC_GRAPH = (512, 1024)


@pytest.mark.parametrize("size, name", [((360, 480), "4:3"), ((384, 512), "4:3"), ((1080, 1920), "16:9"),
                                        ((512, 1024), "2:1"), ((1200, 1920), "8:5"), ((1037, 1853), "1.79:1")])
def test_aspect_names_reduce_to_small_fractions(size, name):
    assert aspect_name(*size) == name


def test_camvid_frames_scale_uniformly_into_the_camvid_graph():
    assert stretch_factor(CAMVID_FRAME, CAMVID_GRAPH) == pytest.approx(1.0)
    assert stretch_warning(CAMVID_FRAME, CAMVID_GRAPH) == ""


def test_same_size_and_dynamic_graphs_never_warn():
    assert stretch_warning((1080, 1920), (1080, 1920)) == ""
    assert stretch_warning((1080, 1920), None) == ""


def test_a_4_3_camera_in_the_2_1_synthetic_graph_is_widened_and_named():
    text = stretch_warning(CAMVID_FRAME, SYNTHETIC_GRAPH)
    assert stretch_factor(CAMVID_FRAME, SYNTHETIC_GRAPH) == pytest.approx(1.5)
    assert "frames 480x360 (4:3)" in text and "1024x512 input (2:1)" in text and "widened 1.50x" in text


def test_a_16_9_camera_in_the_4_3_graph_is_narrowed_and_named():
    text = stretch_warning((1080, 1920), CAMVID_GRAPH)
    assert "frames 1920x1080 (16:9)" in text and "512x384 input (4:3)" in text
    assert "narrowed to 0.75 of their width" in text and "densehybrid export" in text


def test_a_driver_padding_a_few_rows_is_within_the_tolerance_and_a_larger_gap_is_not():
    assert stretch_warning((1088, 1920), (1080, 1920)) == ""          # 0.7 %
    assert stretch_warning((1080, 1920), (1080, 1920 + 40)) != ""     # 2.1 %
    assert stretch_warning((1080, 1920), (1080, 1940), tolerance=0.02) == ""
