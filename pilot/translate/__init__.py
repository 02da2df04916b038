"""Pure translation: (ProxyView, PushContext) → Envoy messages. No asyncio, no grpc, no cache."""
