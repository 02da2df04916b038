"""What the user wrote: typed, validated, versioned. Knows nothing of Envoy."""
