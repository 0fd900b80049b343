# make demo / make test work on a fresh Debian 12 + Python 3.11 machine: they create .venv and install the pins.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# DDS settings that carry camera-sized images between processes (README, "Camera drivers and bag replay in other
# processes"): every recipe below runs with params/dds.env, the profile path made absolute so that it holds in any
# folder. A value given on the command line (make test ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET) still wins. The tests
# also give each run its own ROS domain (tests/conftest.py).
include params/dds.env
export $(shell sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' params/dds.env)
FASTDDS_DEFAULT_PROFILES_FILE := $(abspath $(FASTDDS_DEFAULT_PROFILES_FILE))
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: setup demo test test-fast benchmark colcon model install-tensorrt install-openvino gpu-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) requirements/runtime.txt requirements/training.txt requirements/dev.txt setup.py
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/densehybrid demo

test: $(STAMP)
	$(PY) -m pytest -q -ra tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow" tests

benchmark: $(STAMP)
	$(VENV)/bin/densehybrid benchmark --write docs/BENCHMARKS.md

# How models/densehybrid_lite0_synthetic was made (hours on 2 CPU cores; every step resumes where it stopped).
MODEL := models/densehybrid_lite0_synthetic
DH := $(VENV)/bin/densehybrid
resume = $(if $(wildcard $(1)/last.pt),--resume,)
model: $(STAMP)
	$(DH) train --config densehybrid_ros/training/configs/synthetic_stage1.yaml --out runs/synthetic_stage1 \
		$(call resume,runs/synthetic_stage1)
	$(DH) train --config densehybrid_ros/training/configs/synthetic_stage2.yaml --out runs/synthetic_stage2 \
		$(call resume,runs/synthetic_stage2)
	$(DH) train --config densehybrid_ros/training/configs/synthetic_stage3.yaml --out runs/synthetic_stage3 \
		$(call resume,runs/synthetic_stage3)
	$(DH) train --config densehybrid_ros/training/configs/synthetic_stage4.yaml --out runs/synthetic_stage4 \
		$(call resume,runs/synthetic_stage4)
	$(DH) make-data --split val
	$(DH) make-data --split test
	$(DH) export --checkpoint runs/synthetic_stage4/last.pt --out $(MODEL).onnx --height 512 --width 1024 \
		--raw-outputs --name densehybrid_lite0_synthetic
	$(DH) calibrate --model $(MODEL).onnx --data data_cache/synthetic/val
	$(DH) evaluate --model $(MODEL).onnx --data data_cache/synthetic/test --out docs/report --tau-from-card --update-card
	$(PY) -m densehybrid_ros.training.report --runs runs/synthetic_stage1 runs/synthetic_stage2 runs/synthetic_stage3 runs/synthetic_stage4 --out models/training

colcon: $(STAMP)
	cd ros2_ws && ../$(VENV)/bin/colcon build --symlink-install

# Jetson / CUDA machines only: TensorRT + pycuda (not installable on the CPU development machines).
install-tensorrt: $(STAMP)
	$(PY) -m pip install -r requirements/tensorrt.txt

# x86-64 CPUs: the optional OpenVINO backend (what `backend: auto` then picks on x86; docs/QUANTIZATION.md).
install-openvino: $(STAMP)
	$(PY) -m pip install -r requirements/openvino.txt

# CUDA machines only, unattended (< 8 min on a datacentre GPU): installs the TensorRT extra, builds FP32/FP16/INT8
# engines of the shipped model, compares them with onnxruntime CPU, times them, replays a drive through the node;
# writes gpu_check/report.md saying what it could not do.
gpu-check: $(STAMP)
	$(VENV)/bin/densehybrid gpu-check --out gpu_check

# Mutation testing of core/, ros/conversions.py, ros/alert_message.py and evaluation/metrics.py (the [mutmut]
# section of setup.cfg; docs/DEVELOPING.md has the last figures). Too slow for `make test`; works in mutants/.
.PHONY: mutants
mutants: $(STAMP)
	nice -n 10 $(VENV)/bin/mutmut run --max-children 2
	$(VENV)/bin/mutmut results

clean:
	rm -rf ros2_ws/build ros2_ws/install ros2_ws/log .pytest_cache
