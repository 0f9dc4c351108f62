"""Complaints: judge, decide, communicate, follow up, confirm; first-contact ownership, SLAs."""
