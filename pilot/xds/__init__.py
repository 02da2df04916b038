"""Protocol vocabulary shared by every layer: type URLs and Istio resource names.

Imports nothing from pilot.
"""
