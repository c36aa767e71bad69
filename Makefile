# vmamba-mm: `make test` sets up .venv with the pinned stack and runs the test suite.
PYTHON_SYS ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install test demo bench bench-2d bench-families gpu-check clean-venv

install: $(STAMP)

$(STAMP): requirements.txt requirements-build.txt requirements-test.txt setup.cfg tools/install/build_mmcv.sh kernels/csrc/selective_scan_cpu.cpp kernels/csrc/selective_scan_2d_cpu.cpp kernels/csrc/ssd_scan_cpu.cpp kernels/csrc/selective_scan_cuda.cu
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -r requirements-build.txt
	PYTHON=$(PY) bash tools/install/build_mmcv.sh
	$(PIP) install -q -r requirements.txt -r requirements-test.txt
	$(PIP) install -q --no-build-isolation --no-deps -e .
	$(PY) -c "import vmamba_mm, vmamba_kernels, mmcv.ops, mmpretrain, mmdet, mmseg; print('vmamba-mm environment ready')"
	$(PY) -m vmamba_kernels
	touch $(STAMP)

# The linter first (ruff, configured in pyproject.toml): seconds, and it names a broken line before
# the suite spends its dozen minutes. The suite runs on TEST_WORKERS processes (pytest-xdist),
# a test file per process at a time, in the order tests/conftest.py gives (the longest files
# first; xdist would otherwise put the files with the most tests first), each process and the
# tools it starts on its share of the cores (tests/conftest.py sets the threads).
TEST_WORKERS ?= 2
test: install
	$(PY) -m ruff check .
	$(PY) -m pytest tests -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The demos: generated data, a small VSSM trained and tested on the CPU. `make demo` runs all
# three in turn; `make demo TASK=cls|det|seg|cls2d|cls-v2m|cls-ssd|seg-umamba2|seg-clicks|seg-objects|wsi`
# one of them (cls2d, cls-v2m, cls-ssd: the classification demo with 2DMamba's 2D scan, V2M's 2D
# SSM or Mamba2's SSD as the token mixer; seg-umamba2, seg-clicks: the segmentation demo with
# U-Mamba2, without and with click prompts; seg-objects: U-Mamba2 segmenting the one shape a
# click points at; wsi: 2DMambaMIL and ABMIL on synthetic slides, wsi2d
# and wsiab one each; DEMO_ROOT and DEMO_WORK then override its data and work folders).
# One line per demo, so a new variant is one new line: DEMO_<task> (a name of lowercase letters,
# digits and '-') := its config, the checkpoint its test reads (in the work folder) and the task
# of its generated data (cls, det, seg or wsi: the generator's argument and the default folder
# data/demo_<data>, which the variants of a task share). The file that shows the data is there
# and the metric line of the test log follow from the data task (DEMO_GENERATED_, DEMO_METRIC_).
# task         config                                 checkpoint     data
DEMO_cls     := configs/demo/classification.py        epoch_20.pth   cls
DEMO_det     := configs/demo/detection.py             epoch_8.pth    det
DEMO_seg     := configs/demo/segmentation.py          iter_1500.pth  seg
DEMO_cls2d   := configs/demo/classification_2d.py     epoch_20.pth   cls
DEMO_cls-v2m := configs/demo/classification_v2m.py    epoch_20.pth   cls
DEMO_cls-ssd := configs/demo/classification_ssd.py    epoch_20.pth   cls
DEMO_seg-umamba2 := configs/umamba2/umamba2_demo.py   iter_1500.pth  seg
DEMO_seg-clicks  := configs/umamba2/umamba2_demo_clicks.py iter_1500.pth seg
DEMO_seg-objects := configs/umamba2/umamba2_demo_objects.py iter_1500.pth seg
DEMO_wsi2d   := configs/demo/wsi_2dmambamil.py        epoch_4.pth    wsi
DEMO_wsiab   := configs/demo/wsi_abmil.py             epoch_4.pth    wsi
DEMO_GENERATED_cls := train
DEMO_GENERATED_det := annotations/instances_train.json
DEMO_GENERATED_seg := annotations/training
DEMO_GENERATED_wsi := splits/splits_0.csv
DEMO_METRIC_cls := Epoch\(test\).*accuracy/top1
DEMO_METRIC_det := Epoch\(test\).*coco/bbox_mAP
DEMO_METRIC_seg := Iter\(test\).*mIoU
DEMO_METRIC_wsi := $(DEMO_METRIC_cls)
# The tasks in the table's order, read from this file ($(.VARIABLES) has no order).
DEMO_TASKS := $(shell sed -n 's/^DEMO_\([a-z0-9-]*\) *:=.*/\1/p' $(lastword $(MAKEFILE_LIST)))
DEMO_GROUPS := wsi
TASK ?= cls det seg
.PHONY: $(addprefix demo-,$(DEMO_TASKS) $(DEMO_GROUPS))
demo_config = $(word 1,$(DEMO_$*))
demo_checkpoint = $(word 2,$(DEMO_$*))
demo_data_task = $(word 3,$(DEMO_$*))
demo_root = $(or $(DEMO_ROOT),data/demo_$(demo_data_task))
demo_work = $(or $(DEMO_WORK),work_dirs/demo_$*)
demo_data = $(foreach split,train val test,$(split)_dataloader.dataset.data_root=$(demo_root))

ifneq ($(filter demo,$(MAKECMDGOALS)),)
ifneq ($(filter-out $(DEMO_TASKS) $(DEMO_GROUPS),$(TASK)),)
$(error TASK=$(TASK): the demos are $(DEMO_TASKS) $(DEMO_GROUPS))
endif
endif

demo: $(addprefix demo-,$(TASK))

demo-wsi: demo-wsi2d demo-wsiab

$(addprefix demo-,$(DEMO_TASKS)): demo-%: install
	test -e $(demo_root)/$(DEMO_GENERATED_$(demo_data_task)) || $(PY) tools/misc/generate_demo_data.py $(demo_data_task) $(demo_root)
	$(PY) tools/train.py $(demo_config) --work-dir $(demo_work) --cfg-options $(demo_data)
	$(PY) tools/test.py $(demo_config) $(demo_work)/$(demo_checkpoint) --work-dir $(demo_work) --cfg-options $(demo_data) 2>&1 | tee $(demo_work)/test.log | grep -E "$(DEMO_METRIC_$(demo_data_task))" || { tail -20 $(demo_work)/test.log; exit 1; }

bench: install
	$(PY) tools/analysis_tools/benchmark.py configs/vmamba/vmamba-tiny-s1l8_8xb128_in1k.py --compare all --batch-size 1 --shape 224 224 --device cpu

# 2DVMamba-T against VMamba-T (the 2D scan's cost), interleaved in one run.
bench-2d: install
	$(PY) tools/analysis_tools/benchmark.py configs/vmamba/vmamba-tiny-s1l8_8xb128_in1k.py configs/vmamba2d/vmamba2d-tiny_8xb128_in1k.py --batch-size 1 --shape 224 224 --device cpu

# The README's family table: the four scan families on VMamba-T's layout (SS2D, the 2D scan, V2M's
# 2D SSM, Mamba2's SSD), parameters, FLOPs (get_flops.py's count) and img/s, interleaved in one run.
FAMILY_CONFIGS := configs/vmamba/vmamba-tiny-s1l8_8xb128_in1k.py configs/vmamba2d/vmamba2d-tiny_8xb128_in1k.py configs/v2m/v2m-tiny_8xb128_in1k.py configs/ssd/ssd-tiny_8xb128_in1k.py
bench-families: install
	$(PY) tools/analysis_tools/benchmark.py $(FAMILY_CONFIGS) --flops --batch-size 1 --shape 224 224 --device cpu

# The prepared GPU run (tools/analysis_tools/gpu_check.py, at most 8 minutes): no install needed,
# a plain copy of the tree runs under the machine's own python3 where there is no .venv. Results
# go to OUT (on the device machine the tool's $OUT, which comes back); GPU_CHECK_ARGS adds
# options (--smoke, --budget SECONDS, --sections ...).
OUT ?= work_dirs/gpu_check
GPU_CHECK_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_CHECK_PY) tools/analysis_tools/gpu_check.py --out $(OUT) $(GPU_CHECK_ARGS)

clean-venv:
	rm -rf $(VENV)
