"""Complaints settings: `CRM_COMPLAINTS_*` for its own fields, `CRM_*` for the platform's."""

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ComplaintsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_COMPLAINTS_")

    service_name: str = "complaints"
    port: int = 8004
