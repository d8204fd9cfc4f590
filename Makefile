# shoprecs — every command the README documents. `make help` lists them.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
LOCALFS := $(VENV)/share/shoprecs/localfs.jar
AOT    := $(VENV)/.aot-stamp
SETUP  := $(STAMP) $(LOCALFS) $(AOT)
export PYSPARK_PYTHON := $(abspath $(BIN)/python)

.DEFAULT_GOAL := help
.PHONY: help install demo test lint serve simulator pipeline lock clean bench bench-etl \
	bench-quality airflow dag-test

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): setup.py constraints.txt
	@command -v java >/dev/null || { echo "error: Java 17 is required (java not on PATH)"; exit 1; }
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar on -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Hadoop's local file system without a chmod process per file written (shoprecs/localfs.py),
# compiled with the JDK's javac against the installed pyspark. Without javac Spark keeps
# Hadoop's own, slower at writing many files, and the note says so.
$(LOCALFS): shoprecs/java/NoForkLocalFileSystem.java $(STAMP)
	-$(BIN)/python -m shoprecs.localfs

# The Spark driver's AOT cache (shoprecs/jvm.py): a training run of the pipeline on a small
# generated shop, ~2 minutes once (again when shoprecs/jvm.py or the driver's options in
# spark-defaults.conf change the cache's key; a no-op otherwise). Without it nights run as
# before, only slower to warm up.
$(AOT): $(STAMP) $(LOCALFS) shoprecs/jvm.py spark-defaults.conf
	-$(BIN)/python -m shoprecs.jvm
	@touch $@

install: $(SETUP)  ## create .venv and install shoprecs with pinned dependencies

PROFILE ?= default
demo: $(SETUP)  ## generate a shop (PROFILE=tiny|no_repeat|long_tail|seasonal|guests), run the night, serve, show answers
	$(BIN)/shoprecs demo --profile $(PROFILE)

test: $(SETUP) browser  ## run the whole test suite
	$(BIN)/python -m pytest

# A Spark standalone master + worker on 127.0.0.1:7077 (logs, scratch and both warehouses in
# var/cluster/), the pipeline run there and in local mode, results compared; the cluster is
# always stopped. `make test` runs it too.
.PHONY: cluster-test
cluster-test: $(SETUP)  ## the pipeline on a loopback Spark standalone cluster = local mode
	$(BIN)/python -m pytest -m cluster -o log_cli=true --log-cli-level=INFO

# Headless Chromium for the merchandiser-page test (tests/service/test_browser.py): Debian's
# chromium and chromium-driver, installed only when missing and only where apt-get can run
# (root); otherwise that test is skipped and says why.
.PHONY: browser wrk bench-serve bench-als bench-fpgrowth bench-scale bench-profiles native-blas
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium + chromium-driver for the browser test"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium chromium-driver >/dev/null; } || echo "note: apt-get failed; browser test skipped"; \
	  else echo "note: no chromium/chromedriver and no root for apt-get; browser test skipped"; fi; \
	fi

dag-test: $(SETUP)  ## `airflow dags test` of the nightly DAG against the simulator (also in test)
	$(BIN)/python -m pytest tests/dags

# `make airflow`: Airflow 3 standalone (api-server, scheduler, dag-processor, triggerer) in
# var/airflow, dags/ as its DAG folder, the bus simulator on :8765 serving the last 30 days.
AIRFLOW_PORT ?= 8088
airflow: $(SETUP)  ## local Airflow on http://127.0.0.1:8088 (DAG shoprecs_daily), bus simulator
	mkdir -p var/airflow
	$(BIN)/shoprecs simulator --start $$(date -u -d '30 days ago' +%F) --days 31 --orders 20000 \
		--port 8765 > var/airflow/simulator.log 2>&1 & SIM=$$!; \
	trap 'kill $$SIM' EXIT INT TERM; \
	AIRFLOW_HOME=$(abspath var/airflow) AIRFLOW__CORE__DAGS_FOLDER=$(abspath dags) \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__API__HOST=127.0.0.1 \
	AIRFLOW__API__PORT=$(AIRFLOW_PORT) AIRFLOW__API__BASE_URL=http://127.0.0.1:$(AIRFLOW_PORT) \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True \
	SHOPRECS_WAREHOUSE_ROOT=$${SHOPRECS_WAREHOUSE_ROOT:-$(abspath var/warehouse)} \
	SHOPRECS_BUS_URL=$${SHOPRECS_BUS_URL:-http://127.0.0.1:8765} \
	PATH=$(abspath $(BIN)):$$PATH airflow standalone

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(SETUP)
	$(BIN)/pip install --progress-bar on -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: bench-etl bench-quality bench-als bench-fpgrowth bench-serve  ## every benchmark (figures in bench/RESULTS.md)

bench-etl: $(SETUP)  ## extractor vs a sequential client, 100k orders from the simulator
	$(BIN)/python bench/etl.py

bench-serve: $(SETUP) wrk  ## the API on CherryPy under 32 connections of mixed traffic; seed's Spark lookup
	$(BIN)/python -m bench.serve

# wrk (C) drives bench-serve's closed loop and leaves the 2 cores to the server; Debian's
# package, installed only when missing and only where apt-get can run (root). Without it
# bench/serve.py drives the closed loop with its own asyncio generator.
wrk:
	@if ! command -v wrk >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's wrk for bench-serve"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      wrk >/dev/null; } || echo "note: apt-get failed; bench-serve uses its Python load generator"; \
	  else echo "note: no wrk and no root for apt-get; bench-serve uses its Python load generator"; fi; \
	fi

bench-quality: $(BENCH_STAMP) native-blas  ## every model on Online Retail, with implicit as a reference
	$(BIN)/python -m bench.quality

bench-als: $(BENCH_STAMP) native-blas  ## Spark ALS fit time against implicit's, same data
	$(BIN)/python -m bench.als

bench-profiles: $(SETUP)  ## the default night on every kind of generated shop, against the baselines
	$(BIN)/python -m bench.profiles

bench-fpgrowth: $(SETUP)  ## FP-Growth itemsets + rules on Online Retail at minSupport 0.01
	$(BIN)/python -m bench.fpgrowth

bench-scale: $(SETUP)  ## the nightly pipeline on Online Retail and at 1x, 4x, 16x its volume (long)
	$(BIN)/python -m bench.scale --real

# Spark's ALS solves through MKL, which `make install` puts in the venv on x86-64 Linux
# (shoprecs/blas.py). Elsewhere it uses the system's BLAS and LAPACK (libblas.so.3,
# liblapack.so.3), else pure Java; OpenBLAS made the fit ~2x faster than Java here.
native-blas: $(STAMP)  ## install OpenBLAS for Spark's ALS (Debian, as root) unless MKL or a LAPACK is there
	@if ! $(BIN)/python -c 'import sys; from shoprecs import blas; sys.exit(blas.library() is None)' \
	    && ! ldconfig -p | grep -q 'liblapack.so.3 '; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's libopenblas0-pthread for Spark's ALS"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      libopenblas0-pthread >/dev/null; } || echo "note: apt-get failed; ALS runs on Java BLAS"; \
	  else echo "note: no MKL, no liblapack.so.3 and no root for apt-get; ALS runs on Java BLAS"; fi; \
	fi

lint: $(STAMP)  ## ruff (100 columns)
	$(BIN)/ruff check .

serve: $(SETUP)  ## serve serving/CURRENT of the configured warehouse
	$(BIN)/shoprecs serve

simulator: $(SETUP)  ## run the order-bus simulator on generated data
	$(BIN)/shoprecs simulator

lock:  ## re-pin constraints.txt from a fresh resolve of setup.py
	rm -rf /tmp/shoprecs-lock && $(PYTHON) -m venv /tmp/shoprecs-lock
	/tmp/shoprecs-lock/bin/pip install --quiet -e '.[dev]'
	{ head -2 constraints.txt; /tmp/shoprecs-lock/bin/pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt

clean:  ## remove generated data (var/), keep the venv
	rm -rf var spark-warehouse metastore_db derby.log
