"""Profile: the customer's DNA (profile, contacts, consent, purchases, payments, interactions)."""
