"""Protocol vocabulary shared by every layer: type URLs, Istio resource names, and what a Listener
makes Envoy fetch over RDS (``listeners``).

Imports nothing from pilot.
"""
