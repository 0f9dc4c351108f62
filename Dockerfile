# One image for every service: `crm serve <service>` picks which one runs.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install . && useradd --system --uid 10001 crm
USER crm
ENV CRM_HOST=0.0.0.0
EXPOSE 8001 8002 8003 8004
# Migrate, then serve (the pre-start step of full-stack-fastapi-template).
ENTRYPOINT ["sh", "-c", "crm migrate --service \"$CRM_SERVICE\" && exec crm serve \"$CRM_SERVICE\""]
