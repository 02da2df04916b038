"""Small programs run inside a pod's network namespace (pilot/localmesh/netns.py): an HTTP app, a
plain HTTP client, and a sidecar stand-in that reports where captured connections were going.

Each is a standalone script, passed to ``python3 -I -c`` so that a process running as the proxy's uid
(1337) needs no read access to this checkout. They print one line per event and flush it, which is
how the tests and ``pilot demo --mesh`` observe them.
"""
