# shoprecs — every command the README documents. `make help` lists them.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export PYSPARK_PYTHON := $(abspath $(BIN)/python)

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast lint serve simulator lock clean mkl airflow dag-test \
	cluster-test crash-test browser wrk native-blas bench bench-etl bench-quality bench-als \
	bench-fpgrowth bench-serve bench-scale bench-cluster bench-mongo bench-profiles bench-sweep bench-variants mlflow \
	bench-attribution docs

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): setup.py constraints.txt
	@command -v java >/dev/null || [ -n "$$JAVA_HOME" ] || { \
	  echo "error: Spark needs Java 17 or newer: install it or set JAVA_HOME"; exit 1; }
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar on -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install shoprecs with everything, pinned

PROFILE ?= default
demo: $(STAMP)  ## a generated shop (PROFILE=tiny|no_repeat|long_tail|seasonal|guests) through the night, served, asked
	$(BIN)/shoprecs demo --profile $(PROFILE)

test: $(STAMP) browser lint  ## lint, then the whole test suite (the cluster test: make cluster-test)
	$(BIN)/python -m pytest -m "not cluster and not crash"

test-fast: $(STAMP)  ## the tests without Spark, Airflow or a browser: the edit-test loop
	$(BIN)/python -m pytest -m "not spark and not airflow and not browser and not cluster and not slow"

lint: $(STAMP)  ## ruff (100 columns) and the import contract (.importlinter)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

serve: $(STAMP)  ## serve serving/CURRENT of the configured warehouse
	$(BIN)/shoprecs serve

simulator: $(STAMP)  ## run the order-bus simulator on generated data
	$(BIN)/shoprecs simulator

mkl: $(STAMP)  ## add Intel's MKL for Spark's ALS (x86-64 Linux; pipeline/blas.py)
	$(BIN)/pip install --progress-bar on -c constraints.txt -e '.[dev,mkl]'

# A Spark standalone master + worker on 127.0.0.1:7077 (logs, scratch and both warehouses in
# var/cluster/), the pipeline run there and in local mode, results compared; the cluster is
# always stopped. CI runs it after `make test` (.ci/run); about 2.5 minutes on 2 cores.
cluster-test: $(STAMP)  ## the pipeline on a loopback Spark standalone cluster = local mode
	$(BIN)/python -m pytest -m cluster -o log_cli=true --log-cli-level=INFO

# `shoprecs run` SIGKILLed at every step boundary and in the middle of extract, clean, train
# and publish, re-run after each kill, then twice at once: the result equals an
# uninterrupted night's and a running service answered throughout. CI runs it after
# `make test` (.ci/run); about 3 minutes on 2 cores.
crash-test: $(STAMP)  ## kill the night at every step, re-run: the uninterrupted result
	$(BIN)/python -m pytest -m crash

dag-test: $(STAMP)  ## `airflow dags test` of the DAGs against the simulator (also in test)
	$(BIN)/python -m pytest tests/dags

# `make airflow`: Airflow 3 standalone (api-server, scheduler, dag-processor, triggerer) in
# var/airflow, dags/ as its DAG folder, the bus simulator on :8765 serving the last 30 days.
AIRFLOW_PORT ?= 8088
airflow: $(STAMP)  ## local Airflow on http://127.0.0.1:8088 (DAG shoprecs_daily), bus simulator
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

# `make mlflow`: the MLflow UI on the runs `train` and `tune` logged (models/tracking.py) in the
# configured store, by default <warehouse>/mlflow.db (SHOPRECS_WAREHOUSE_ROOT or the config
# file; var/warehouse). The pipeline logs with mlflow-skinny (pinned in constraints.txt); the
# UI needs full MLflow, whose pins clash with the project's (pyarrow<26, importlib_metadata<10),
# so it lives in a venv of its own, at the client's version: the store's schema is theirs.
# One worker and no job runner (GenAI scorers): a UI for one person.
MLFLOW_PORT    ?= 5000
MLFLOW_VENV    := $(VENV)/mlflow-ui
MLFLOW_STAMP   := $(VENV)/.mlflow-stamp
MLFLOW_VERSION := $(shell sed -n 's/^mlflow-skinny==//p' constraints.txt)
$(MLFLOW_STAMP): $(STAMP) constraints.txt
	rm -rf $(MLFLOW_VENV) && $(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/pip install --progress-bar on 'mlflow==$(MLFLOW_VERSION)'
	touch $(MLFLOW_STAMP)

mlflow: $(MLFLOW_STAMP)  ## the MLflow UI on http://127.0.0.1:5000: every train and tune run, what is served
	@set -- $$($(BIN)/python -m models.tracking) && case "$$1" in \
	  http*|databricks*) echo "runs are tracked on a server (tracking.uri): open its UI"; exit 0;; \
	esac; \
	  mkdir -p "$${2#file://}" && \
	  echo "MLflow UI on http://127.0.0.1:$(MLFLOW_PORT)" && \
	  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false exec $(MLFLOW_VENV)/bin/mlflow server \
	    --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1 \
	    --backend-store-uri "$$1" --artifacts-destination "$$2"

# Debian packages, installed only when missing and only where apt-get can run (root);
# otherwise the note says what is skipped. chromium: the merchandisers' page test; wrk:
# bench-serve's closed loop (else its Python generator); OpenBLAS: Spark's ALS (else Java).
define apt_install
	@if ! { $(2); }; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's $(1)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      $(1) >/dev/null; } || echo "note: apt-get failed: $(3)"; \
	  else echo "note: no $(1) and no root for apt-get: $(3)"; fi; \
	fi
endef

browser:
	$(call apt_install,chromium chromium-driver,command -v chromium >/dev/null && command -v chromedriver >/dev/null,the browser test is skipped)

wrk:
	$(call apt_install,wrk,command -v wrk >/dev/null,bench-serve uses its Python load generator)

native-blas:  ## OpenBLAS for Spark's ALS (Debian, as root) unless a LAPACK is there
	$(call apt_install,libopenblas0-pthread,ldconfig -p | grep -q 'liblapack.so.3 ',ALS runs on Java BLAS)

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --progress-bar on -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: bench-etl bench-quality bench-profiles bench-als bench-fpgrowth bench-serve \
	bench-attribution  ## every benchmark (bench/RESULTS.md)

bench-etl: $(STAMP)  ## extractor vs a sequential client, 100k orders from the simulator
	$(BIN)/python bench/etl.py

bench-serve: $(STAMP) wrk  ## the API on CherryPy under 32 connections of mixed traffic
	$(BIN)/python -m bench.serve

bench-quality: $(BENCH_STAMP) native-blas  ## every model on Online Retail, with implicit as a reference
	$(BIN)/python -m bench.quality

bench-profiles: $(STAMP)  ## the default night on every kind of generated shop, against the baselines
	$(BIN)/python -m bench.profiles

bench-attribution: $(STAMP)  ## 200 A/A and 200 A/B tests through the attribution job: false positives, power
	$(BIN)/python -m bench.attribution

bench-sweep: $(STAMP)  ## training window, repeat half-life and kNN neighbours, swept on Online Retail and the demo shop
	$(BIN)/python -m bench.sweep

bench-variants: $(STAMP)  ## how varied a product's top rules are, with and without collapsed variants
	$(BIN)/python -m bench.variants

bench-als: $(BENCH_STAMP) native-blas  ## Spark ALS fit time against implicit's, same data
	$(BIN)/python -m bench.als

bench-fpgrowth: $(STAMP)  ## FP-Growth itemsets + rules on Online Retail at minSupport 0.01
	$(BIN)/python -m bench.fpgrowth

bench-scale: $(BENCH_STAMP)  ## the night on Online Retail, at 1x, 4x, 16x its volume, and a million shoppers trained and served (long)
	$(BIN)/python -m bench.scale --real --large

bench-mongo: $(BENCH_STAMP)  ## the large shop published into MongoDB (killed, resumed) and served from it (MONGO_URI; after bench-scale)
	$(BIN)/python -m bench.mongo

bench-cluster: $(BENCH_STAMP)  ## the large shop's night on a loopback standalone cluster, compared with local mode (after bench-scale; long)
	$(BIN)/python -m bench.cluster

docs: $(STAMP)  ## the settings blocks of docs/ made again from core/config.py
	$(BIN)/python -m core.config

lock:  ## re-pin constraints.txt from a fresh resolve of setup.py
	rm -rf /tmp/shoprecs-lock && $(PYTHON) -m venv /tmp/shoprecs-lock
	/tmp/shoprecs-lock/bin/pip install --quiet -e '.[dev,bench]'
	{ head -2 constraints.txt; /tmp/shoprecs-lock/bin/pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt

clean:  ## remove generated data (var/), keep the venv
	rm -rf var spark-warehouse metastore_db derby.log
