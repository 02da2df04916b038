"""proxy-status's cells and per-resource diff on /debug/syncz and /debug/proxyz shapes."""

from __future__ import annotations

from pilot.inspect.proxy_status import GRPC_DEFAULT_MAX_RECV_BYTES, resource_diff, response_bytes, type_status


def test_a_type_is_nacked_only_while_its_latest_response_is_the_rejected_one():
    nack = {"nonce": "4", "message": "bad"}
    assert type_status({"status": "STALE", "nonce_sent": "4", "last_nack": nack}) == "NACKED"
    assert type_status({"status": "SYNCED", "nonce_sent": "5", "last_nack": nack}) == "SYNCED"
    assert type_status({"status": "NOT SENT", "nonce_sent": "", "last_nack": None}) == "NOT SENT"


def test_a_type_is_nacked_while_an_object_it_rejected_is_held_back():
    held = {"kind": "VirtualService", "namespace": "default", "name": "a", "origin": "a.yaml", "line": 3}
    assert type_status({"status": "SYNCED", "nonce_sent": "5", "rejected_objects": [held]}) == "NACKED"
    assert type_status({"status": "SYNCED", "nonce_sent": "5", "rejected_objects": []}) == "SYNCED"


def test_resources_are_compared_version_by_version():
    proxyz = {
        "types": {
            "cds": {
                "resources": {
                    "same": {"pilot": "a", "proxy": "a", "bytes": 10},
                    "new": {"pilot": "b", "proxy": None, "bytes": 20},
                    "gone": {"pilot": None, "proxy": "c", "bytes": None},
                    "moved": {"pilot": "d", "proxy": "e", "bytes": GRPC_DEFAULT_MAX_RECV_BYTES},
                }
            }
        }
    }
    diff = resource_diff(proxyz)
    assert [line.split()[:2] for line in diff["cds"]] == [["+", "new"], ["-", "gone"], ["~", "moved"]]
    assert diff["lds"] == []
    assert response_bytes(proxyz, "cds") == GRPC_DEFAULT_MAX_RECV_BYTES + 30 > GRPC_DEFAULT_MAX_RECV_BYTES
