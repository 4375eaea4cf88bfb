# Single entry point. Every target sets the environment up first if needed (tools/bootstrap.sh is
# idempotent: a second run takes about a second).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test demo clean-venv floor-setup floor-test clean-floor

setup:
	@bash tools/bootstrap.sh

test: setup
	$(PY) -m pytest tests -q

demo: setup
	@bash tools/demo.sh

clean-venv:
	rm -rf $(VENV)

# The oldest supported stack: .venv-floor/ with Python 3.10, torch 2.1.2, numpy<2 and the same
# mmengine/mmcv/mmdet, and the tests that matter there (docs/install.md#the-oldest-supported-stack-make-floor-test):
# import, checkpoint safety on torch 2.1, every backbone preset against mmdet's ResNet contract,
# configs built and trained one step (SSD300 50-layer rows, FPN detectors), checkpoint
# conversion, COCO evaluation, train/resume/test through the tools, the custom-dataset example.
# Left out: deeper or repeated variants of the same tests (101 layers, every depth, every
# converter architecture, mmdet's other R-50 configs), and the two tests that assert torch
# 2.6+'s own behaviour (plain torch.load refusing code; torch's own error texts).
FLOOR_VENV ?= .venv-floor
FLOOR_TESTS ?= tests/test_package.py tests/test_compat.py tests/test_checkpoint_compat.py \
	tests/test_engine.py tests/test_backbones.py tests/test_resnet_contract.py \
	tests/test_configs.py tests/test_fpn_configs.py tests/test_converter.py \
	tests/test_evaluation.py tests/test_evaluation_metric.py tests/test_tools.py \
	tests/test_custom_dataset.py
FLOOR_K ?= not (every_variant_and_depth or imagenet_parameter_counts or mmdet_r50_config_with_only \
	or 101 or (round_trip_every and not iresnet50]) or (config_builds_trains_and_predicts and group))
FLOOR_DESELECT ?= --deselect tests/test_engine.py::test_arbitrary_callables_are_still_refused \
	--deselect tests/test_engine.py::test_unreadable_checkpoints_name_the_cause_without_torchs_advice

floor-setup:
	@PROFILE=floor VENV=$(abspath $(FLOOR_VENV)) bash tools/bootstrap.sh

floor-test: floor-setup
	$(FLOOR_VENV)/bin/python -m pytest $(FLOOR_TESTS) -q -k "$(FLOOR_K)" $(FLOOR_DESELECT)

clean-floor:
	rm -rf $(FLOOR_VENV)
