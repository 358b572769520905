"""Local emulators for the Google services that have none, Cloud Tasks and Cloud Scheduler, on one shared kit."""
