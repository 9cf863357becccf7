# Set-up is self-contained: `make demo` and `make test` create the virtualenv,
# install the Python dependencies and the Debian packages they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DOCKSCOPE := $(VENV)/bin/dockscope

# Debian packages: what the tool needs at run time, and the real peers the tests use.
DEBS_RUN := libmagic1 graphviz zstd libseccomp2 uidmap iproute2 nftables
DEBS_TEST := $(DEBS_RUN) busybox-static buildah skopeo podman umoci chromium runc crun golang-go \
	gcc libc6-dev docker-registry openssl tmux rpm \
	golang-github-opencontainers-specs-dev jq

.PHONY: demo test bytecode lint typecheck unit bench samples debs-run debs-test fresh-check clean

# A runnable image of the host's static busybox for `dockscope run`: about 2 MB, so built
# (the same bytes for the same binary) instead of committed.
BUSYBOX_IMAGE := sample_images/busybox.tar

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Our own modules compiled to bytecode, as pip compiles an installed package: an editable
# install leaves them to the interpreter, which under PYTHONDONTWRITEBYTECODE=1 compiles every
# module again at every start (~40 ms of a command's start-up here). Up-to-date files are skipped.
# Then the code of the dataclasses' generated methods, kept beside it (inspect_tool/classcode.py).
bytecode: $(VENV)/.installed
	@$(PY) -m compileall -q inspect_tool runtime_lab
	@$(PY) -m inspect_tool.classcode

debs-run:
	@bash .ci/ensure-debs $(DEBS_RUN)

debs-test:
	@bash .ci/ensure-debs $(DEBS_TEST)

# the generator: the script and its package
SAMPLE_GENERATOR := sample_images/make_samples.py $(wildcard sample_images/samples/*.py)

$(BUSYBOX_IMAGE): $(SAMPLE_GENERATOR) $(wildcard /bin/busybox) | $(VENV)/.installed
	@bash .ci/ensure-debs busybox-static
	$(PY) sample_images/make_samples.py --busybox $@

demo: $(VENV)/.installed bytecode debs-run $(BUSYBOX_IMAGE)
	$(DOCKSCOPE) inspect sample_images/docker-archive-legacy.tar
	$(DOCKSCOPE) verify sample_images/docker-archive-legacy.tar
	$(DOCKSCOPE) inspect --explain-ids sample_images/oci-layout
	@if [ "$$(id -u)" -eq 0 ]; then \
	  set -x; $(DOCKSCOPE) run --rm --trace --hostname demo $(BUSYBOX_IMAGE) \
	    sh -c 'echo "hello from PID $$$$ on $$(hostname)"; ls /'; \
	else \
	  set -x; $(DOCKSCOPE) run --explain $(BUSYBOX_IMAGE); \
	  echo "(sudo make demo runs it as root, with --trace; as yourself, dockscope run goes rootless: docs/RUNTIME.md)"; \
	fi

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check inspect_tool runtime_lab tests benchmarks sample_images
	$(VENV)/bin/ruff format --check inspect_tool runtime_lab tests benchmarks sample_images

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

unit: $(VENV)/.installed bytecode debs-test $(BUSYBOX_IMAGE)
	$(PY) -m pytest

test: lint typecheck unit

samples: $(VENV)/.installed
	$(PY) sample_images/make_samples.py

bench: $(VENV)/.installed bytecode debs-test $(BUSYBOX_IMAGE)
	@# every benchmark runs and prints its table; the target fails if any missed a target
	@status=0; for script in bench_inspect_verify bench_floor bench_layers bench_unpack bench_export bench_runtime \
		bench_deep_paths bench_contents bench_pull; do \
		echo "== benchmarks/$$script.py"; \
		$(PY) benchmarks/$$script.py || status=1; \
	done; exit $$status

# `make demo && make test` on a clean Debian bookworm root (mmdebstrap, cached outside the
# tree), the committed HEAD cloned into it: what a fresh machine does (root only)
fresh-check:
	bash .ci/fresh-check

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache $(BUSYBOX_IMAGE)
