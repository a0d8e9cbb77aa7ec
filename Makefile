# Two commands do all set-up on a fresh Debian machine with Python 3.11:
#   make demo   - diarize and transcribe the sample shipped with pyannote.audio into out/
#   make test   - run the test suite (real models, real audio, real servers on loopback)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SAMPLE = $$($(PY) -c "import importlib.util,os; print(os.path.join(os.path.dirname(importlib.util.find_spec('pyannote.audio').origin), 'sample', 'sample.wav'))")
SAMPLE_DIR = $$($(PY) -c "import importlib.util,os; print(os.path.join(os.path.dirname(importlib.util.find_spec('pyannote.audio').origin), 'sample'))")

.PHONY: demo test bench eval system-deps install models clean clean-venv

system-deps:
	@command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || { \
	  echo "installing ffmpeg (apt-get)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq ffmpeg >/dev/null; }
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing chromium and chromium-driver for the review page's browser test (apt-get)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@command -v fluidsynth >/dev/null && test -f /usr/share/sounds/sf2/FluidR3_GM.sf2 || { echo "installing fluidsynth + FluidR3_GM (apt-get, for eval music)"; $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq fluidsynth fluid-soundfont-gm >/dev/null; }

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch's CUDA wheels make the venv about 8.5 GB; pip unpacks them from ~4 GB of downloads (torch and the nvidia wheels: 3.9 GB).
# No pip cache (it would keep another copy of those downloads); a warning when the disk is short.
NEED_GIB := 13
$(STAMP): requirements.txt pyproject.toml | $(PY)
	@free=$$(df -Pk $(VENV) | awk 'NR==2 {print int($$4 / 1048576)}'); \
	  [ "$$free" -ge $(NEED_GIB) ] || echo "warning: $$free GiB free on the disk of $(VENV); installing needs about $(NEED_GIB) GiB (torch's CUDA wheels). Free some space if pip stops with 'No space left on device'." >&2
	$(PY) -m pip install -q --no-cache-dir --upgrade pip
	$(PY) -m pip install -q --no-cache-dir -r requirements.txt
	$(PY) -m pip install -q --no-cache-dir --no-deps -e .
	touch $(STAMP)

install: system-deps $(STAMP)

model/manifest.json: scripts/fetch_models.py | $(STAMP)
	$(PY) scripts/fetch_models.py --profile bundled --out model -q

models: install model/manifest.json

demo: models
	$(VENV)/bin/diarkit transcribe "$(SAMPLE)" -o out --model-dir model

test: models
	$(PY) -m pytest -m "not slow"

# the slow memory test only: collecting the other test modules imports torch into pytest, and
# library pages a live process maps cannot be dropped before the measured child
# (eval/bench.py:settle_library_pages)
bench: models
	$(PY) -m pytest -m slow tests/test_bench.py

# the evaluation reports in eval/results (needs ../shared/data; see eval/RESULTS.md)
eval: models
	$(PY) -m eval run ../shared/data/ami-excerpts --out eval/results/ami --groups eval/ami_groups.tsv --device cpu
	rm -rf eval/work/sim
	$(PY) -m eval simulate --out eval/work/sim --num-files 20 --min-speakers 2 --max-speakers 5 --overlap-ratio 0.05 --seed 0
	$(PY) -m eval run eval/work/sim --out eval/results/sim --groups eval/work/sim/groups.tsv --device cpu
	$(PY) -m eval run $(SAMPLE_DIR) --out eval/results/sample --device cpu
	rm -rf eval/work/sim-tuning
	$(PY) -m eval simulate --out eval/work/sim-tuning --num-files 20 --min-speakers 2 --max-speakers 5 --overlap-ratio 0.05 --seed 100
	$(PY) -m eval run eval/work/sim-tuning --out eval/results/sim-tuning --groups eval/work/sim-tuning/groups.tsv --device cpu
	$(PY) -m eval floor ../shared/data/ami-excerpts --thresholds 0.25,0.45,0.5 --out eval/results/floor/ami.md
	$(PY) -m eval floor eval/work/sim --thresholds 0.25,0.45,0.5 --out eval/results/floor/sim.md
	$(PY) -m eval floor eval/work/sim-tuning --thresholds 0.45 --out eval/results/floor/sim-tuning.md
	$(PY) -m eval floor $(SAMPLE_DIR) --thresholds 0.45 --out eval/results/floor/sample.md

clean:
	rm -rf out .pytest_cache

clean-venv:
	rm -rf $(VENV)
