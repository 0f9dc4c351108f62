"""The four services: profile, tiering, outreach, complaints. None imports another."""
