"""The operator's commands, istioctl's counterparts: ``proxy-status``, ``proxy-config``, ``analyze``,
``diff``, and ``explain`` (which request goes where, and why).

``proxy-status``, ``proxy-config`` and ``explain`` read only pilot's HTTP API
(``pilot.inspect.pilot_api``), so they work against a remote pilot as well; ``analyze`` reads a
folder with pilot's own parser and validation; ``diff`` reads a running pilot's config and one
proxy's view over HTTP and translates them locally with and without the candidate files.
``pilot.inspect.commands`` registers their flags.
"""
