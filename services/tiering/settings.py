"""Tiering settings: `CRM_TIERING_*` for its own fields, `CRM_*` for the platform's."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class TieringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_TIERING_")

    service_name: str = "tiering"
    port: int = 8002
    # Re-rank everyone under the active policy this often (seconds); 0 turns it off.
    rerank_interval_s: float = Field(default=3600, ge=0)
    # Below this many ranked customers, events re-rank everyone (milliseconds at that size,
    # and exact) instead of placing the touched customers against the latest band edges.
    full_ranking_below: int = Field(default=1000, ge=0)
    # Fit the churn model again this often (seconds), before a scheduled re-rank; 0: never.
    churn_fit_interval_s: float = Field(default=86400, ge=0)
