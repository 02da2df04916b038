"""``pilot demo``: watch a traffic split follow edits to Istio YAML, through a real Envoy.

``runner`` drives the demo, ``scenario`` holds its config and phases, ``traffic`` counts where the
requests went; ``mesh`` is ``pilot demo --mesh``, the same service as a mesh of network namespaces
with iptables capture; ``compose`` runs the docker-compose topology on 127.0.0.1. The processes they start
come from ``pilot.localmesh``, the harness the end-to-end tests and the benchmark share.
"""

from __future__ import annotations

from pilot.demo.options import DemoOptions

__all__ = ["DemoOptions", "run"]


def run(options: DemoOptions) -> int:
    """Run the demo (pilot.demo.runner); 0 when it ran (or was interrupted), 1 if it could not start.

    Imported lazily: the CLI imports this package for every ``pilot demo``, and ``--help`` should
    not start aiohttp.
    """
    if options.mesh:
        from pilot.demo.mesh import MeshDemo

        return MeshDemo(options).run()
    from pilot.demo.runner import Demo

    return Demo(options).run()
