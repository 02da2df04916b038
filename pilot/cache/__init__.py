"""Versioned per-view snapshots of Envoy resources. Knows nothing of the wire: no grpc here."""
