"""The service's HTTP routes: scoring, health (and metrics), admin."""
