"""The warning before a response past gRPC's default 4 MiB receive limit is sent."""

from __future__ import annotations

import logging

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from pilot import metrics
from pilot.cache.snapshot import Resource, TypeResources
from pilot.server import size_guard
from pilot.xds import types


def typed(sizes: dict[str, int]) -> TypeResources:
    resources = {
        name: Resource.from_message(
            types.CLUSTER, name, cluster_pb2.Cluster(name=name, alt_stat_name="x" * size)
        )
        for name, size in sizes.items()
    }
    return TypeResources.build(types.CLUSTER, resources.values())


def oversized() -> float:
    return metrics.REGISTRY.get_sample_value("pilot_xds_oversized_responses_total", {"type": "cds"}) or 0.0


def test_a_response_within_the_limit_passes_quietly(caplog: pytest.LogCaptureFixture):
    before = oversized()
    assert not size_guard.warn_if_oversized(
        "node", types.CLUSTER, size_guard.GRPC_DEFAULT_MAX_RECV_BYTES, None, None
    )
    assert oversized() == before and not caplog.records


def test_a_response_past_the_limit_is_warned_about_with_its_largest_resources(
    caplog: pytest.LogCaptureFixture,
):
    resources = typed({"small": 10, "big": 3000, "middle": 500})
    before = oversized()
    with caplog.at_level(logging.WARNING, logger="pilot.server.size_guard"):
        assert size_guard.warn_if_oversized("node-1", types.CLUSTER, 5 * 1024 * 1024, resources, None)
    assert oversized() == before + 1
    [record] = caplog.records
    text = record.getMessage()
    assert "node-1" in text and "5242880 bytes" in text
    assert text.index("big") < text.index("middle") < text.index("small")
    assert size_guard.largest(resources, frozenset({"small"})) == [
        ("small", len(resources.resources["small"].body))
    ]
