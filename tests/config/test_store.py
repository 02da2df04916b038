"""ConfigStore: last-good semantics per origin, change events and revisions."""

from __future__ import annotations

import pytest

from pilot._gen import networking_pb2 as nw
from pilot.config.objects import ConfigEvent, ConfigKey, ConfigObject, FieldError, ParseResult
from pilot.config.parse import parse_text
from pilot.config.store import ConfigStore

A = ConfigKey("VirtualService", "default", "a")
B = ConfigKey("VirtualService", "default", "b")


def vs(key: ConfigKey, host: str = "h", origin: str = "x.yaml") -> ConfigObject:
    return ConfigObject(key, "networking.istio.io/v1", nw.VirtualService(hosts=[host]), origin)


def result(
    origin: str,
    *objects: ConfigObject,
    rejected: tuple[ConfigKey, ...] = (),
    fatal: bool = False,
    errors: tuple[FieldError, ...] = (),
) -> ParseResult:
    return ParseResult(origin, tuple(objects), errors, frozenset(rejected), fatal)


@pytest.fixture
def store() -> ConfigStore:
    return ConfigStore()


@pytest.fixture
def events(store: ConfigStore) -> list[ConfigEvent]:
    seen: list[ConfigEvent] = []
    store.subscribe(seen.append)
    return seen


def test_apply_adds_objects_and_bumps_the_revision(store: ConfigStore, events: list[ConfigEvent]) -> None:
    event = store.apply(result("x.yaml", vs(A), vs(B)))
    assert event == ConfigEvent(1, frozenset({A, B}))
    assert events == [event]
    snapshot = store.snapshot()
    assert snapshot.revision == store.revision == 1
    assert set(snapshot.objects) == {A, B}
    assert snapshot.objects[A].revision == 1 and snapshot.objects[A].origin == "x.yaml"


def test_unchanged_apply_emits_no_event(store: ConfigStore, events: list[ConfigEvent]) -> None:
    store.apply(result("x.yaml", vs(A)))
    before = store.snapshot()
    assert store.apply(result("x.yaml", vs(A))) is None
    assert len(events) == 1 and store.revision == 1
    assert store.snapshot() is before


def test_a_change_bumps_the_revision_of_that_object_only(
    store: ConfigStore, events: list[ConfigEvent]
) -> None:
    store.apply(result("x.yaml", vs(A), vs(B)))
    event = store.apply(result("x.yaml", vs(A, host="new"), vs(B)))
    assert event == ConfigEvent(2, frozenset({A}))
    objects = store.snapshot().objects
    assert (objects[A].revision, objects[B].revision) == (2, 1)
    assert list(objects[A].spec.hosts) == ["new"]  # type: ignore[attr-defined]


def test_fatal_result_keeps_everything(store: ConfigStore, events: list[ConfigEvent]) -> None:
    store.apply(result("x.yaml", vs(A), vs(B)))
    error = FieldError("x.yaml", "invalid YAML", line=3)
    assert store.apply(result("x.yaml", fatal=True, errors=(error,))) is None
    assert set(store.snapshot().objects) == {A, B} and store.revision == 1 and len(events) == 1
    assert store.errors() == [error]


def test_rejected_object_keeps_its_last_good_version(store: ConfigStore, events: list[ConfigEvent]) -> None:
    store.apply(result("x.yaml", vs(A), vs(B)))
    error = FieldError("x.yaml", "weight -5 < 0", A, "spec.http[0].route[0].weight", 12)
    event = store.apply(result("x.yaml", vs(B, host="new"), rejected=(A,), errors=(error,)))
    assert event == ConfigEvent(2, frozenset({B}))  # A did not change: its last good version stays
    objects = store.snapshot().objects
    assert list(objects[A].spec.hosts) == ["h"] and objects[A].revision == 1  # type: ignore[attr-defined]
    assert store.errors() == [error]


def test_rejected_object_never_seen_is_not_served(store: ConfigStore) -> None:
    assert store.apply(result("x.yaml", rejected=(A,))) is None
    assert store.get(A) is None


def test_an_object_gone_from_its_origin_is_deleted(store: ConfigStore, events: list[ConfigEvent]) -> None:
    store.apply(result("x.yaml", vs(A), vs(B)))
    event = store.apply(result("x.yaml", vs(B)))
    assert event == ConfigEvent(2, frozenset({A}))
    assert store.get(A) is None and store.get(B) is not None


def test_remove_origin_deletes_its_objects_and_errors(store: ConfigStore, events: list[ConfigEvent]) -> None:
    store.apply(result("x.yaml", vs(A), errors=(FieldError("x.yaml", "warning", severity="warning"),)))
    store.apply(result("y.yaml", vs(B, origin="y.yaml")))
    event = store.remove_origin("x.yaml")
    assert event == ConfigEvent(3, frozenset({A}))
    assert set(store.snapshot().objects) == {B}
    assert store.errors() == [] and store.origins() == ["y.yaml"]
    assert store.remove_origin("x.yaml") is None


def test_duplicate_key_from_another_origin_is_rejected(store: ConfigStore, events: list[ConfigEvent]) -> None:
    store.apply(result("x.yaml", vs(A)))
    assert store.apply(result("y.yaml", vs(A, host="other", origin="y.yaml"))) is None
    obj = store.get(A)
    assert obj is not None and obj.origin == "x.yaml" and list(obj.spec.hosts) == ["h"]  # type: ignore[attr-defined]
    (error,) = store.errors()
    assert error.origin == "y.yaml" and error.key == A and "already loaded from x.yaml" in error.message
    # Once the owner lets go, the other origin can have it.
    store.remove_origin("x.yaml")
    store.apply(result("y.yaml", vs(A, host="other", origin="y.yaml")))
    obj = store.get(A)
    assert obj is not None and obj.origin == "y.yaml"


def test_revisions_only_grow_and_snapshots_are_immutable(store: ConfigStore) -> None:
    revisions = []
    for host in ("a", "b", "c"):
        store.apply(result("x.yaml", vs(A, host=host)))
        revisions.append(store.snapshot().revision)
    store.remove_origin("x.yaml")
    revisions.append(store.snapshot().revision)
    assert revisions == [1, 2, 3, 4]
    with pytest.raises(TypeError):
        store.snapshot().objects[A] = vs(A)  # type: ignore[index]


def test_subscribers_see_every_change_in_order(store: ConfigStore) -> None:
    first: list[int] = []
    second: list[int] = []
    store.subscribe(lambda e: first.append(e.revision))
    store.subscribe(lambda e: second.append(e.revision))
    store.apply(result("x.yaml", vs(A)))
    store.apply(result("x.yaml", vs(A)))
    store.apply(result("y.yaml", vs(B, origin="y.yaml")))
    assert first == second == [1, 2]


def test_errors_are_listed_by_origin(store: ConfigStore) -> None:
    store.apply(result("b.yaml", errors=(FieldError("b.yaml", "two"),)))
    store.apply(result("a.yaml", errors=(FieldError("a.yaml", "one"),)))
    assert [e.message for e in store.errors()] == ["one", "two"]


# --- with the parser: what an operator editing a file sees -----------------------------------------------

GOOD = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""
VS_KEY = ConfigKey("VirtualService", "default", "reviews")
DR_KEY = ConfigKey("DestinationRule", "default", "reviews")


def test_editing_a_file_keeps_the_last_good_config(store: ConfigStore, events: list[ConfigEvent]) -> None:
    store.apply(parse_text(GOOD, "reviews.yaml"))
    good = store.get(VS_KEY)
    assert good is not None and store.get(DR_KEY) is not None

    # A bad weight: the VirtualService keeps its last good version; the DestinationRule edit goes through.
    bad = GOOD.replace("weight: 90", "weight: -90").replace("version: v2", "version: v2b")
    event = store.apply(parse_text(bad, "reviews.yaml"))
    assert event is not None and event.changed == {DR_KEY}
    assert store.get(VS_KEY) is good
    (error,) = store.errors()
    assert str(error) == (
        "reviews.yaml:10: VirtualService default/reviews: spec.http[0].route[0].weight: weight -90 < 0"
    )

    # Half-saved YAML: nothing changes.
    assert (
        store.apply(parse_text(GOOD.replace("hosts: [reviews]", "hosts: [reviews"), "reviews.yaml")) is None
    )
    assert store.get(VS_KEY) is good and store.get(DR_KEY) is not None
    assert store.errors()[0].message.startswith("invalid YAML")

    # Fixed: both current again, errors cleared.
    event = store.apply(parse_text(GOOD, "reviews.yaml"))
    assert event is not None and event.changed == {DR_KEY}
    assert store.errors() == []

    # File deleted.
    event = store.remove_origin("reviews.yaml")
    assert event is not None and event.changed == {VS_KEY, DR_KEY}
    assert store.snapshot().objects == {}


# --- an object leaves only by an explicit act -----------------------------------------------------------

SERVED = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [a]
  http: [{route: [{destination: {host: a}}]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se}
spec:
  hosts: [se.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
"""


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(SERVED.replace("kind: VirtualService", "kind: VirtualServce"), id="kind typo"),
        pytest.param(SERVED.replace("kind: ServiceEntry", "kind: -1"), id="kind not a string"),
        pytest.param(SERVED.replace("metadata: {name: a}", "metadata: {}"), id="name missing"),
        pytest.param(SERVED.replace("metadata: {name: a}", "metadata: {name: [a]}"), id="name not a string"),
        pytest.param(SERVED.replace("metadata: {name: a}", "metadata: {name: A_}"), id="name invalid"),
        pytest.param(SERVED.replace("metadata: {name: se}", "metadata: 7"), id="metadata not a mapping"),
        pytest.param(SERVED.split("---")[0] + "---\n- x\n- y\n", id="document not a mapping"),
        pytest.param(SERVED.replace("metadata: {name: a}", "metadata: {name: a"), id="YAML syntax error"),
        pytest.param("", id="emptied"),
        pytest.param("# all commented out\n---\n", id="only comments"),
        pytest.param(
            SERVED.split("---")[0] + "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
            "metadata: {name: se}\nspec:\n  hosts: [se.example.com]\n  ports: [{num",
            id="cut off",
        ),
    ],
)
def test_a_bad_edit_keeps_every_served_object(store: ConfigStore, broken: str) -> None:
    store.apply(parse_text(SERVED, "f.yaml"))
    before = dict(store.snapshot().objects)
    assert len(before) == 2
    result = parse_text(broken, "f.yaml")
    assert result.partial or result.fatal or any(error.severity == "error" for error in result.errors)
    store.apply(result)
    assert set(store.snapshot().objects) == set(before)
    assert any(error.origin == "f.yaml" for error in store.errors())  # the reason is on the file


def test_a_file_read_cleanly_without_an_object_removes_it(store: ConfigStore) -> None:
    store.apply(parse_text(SERVED, "f.yaml"))
    only_vs = SERVED.split("---")[0]
    result = parse_text(only_vs, "f.yaml")
    assert not result.partial
    event = store.apply(result)
    assert event is not None and event.changed == {ConfigKey("ServiceEntry", "default", "se")}
    # ... and a kind pilot does not serve (skipped with a warning) is no reason to keep one either
    event = store.apply(parse_text(only_vs.replace("kind: VirtualService", "kind: EnvoyFilter"), "f.yaml"))
    assert event is not None and event.changed == {A} and not store.snapshot().objects


# --- duplicates: the origin that sorts first wins, whatever the order of loading -------------------------


@pytest.mark.parametrize("order", [("a.yaml", "b.yaml"), ("b.yaml", "a.yaml")])
def test_the_duplicate_whose_origin_sorts_first_wins(order: tuple[str, str]) -> None:
    store = ConfigStore()
    for origin in order:
        store.apply(result(origin, vs(A, host=origin, origin=origin)))
    obj = store.get(A)
    assert obj is not None and obj.origin == "a.yaml" and list(obj.spec.hosts) == ["a.yaml"]  # type: ignore[attr-defined]
    (error,) = store.errors()
    assert error.origin == "b.yaml" and error.key == A and "already loaded from a.yaml" in error.message


def test_the_other_copy_is_served_when_the_winner_lets_go(store: ConfigStore) -> None:
    store.apply(result("b.yaml", vs(A, host="b", origin="b.yaml")))
    event = store.apply(result("a.yaml", vs(A, host="a", origin="a.yaml")))
    assert event is not None and event.changed == {A}
    assert store.get(A).origin == "a.yaml"  # type: ignore[union-attr]
    event = store.apply(result("a.yaml"))  # a.yaml read cleanly without it
    assert event is not None and event.changed == {A}
    obj = store.get(A)
    assert obj is not None and obj.origin == "b.yaml" and list(obj.spec.hosts) == ["b"]  # type: ignore[attr-defined]
    assert store.errors() == []
    store.remove_origin("b.yaml")
    assert store.get(A) is None
