# Two entry points: `make demo` (end-to-end run on the built-in dataset) and `make test`.
# Both build .venv on first use and rebuild it only when pyproject.toml changes (the stamp).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing frcnn_edu and its dependencies into $(VENV) (first run: a few minutes, ~6 GB; log: $(VENV)/pip.log)"
	$(PY) -m pip install --upgrade pip >$(VENV)/pip.log 2>&1 || (tail -30 $(VENV)/pip.log; exit 1)
	$(PY) -m pip install -e '.[dev]' >>$(VENV)/pip.log 2>&1 || (tail -30 $(VENV)/pip.log; exit 1)
	$(PY) -c 'import torch, torchvision, frcnn_edu; print("torch", torch.__version__, "torchvision", torchvision.__version__)'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "frcnn_edu (.venv)" >/dev/null
	touch $(STAMP)

# Unit tests and every notebook (nbval --nbval-lax: cells run top to bottom; asserts in cells are the checks).
test: $(STAMP)
	$(PY) -m pytest -q --nbval-lax tests notebooks

# The end-to-end run: generate the built-in dataset, train the tiny backbone from scratch on the CPU within a
# 10-minute budget, evaluate VOC07 mAP@0.5 on its test split. Output: runs/demo/{metrics.json,losses.png,detections.png}
demo: $(STAMP)
	$(PY) -m frcnn_edu.train --data builtin --root data/builtin --out runs/demo --time-budget 600

bench: $(STAMP)
	$(PY) benchmarks/bench_ops.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
