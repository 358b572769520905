"""Thin Cloud Functions entry points; everything they call lives in ``common``."""
