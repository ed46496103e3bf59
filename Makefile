# One entry point. `make test` is what CI runs; `make bed` starts the test bed.
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH):/usr/local/go/bin
PY := .venv/bin/python

.PHONY: test bootstrap lint typecheck pytest bed demo crd manifests

test: bootstrap lint typecheck pytest  ## everything CI checks, from a fresh machine

bootstrap:
	@scripts/bootstrap

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck:
	$(PY) -m mypy
	$(PY) -m mypy --strict tests/testbed

pytest:
	$(PY) -m pytest $(PYTEST_ARGS)

bed: bootstrap  ## start the real servers and print `export` lines; Ctrl-C stops them
	@$(PY) -m tests.testbed up

crd:  ## regenerate the CRD from the pydantic models (a unit test fails when it is stale)
	PYTHONPATH=operator $(PY) -m contactsync.api.crd > crds/.contactsync.yaml.tmp
	mv crds/.contactsync.yaml.tmp crds/contactsync.dev_contactsyncs.yaml
	cp crds/contactsync.dev_contactsyncs.yaml charts/contactsync-operator/crds/
	$(MAKE) manifests

manifests:  ## regenerate deploy/ from the chart's defaults (a test fails when it is stale)
	$(PY) scripts/manifests.py

demo: bootstrap  ## the product end to end on a local control plane, Prefect and PostgreSQL
	@$(PY) scripts/demo.py
