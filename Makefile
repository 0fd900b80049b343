# make demo / make test work on a fresh Debian 12 + Python 3.11 machine: they create .venv and install the pins.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Keep DDS on this machine and runs apart (see tests/conftest.py for the per-run domain id).
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: setup demo test test-fast benchmark colcon install-tensorrt clean

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

colcon: $(STAMP)
	cd ros2_ws && ../$(VENV)/bin/colcon build --symlink-install

# Jetson / CUDA machines only: TensorRT + pycuda (not installable on the CPU development machines).
install-tensorrt: $(STAMP)
	$(PY) -m pip install -r requirements/tensorrt.txt

clean:
	rm -rf ros2_ws/build ros2_ws/install ros2_ws/log .pytest_cache
