"""Profile settings: `CRM_PROFILE_*` for its own fields, `CRM_*` for the platform's."""

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ProfileSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_PROFILE_")

    service_name: str = "profile"
    port: int = 8001
