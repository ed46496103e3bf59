# The three images of ContactSync, one target each (see docs/install.md):
#   docker build --target operator -t contactsync/operator:0.1.0 .
#   docker build --target sync     -t contactsync/sync:0.1.0 .
#   docker build --target worker   -t contactsync/worker:0.1.0 .
# The package is installed from this repository with constraints.txt; the
# final images hold a virtualenv and no build tools, and run as UID 10001
# (controller/desired.py and the chart run every pod as that user).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG RUST_IMAGE=rust:1.95.0-slim-bookworm

FROM ${RUST_IMAGE} AS rust

# -- build: the package (and, for the worker, prefect-kubernetes) into /opt/contactsync
# The virtualenv gets no pip of its own: the build stage's pip installs into it.
# cargo and a C compiler build the engine's native module (native/); they stay here.
FROM ${PYTHON_IMAGE} AS build
COPY --from=rust /usr/local/cargo /usr/local/cargo
COPY --from=rust /usr/local/rustup /usr/local/rustup
ENV CARGO_HOME=/usr/local/cargo RUSTUP_HOME=/usr/local/rustup PATH=/usr/local/cargo/bin:$PATH
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python -m pip install --no-cache-dir --quiet "pip==26.3" \
 && python -m venv --without-pip /opt/contactsync
COPY pyproject.toml constraints.txt README.md ./
COPY native ./native
COPY operator ./operator
RUN python -m pip --python /opt/contactsync/bin/python install --no-cache-dir \
      -c constraints.txt .

FROM build AS build-worker
RUN python -m pip --python /opt/contactsync/bin/python install --no-cache-dir \
      -c constraints.txt "prefect-kubernetes==0.8.0"

# -- runtime: the slim base without pip, and the non-root user
FROM ${PYTHON_IMAGE} AS runtime
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
 && groupadd --gid 10001 contactsync \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin contactsync
# The root filesystem is read-only in the cluster: HOME is the writable /tmp
# emptyDir, and no bytecode is written next to the code.
ENV PATH=/opt/contactsync/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# -- the operator: the chart gives the full command (namespaces, liveness)
FROM runtime AS operator
COPY --from=build /opt/contactsync /opt/contactsync
# glibc gives every handler thread its own malloc arena, each keeping the
# memory it freed; two arenas lower the peak RSS after a burst of creates
# (benchmarks/operator_latency.py sets the same).
ENV MALLOC_ARENA_MAX=2
USER 10001:10001
ENTRYPOINT ["kopf", "run", "--standalone", "-m", "contactsync.controller.handlers"]
CMD ["--all-namespaces", "--liveness=http://0.0.0.0:8081/healthz"]

# -- a sync Job: Prefect's worker gives the command (prefect flow-run execute)
FROM runtime AS sync
COPY --from=build /opt/contactsync /opt/contactsync
USER 10001:10001

# -- the Prefect worker the operator deploys per namespace (prefect worker start ...)
FROM runtime AS worker
COPY --from=build-worker /opt/contactsync /opt/contactsync
USER 10001:10001
