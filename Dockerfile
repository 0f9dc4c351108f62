# One image for every service and step: the command picks which (see the ENTRYPOINT).
# Build: docker build --build-arg VERSION=$(grep -m1 '^version' pyproject.toml | cut -d'"' -f2) .

# Builder: the project's wheel, built by the pinned backend (requirements-build.lock), and
# a virtualenv from the lock file (every package pinned, hash-checked) with that wheel.
# Nothing from this stage but the virtualenv ships.
FROM python:3.11.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock requirements-build.lock ./
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --no-deps -r requirements-build.lock \
    && python -m venv /opt/crm \
    && /opt/crm/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/crm/bin/pip install --no-deps /wheels/*.whl

# Runtime: the same slim Python, no compilers, no dev broker (the `embedded` extra is not
# installed: production talks to Apache Kafka), a user with no shell and no home to write.
FROM python:3.11.11-slim-bookworm
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="crm-retention" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/crm/bin:$PATH \
    CRM_HOST=0.0.0.0 CRM_DATA_DIR=/tmp/crm
RUN groupadd --system --gid 10001 crm \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin crm
COPY --from=builder /opt/crm /opt/crm
USER 10001:10001
EXPOSE 8001 8002 8003 8004
# Healthy when a service on this host answers /healthz on its port (`crm health`; one
# runs per container), or the one CRM_SERVICE names, where it is set. Steps (migrate,
# topics apply) are one-shots.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["crm", "health"]
# Any step by command: `serve <service>`, `migrate --service <service>`, `topics apply`.
# A service never migrates at start; it refuses a schema older than it needs.
ENTRYPOINT ["crm"]
CMD ["--help"]
