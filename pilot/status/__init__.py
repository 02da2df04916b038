"""What pilot reports on each config object's status (written back with ``--kube``)."""
