"""Complaints settings: `CRM_COMPLAINTS_*` for its own fields, `CRM_*` for the platform's."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ComplaintsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_COMPLAINTS_")

    service_name: str = "complaints"
    port: int = 8004
    # The SLA timer sleeps until the next deadline, but looks again at least this often
    # (seconds) to see deadlines set by another replica.
    timer_max_sleep_s: float = Field(default=1.0, gt=0, le=60)
    timer_batch_size: int = Field(default=200, ge=1, le=10_000)
