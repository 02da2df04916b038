"""Workload selectors are found once per VirtualService and DestinationRule entry, and a context
built from the previous one walks only the entries that changed."""

from __future__ import annotations

from typing import Any

from pilot.config.objects import ConfigObject, ParseResult
from pilot.config.store import ConfigStore
from pilot.translate.context import PushContext
from tests import factories as f


def routes(name: str, match: list[dict[str, Any]] | None = None, weight: int = 100) -> ConfigObject:
    http: dict[str, Any] = {"route": [{"destination": {"host": name}, "weight": weight}]}
    if match:
        http["match"] = match
    return f.virtual_service(name, hosts=[name], http=[http])


def test_an_edit_walks_only_the_changed_entry_and_finds_its_new_selector() -> None:
    store = ConfigStore()
    web = [{"sourceLabels": {"app": "web"}}]
    rule = f.destination_rule("b", host="b", workloadSelector={"matchLabels": {"track": "canary"}})
    store.apply(ParseResult("mesh.yaml", objects=(routes("a", web), routes("b"), rule)))
    first = PushContext.build(store.snapshot())
    assert set(first.selectors()) == {frozenset({("app", "web")}), frozenset({("track", "canary")})}

    store.apply(ParseResult("mesh.yaml", objects=(routes("a", web), routes("b", weight=50), rule)))
    second = PushContext.build(store.snapshot(), first)
    assert second.selectors() == first.selectors()
    unchanged = [e for e in (*second.virtual_services, *second.destination_rules) if e.key.name != "b"]
    unchanged += [e for e in second.destination_rules]
    for entry in unchanged:  # the same entry object, and the same selectors found for it before
        assert second._selector_parts[id(entry)] is first._selector_parts[id(entry)]

    job = [{"sourceLabels": {"app": "job"}}]
    store.apply(ParseResult("mesh.yaml", objects=(routes("a", web), routes("b", job), rule)))
    third = PushContext.build(store.snapshot(), second)
    assert frozenset({("app", "job")}) in third.selectors()
