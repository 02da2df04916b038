"""The gRPC ADS server (state of the world and delta). Reads only from cache/."""
