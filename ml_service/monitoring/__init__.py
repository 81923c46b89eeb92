"""Monitoring a deployed model: what it sees (the collector) and how that compares with
its training data (the monitor)."""
