"""Shared infrastructure between the contract and the stages.

MQTT sessions and the one consume loop, the database connection layers, the telemetry store,
exact microsecond time. Depends on ``contract`` only; every stage may depend on it.
"""
