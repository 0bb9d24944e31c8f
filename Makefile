# Quick start:  make demo   (install, train a VAE on the embedded digits set, write samples)
#               make test   (install with the test extras, run the tests)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/python -m pip install -q -c constraints.txt

.PHONY: demo test test-all test-gpu chromium install bench-vae-mnist clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test]'
	touch $@

install: $(VENV)/.installed

# one thread unless OMP_NUM_THREADS says otherwise: the demo's small VAE trains 2.3x as fast so on 2 busy cores
# (29.9 s against 69.7 s for its 6,000 steps), where a second thread only waits
demo: export OMP_NUM_THREADS ?= 1
demo: $(VENV)/.installed
	@run=runs/demo-$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/genzoo train vae --run-dir $$run && \
	$(BIN)/genzoo sample $$run -n 64 -o $$run/grid.png && \
	$(BIN)/genzoo eval $$run --iwae-k 1000 --no-progress && \
	echo "samples: $$run/grid.png (training evolution in $$run/samples/)"

test: $(VENV)/.installed-test chromium
	$(BIN)/python -m pytest -q

# headless Chromium for the report.html test (Debian's package; the test drives it with playwright)
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for tests/test_report.py (apt-get)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q chromium >/dev/null || { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; }

test-all: $(VENV)/.installed-test chromium
	$(BIN)/python -m pytest -q -m 'not gpu'

# on a machine with CUDA: one model per family on the GPU (tests/test_gpu.py)
test-gpu: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -m gpu

# VAE on dynamically binarized MNIST (BENCHMARKS.md); MNIST from ../shared/data/mnist or $GENZOO_DATA
bench-vae-mnist: $(VENV)/.installed
	$(BIN)/genzoo train --config configs/vae-mnist-binarized.toml --data-root $${GENZOO_DATA:-../shared/data/mnist} --run-dir runs/vae-mnist-bench --no-progress
	$(BIN)/genzoo eval runs/vae-mnist-bench --iwae-k 5000 --no-progress

clean:
	rm -rf $(VENV) build *.egg-info
