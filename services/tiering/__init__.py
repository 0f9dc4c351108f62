"""Tiering: ranks customers under versioned policies and explains every change."""
