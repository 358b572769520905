"""What the three functions run: the api, ingest and its outcomes, status, authentication."""
