"""A mesh of real processes on 127.0.0.1: what ``pilot demo``, the compose runner, the end-to-end
tests and the benchmark start and stop.

``Backend`` (a versioned HTTP backend), ``PilotProcess`` (``pilot serve`` as a subprocess),
``EnvoyProcess`` (a real Envoy with a pilot bootstrap), ``loopback`` (free ports, plain HTTP on
127.0.0.1), ``polling`` (waiting with deadlines), ``process_group`` (ending what was started) and
``config_files`` (writing the folder pilot watches). In the product only ``pilot.demo`` imports it
(tests/test_layering.py).
"""
