"""pilot: an Istio-compatible service-mesh control plane and Envoy xDS server."""

__version__ = "0.1.0"
__all__ = ["__version__"]
