"""Executors that run ingest tasks outside Cloud Functions (the Celery worker)."""
