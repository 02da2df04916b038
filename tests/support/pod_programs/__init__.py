"""Small programs run inside a test pod's network namespace (tests/support/netns.py).

Each is a standalone script, passed to ``python3 -I -c`` so that a process running as the proxy's uid
(1337) needs no read access to this checkout. They print one line per event and flush it, which is
how the tests observe them.
"""
