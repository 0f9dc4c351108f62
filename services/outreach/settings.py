"""Outreach settings: `CRM_OUTREACH_*` for its own fields, `CRM_*` for the platform's."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class OutreachSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_OUTREACH_")

    service_name: str = "outreach"
    port: int = 8003
    # The SMS/email gateway: a signed JSON POST per delivery (services/outreach/channels.py).
    provider_url: str | None = None
    provider_secret: str = ""
    provider_timeout_s: float = Field(default=5.0, gt=0, le=120)
    # Messages per request; over 1 for a gateway with a batch endpoint (docs/contract.md).
    provider_batch_size: int = Field(default=1, ge=1, le=1000)
    delivery_max_attempts: int = Field(default=5, ge=1, le=50)
    delivery_retry_backoff_s: float = Field(default=2.0, gt=0)
    delivery_lease_s: float = Field(default=30.0, gt=0)
    delivery_concurrency: int = Field(default=64, ge=1, le=1000)
    dispatch_batch_size: int = Field(default=200, ge=1, le=10_000)
    # The dispatcher sleeps until the next due task, but looks again at least this often.
    dispatch_max_sleep_s: float = Field(default=1.0, gt=0, le=60)
    # Everyone's contacts are planned again this often (seconds); 0 turns it off.
    planning_interval_s: float = Field(default=86_400, ge=0)
    # Contacts due within this many days are tasks (worklists, feeds, dispatch); later
    # ones are planned and shown (`/v1/customers/{id}/upcoming`), and become tasks as the
    # window reaches them at the next planning.
    planning_window_days: int = Field(default=31, ge=1, le=366)
    # Processes that plan everyone at once on PostgreSQL, each a range of customers (one
    # core each: match the replica's CPU limit); SQLite plans in the service's process.
    planning_processes: int = Field(default=2, ge=1, le=64)
    # Whose public holidays the calendar holds (ISO code, from the `holidays` package).
    holiday_country: str = "CN"
