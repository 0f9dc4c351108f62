"""Outreach routes (its resources come with its own issue; health and metrics are shared)."""

from fastapi import APIRouter

router = APIRouter(tags=["outreach"])
