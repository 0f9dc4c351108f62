"""Settings every service shares; each service subclasses with its own env prefix.

Fields common to the whole platform (broker, API keys, dev mode, base currency) are
read from `CRM_*` names; the service's own fields (database URL, port) from its prefix,
e.g. `CRM_PROFILE_DATABASE_URL`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_API_KEY = "dev-admin-key"  # the well-known key accepted only in dev mode
KAFKA_DEFAULTS: dict[str, dict[str, int]] = {
    # Per broker kind: Apache Kafka's client defaults and a replicated topic; Tansu's.
    "kafka": {
        "kafka_replication_factor": 3,
        "kafka_min_insync_replicas": 2,
        "kafka_session_timeout_ms": 45000,
        "kafka_heartbeat_interval_ms": 3000,
        "kafka_fetch_max_wait_ms": 500,
        "kafka_request_timeout_ms": 30000,
    },
    "embedded": {
        "kafka_replication_factor": 1,
        "kafka_min_insync_replicas": 1,
        "kafka_session_timeout_ms": 6000,
        "kafka_heartbeat_interval_ms": 1000,
        "kafka_fetch_max_wait_ms": 100,
        "kafka_request_timeout_ms": 10000,
    },
}


class ApiKeyGrant(BaseModel):
    """What one API key may do: its roles, and the user it stands for."""

    roles: list[str]
    user: str


def project_data_dir() -> Path:
    """Where the embedded default keeps its databases and keys: the project's own `.crm`
    when running from a checkout (whatever the current folder), else `./.crm`."""
    root = Path(__file__).resolve().parents[1]
    return root / ".crm" if (root / "pyproject.toml").exists() else Path(".crm")


def _platform(name: str) -> Any:
    """A field read from the platform-wide `CRM_<NAME>` variable (or its field name)."""
    return AliasChoices(name, f"CRM_{name.upper()}")


# What the example env file (deploy/compose.env.example) fills every secret with.
EXAMPLE_SECRET = "change-me"  # noqa: S105 - the placeholder refused, not a secret


class ServiceSettings(BaseSettings):
    """Base settings; a service sets `service_name`, its env prefix and defaults."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore", populate_by_name=True)

    service_name: str = "service"
    host: str = Field(default="127.0.0.1", validation_alias=_platform("host"))
    port: int = 8000
    # The path prefix a reverse proxy serves this service under (the Ingress's /profile,
    # stripped before it reaches us): the docs and links are written with it.
    root_path: str = Field(default="", pattern=r"^(/[A-Za-z0-9._~-]+)*$")
    database_url: str = ""

    data_dir: Path = Field(default_factory=project_data_dir, validation_alias=_platform("data_dir"))
    dev_mode: bool = Field(default=False, validation_alias=_platform("dev_mode"))
    api_keys: dict[str, ApiKeyGrant] = Field(
        default_factory=dict, validation_alias=_platform("api_keys")
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_platform("cors_origins")
    )
    base_currency: str = Field(default="CNY", validation_alias=_platform("base_currency"))
    log_level: str = Field(default="INFO", validation_alias=_platform("log_level"))
    log_json: bool = Field(default=True, validation_alias=_platform("log_json"))
    # Allocations between two young-generation garbage collections in a service process
    # (Python's default is 700). A poll of thousands of events allocates millions of
    # objects, each collection walking the survivors: at 700, a consumer spent more time
    # collecting than applying. 0 keeps Python's default.
    gc_threshold: int = Field(default=50_000, ge=0, validation_alias=_platform("gc_threshold"))

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", validation_alias=_platform("kafka_bootstrap")
    )
    # Prepended to every topic name; empty in production (topics are named as the
    # event type), set per test so tests sharing one broker never see each other.
    kafka_topic_prefix: str = Field(default="", validation_alias=_platform("kafka_topic_prefix"))
    kafka_partitions: int = Field(default=6, ge=1, validation_alias=_platform("kafka_partitions"))
    # The topic declaration (shared/topics.py); 0: the broker kind's (1 and 1 embedded,
    # 3 and 2 on Kafka).
    kafka_replication_factor: int = Field(
        default=0, ge=0, validation_alias=_platform("kafka_replication_factor")
    )
    kafka_min_insync_replicas: int = Field(
        default=0, ge=0, validation_alias=_platform("kafka_min_insync_replicas")
    )
    kafka_retention_hours: float = Field(
        default=168, gt=0, validation_alias=_platform("kafka_retention_hours")
    )
    kafka_dlq_retention_hours: float = Field(
        default=720, gt=0, validation_alias=_platform("kafka_dlq_retention_hours")
    )
    # `embedded`: the Tansu broker `crm up` and the tests start (no idempotent producer,
    # short timeouts); `kafka`: Apache Kafka (idempotent producer, Kafka's own defaults).
    # Unset: `embedded` for a bootstrap on this machine, where `crm up` runs it, else
    # `kafka` (set it for an Apache Kafka on 127.0.0.1).
    kafka_broker: Literal["kafka", "embedded"] | None = Field(
        default=None, validation_alias=_platform("kafka_broker")
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", validation_alias=_platform("kafka_security_protocol")
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, validation_alias=_platform("kafka_sasl_mechanism")
    )
    kafka_sasl_username: str | None = Field(
        default=None, validation_alias=_platform("kafka_sasl_username")
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None, validation_alias=_platform("kafka_sasl_password")
    )
    # PEM files: the CA that signed the brokers' certificates; for mutual TLS, the
    # client's certificate, key and the key's password.
    kafka_ssl_cafile: Path | None = Field(
        default=None, validation_alias=_platform("kafka_ssl_cafile")
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, validation_alias=_platform("kafka_ssl_certfile")
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None, validation_alias=_platform("kafka_ssl_keyfile")
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, validation_alias=_platform("kafka_ssl_key_password")
    )
    # Unset: Kafka's defaults for `kafka`, short ones for `embedded` (Tansu holds
    # JoinGroup for half the session timeout, kafka-notes.md).
    kafka_session_timeout_ms: int = Field(
        default=0, ge=0, validation_alias=_platform("kafka_session_timeout_ms")
    )
    kafka_heartbeat_interval_ms: int = Field(
        default=0, ge=0, validation_alias=_platform("kafka_heartbeat_interval_ms")
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=0, ge=0, validation_alias=_platform("kafka_fetch_max_wait_ms")
    )
    kafka_request_timeout_ms: int = Field(
        default=0, ge=0, validation_alias=_platform("kafka_request_timeout_ms")
    )
    consumer_group: str = ""  # defaults to the service name
    consumer_max_attempts: int = Field(default=3, ge=1)
    # Messages a poll may bring (applied per partition in one transaction): larger polls
    # spread each transaction's fixed cost over more events.
    consumer_max_poll_records: int = Field(default=6000, ge=1, le=100_000)
    consumer_retry_backoff_s: float = Field(default=0.2, ge=0)
    # How often an idle consumer checks that it is not stuck: messages waiting on its
    # partitions while polls bring nothing (a client that never resumes after every broker
    # went away) restart it.
    consumer_stall_check_s: float = Field(default=10.0, gt=0)

    # Events read, sent and marked per round: each round has fixed costs (two transactions
    # and a wait for Kafka's acknowledgements), so at 500 a relay fell behind a purchase
    # import of ~10,000 rows/s.
    relay_batch_size: int = Field(default=5000, ge=1, le=20_000)
    relay_poll_interval_s: float = Field(default=0.5, gt=0)
    relay_max_backoff_s: float = Field(default=5.0, gt=0)
    # How long the relay's leadership lasts unrenewed: a replica that dies or stalls is
    # replaced after at most this long.
    relay_lease_s: float = Field(default=15.0, ge=1)
    outbox_retention_hours: float = Field(default=72, ge=0)
    # How many heavy tasks (a re-rank, a simulation, a model fit) run at once per replica;
    # a request for another while they run answers 429 with Retry-After.
    heavy_work_slots: int = Field(default=1, ge=1, le=16)
    # Longer than Kafka keeps the topics (7 days by default): an event is redelivered
    # only while its topic holds it.
    inbox_retention_hours: float = Field(
        default=336, ge=1, validation_alias=_platform("inbox_retention_hours")
    )
    idempotency_retention_hours: float = Field(
        default=24, ge=1, validation_alias=_platform("idempotency_retention_hours")
    )

    # Request bodies: JSON routes take at most `max_body_bytes`; the streamed CSV imports
    # (a service's `upload_paths`) at most `max_upload_bytes`.
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, validation_alias=_platform("max_body_bytes")
    )
    max_upload_bytes: int = Field(
        default=1_073_741_824, ge=1024, validation_alias=_platform("max_upload_bytes")
    )

    run_background: bool = True  # relay and consumers; off for a web-only replica

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> ServiceSettings:
        if not self.api_keys:
            if not self.dev_mode:
                raise ValueError(
                    "CRM_API_KEYS is empty: set it (JSON object of key -> roles, user) "
                    "or set CRM_DEV_MODE=true to accept the well-known dev key"
                )
            self.api_keys = {DEV_API_KEY: ApiKeyGrant(roles=["admin"], user="dev")}
        elif not self.dev_mode:
            weak = [
                key
                for key in self.api_keys
                if key == DEV_API_KEY or len(key) < 16 or key.startswith(EXAMPLE_SECRET)
            ]
            if weak:
                raise ValueError(
                    "CRM_API_KEYS holds a default, example or short key (under 16 "
                    "characters); use generated keys outside dev mode"
                )
        if not self.database_url:
            self.database_url = (
                f"sqlite+aiosqlite:///{(self.data_dir / f'{self.service_name}.db').as_posix()}"
            )
        if not self.consumer_group:
            self.consumer_group = self.service_name
        return self

    @model_validator(mode="after")
    def _kafka_client(self) -> ServiceSettings:
        """Timeouts left unset take the broker kind's; a security protocol gets what it
        needs or a clear refusal."""
        if self.kafka_broker is None:
            hosts = {server.rsplit(":", 1)[0] for server in self.kafka_bootstrap.split(",")}
            local = hosts <= {"127.0.0.1", "localhost", "::1", "[::1]"}
            self.kafka_broker = "embedded" if local else "kafka"
        defaults = KAFKA_DEFAULTS[self.kafka_broker]
        for name, value in defaults.items():
            if not getattr(self, name):
                setattr(self, name, value)
        if self.kafka_security_protocol.startswith("SASL"):
            missing = [
                f"CRM_{name.upper()}"
                for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"CRM_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                    + ", ".join(missing)
                )
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"CRM_{name.upper()}: no file at {path}")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("CRM_KAFKA_SSL_CERTFILE and CRM_KAFKA_SSL_KEYFILE go together")
        return self

    def topic(self, event_type: str) -> str:
        """The Kafka topic name for an event type."""
        return f"{self.kafka_topic_prefix}{event_type}"
