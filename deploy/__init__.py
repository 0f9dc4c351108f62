"""Deployment helpers run by hand (make lock, make manifests), not shipped in the image."""
