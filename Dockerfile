# One image for every service and step: the command picks which (see the ENTRYPOINT).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install . && useradd --system --uid 10001 crm
USER crm
# Commands keep nothing on disk in production (keys come from CRM_API_KEYS); a
# writable place for what a command would keep.
ENV CRM_HOST=0.0.0.0 CRM_DATA_DIR=/tmp/crm
EXPOSE 8001 8002 8003 8004
# Any step by command: `serve <service>`, `migrate --service <service>`, `topics apply`.
# Migrations are a step of their own (compose one-shots): a service never migrates
# at start, and refuses a schema older than it needs (on Kubernetes: an init container
# per pod, safe at once: `crm migrate` holds an advisory lock).
ENTRYPOINT ["crm"]
CMD ["--help"]
