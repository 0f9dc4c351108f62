"""Outreach settings: `CRM_OUTREACH_*` for its own fields, `CRM_*` for the platform's."""

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class OutreachSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_OUTREACH_")

    service_name: str = "outreach"
    port: int = 8003
