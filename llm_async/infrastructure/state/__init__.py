"""Shared state backends, each next to the port it implements (Redis breaker state and
rate-limit buckets; ledgers). Import the module you need; nothing is imported here."""
