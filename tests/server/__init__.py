"""Tests of the gRPC ADS server (pilot.server)."""
