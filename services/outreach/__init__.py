"""Outreach: service plans per tier, birthdays, holidays, repurchase reminders, club events."""
