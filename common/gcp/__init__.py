"""Adapters to Google services: clients, resource names, Firestore, Cloud Tasks, Pub/Sub, secrets, objects."""
