"""Finishing a computed status against the object's: times, generations, other controllers' parents."""

from __future__ import annotations

from pilot.sources.kube_status_fields import finish

GATEWAY_API = "gateway.networking.k8s.io"
ISTIO = "networking.istio.io"
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"


def accepted(status: str = "True", **more: object) -> dict[str, object]:
    return {"type": "Accepted", "status": status, "reason": "Accepted", "message": "", **more}


def test_transition_time_is_kept_while_the_status_is_the_same_and_generation_follows_the_object():
    current = {"conditions": [accepted(observedGeneration=1, lastTransitionTime=T0)]}
    same = finish({"conditions": [accepted()]}, current, 1, GATEWAY_API, T1)
    assert same == current  # nothing to write
    newer = finish({"conditions": [accepted()]}, current, 2, GATEWAY_API, T1)
    assert newer["conditions"][0] == accepted(observedGeneration=2, lastTransitionTime=T0)
    flipped = finish({"conditions": [accepted("False")]}, current, 2, GATEWAY_API, T1)
    assert flipped["conditions"][0]["lastTransitionTime"] == T1


def test_other_controllers_parents_are_kept_and_ours_matched_by_parent_ref():
    ref = {"name": "edge", "namespace": "infra"}
    theirs = {"parentRef": ref, "controllerName": "example.com/other", "conditions": [accepted("False")]}
    ours_before = {
        "parentRef": ref,
        "controllerName": "istio.io/gateway-controller",
        "conditions": [accepted(observedGeneration=1, lastTransitionTime=T0)],
    }
    desired = {
        "parents": [
            {"parentRef": ref, "controllerName": "istio.io/gateway-controller", "conditions": [accepted()]}
        ]
    }
    out = finish(desired, {"parents": [theirs, ours_before]}, 1, GATEWAY_API, T1)
    assert out["parents"] == [theirs, ours_before]


def test_listeners_are_matched_by_name():
    current = {
        "listeners": [{"name": "http", "conditions": [accepted(observedGeneration=3, lastTransitionTime=T0)]}]
    }
    desired = {"listeners": [{"name": "http", "attachedRoutes": 1, "conditions": [accepted()]}]}
    out = finish(desired, current, 3, GATEWAY_API, T1)
    assert out["listeners"][0]["conditions"][0]["lastTransitionTime"] == T0
    assert out["listeners"][0]["attachedRoutes"] == 1


def test_an_istio_status_gets_observed_generation_and_probe_times():
    reconciled = {"type": "Reconciled", "status": "True", "message": "1/1 proxies up to date."}
    first = finish({"conditions": [reconciled]}, {}, 4, ISTIO, T0)
    assert first["observedGeneration"] == 4
    assert first["conditions"][0]["lastProbeTime"] == first["conditions"][0]["lastTransitionTime"] == T0
    assert finish({"conditions": [reconciled]}, first, 4, ISTIO, T1) == first
    later = finish(
        {"conditions": [{**reconciled, "message": "2/2 proxies up to date."}]}, first, 4, ISTIO, T1
    )
    assert (later["conditions"][0]["lastTransitionTime"], later["conditions"][0]["lastProbeTime"]) == (T0, T1)
