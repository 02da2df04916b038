"""The fan-out benchmark (not part of the test suite): ``.venv/bin/python -m bench --help``."""
