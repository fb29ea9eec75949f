# syntax=docker/dockerfile:1
# One image per service:
#   docker build --build-arg SERVICE=ingest -t cdp/ingest:0.1.0 .
# SERVICE is a directory under services/ (ingest, identity, profile, segment, prediction,
# journey, channel-gateway, analytics); the image runs `python -m cdp_<SERVICE with - as _>`.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: install the shared libs and the service into a venv --------------------
FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<service>" >&2; exit 1; }
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/cdp
WORKDIR /src
COPY constraints.txt ./
COPY libs/cdp_proto ./libs/cdp_proto
COPY libs/cdp_core ./libs/cdp_core
COPY services/${SERVICE} ./services/${SERVICE}
# Versions pinned by constraints.txt; non-editable installs, so /src is not needed later.
RUN /opt/cdp/bin/pip install -c constraints.txt \
        ./libs/cdp_proto ./libs/cdp_core "./services/${SERVICE}" \
    && /opt/cdp/bin/python -m compileall -q /opt/cdp/lib
# The entry point: exec replaces the shell, so the service is PID 1 and gets SIGTERM.
RUN module="cdp_$(printf '%s' "${SERVICE}" | tr '-' '_')" \
    && /opt/cdp/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)" "${module}" \
    && printf '#!/bin/sh\nexec /opt/cdp/bin/python -m %s "$@"\n' "${module}" > /opt/cdp/bin/cdp-service \
    && chmod 0755 /opt/cdp/bin/cdp-service

# ---- runtime: the venv on a clean base, non-root ------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="cdp-${SERVICE}" \
      org.opencontainers.image.description="CDP ${SERVICE} service"
RUN groupadd --system --gid 10001 cdp \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
         --home-dir /tmp --shell /usr/sbin/nologin cdp
COPY --from=build /opt/cdp /opt/cdp
ENV CDP_SERVICE=${SERVICE} \
    PATH=/opt/cdp/bin:${PATH} \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 10001:10001
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/cdp/bin/cdp-service"]
