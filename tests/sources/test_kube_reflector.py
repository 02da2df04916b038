"""Reflector details that a live server makes hard to time, driven by a scripted ApiClient stand-in.

The stand-in answers ``param_serialize``/``call_api`` as kubernetes.client.ApiClient does (a RESTResponse-like
object whose ``.response`` is the raw urllib3 response), from a script of responses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from pilot.sources.kube_api import ApiError, Gone, Resource, WatchOptions, api_error
from pilot.sources.kube_reflector import (
    ADDED,
    DELETED,
    MODIFIED,
    SYNCED,
    Event,
    Reflector,
)

VS = Resource("networking.istio.io", "v1", "virtualservices", "VirtualService")
SERVICES = Resource("", "v1", "services", "Service")


class FakeResponse:
    def __init__(self, status: int, chunks: list[bytes]) -> None:
        self.status = status
        self._chunks = chunks

    def stream(self, amt: Any = None, decode_content: Any = None) -> Iterator[bytes]:
        yield from self._chunks

    def read(self, amt: int | None = None) -> bytes:
        return b"".join(self._chunks)

    @property
    def data(self) -> bytes:
        return self.read()

    def release_conn(self) -> None:
        pass


class ScriptedClient:
    """Answers requests in order from ``script``; records (path, query) of each."""

    def __init__(self, script: list[FakeResponse]) -> None:
        self.script = script
        self.requests: list[tuple[str, dict[str, str]]] = []

    def param_serialize(self, method: str, path: str, query_params: Any = None, **_: Any) -> tuple[Any, ...]:
        return method, (path, dict(query_params or [])), {}, None, None

    def call_api(self, method: str, url: Any, **_: Any) -> Any:
        self.requests.append(url)
        response = self.script.pop(0)

        class Rest:
            pass

        rest = Rest()
        rest.response = response  # type: ignore[attr-defined]
        return rest


def obj(name: str, rv: int, kind: str = "VirtualService") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default", "resourceVersion": str(rv)},
    }


def lst(rv: int, *items: dict[str, Any]) -> FakeResponse:
    return FakeResponse(200, [orjson.dumps({"metadata": {"resourceVersion": str(rv)}, "items": list(items)})])


def line(kind: str, o: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": kind, "object": o}) + b"\n"


def reflector(client: ScriptedClient, resource: Resource = VS) -> tuple[Reflector, list[Event]]:
    delivered: list[Event] = []
    r = Reflector(client, resource, None, lambda _, events: delivered.extend(events), WatchOptions())
    return r, delivered


def test_events_before_an_error_in_the_same_read_are_delivered():
    client = ScriptedClient(
        [
            lst(10, obj("a", 10)),
            FakeResponse(
                200,
                [
                    line(MODIFIED, obj("a", 11))
                    + line(ADDED, obj("b", 12))
                    + line("ERROR", {"kind": "Status", "code": 410, "message": "too old"})
                ],
            ),
        ]
    )
    r, delivered = reflector(client)
    r._list()
    with pytest.raises(Gone):
        r._watch()
    assert [(e.type, e.name) for e in delivered] == [
        (ADDED, "a"),
        (SYNCED, ""),
        (MODIFIED, "a"),
        (ADDED, "b"),
    ]


def test_replays_and_unknown_deletes_are_dropped_and_bookmarks_move_the_version():
    client = ScriptedClient(
        [
            lst(10, obj("a", 10)),
            FakeResponse(
                200,
                [
                    line(ADDED, obj("a", 10)),  # the version the list had: a replay
                    line(DELETED, obj("ghost", 11)),  # never seen
                    line("BOOKMARK", {"kind": "VirtualService", "metadata": {"resourceVersion": "15"}}),
                ],
            ),
        ]
    )
    r, delivered = reflector(client)
    r._list()
    delivered.clear()
    assert r._watch() is True
    assert delivered == []
    assert r.status.resource_version == "15"
    # The next watch resumes from the bookmark.
    client.script.append(FakeResponse(200, []))
    r._watch()
    assert client.requests[-1][1]["resourceVersion"] == "15"
    assert client.requests[-1][1]["allowWatchBookmarks"] == "true"


def test_a_relist_reports_only_real_changes_including_deletes():
    client = ScriptedClient(
        [
            lst(10, obj("a", 10), obj("b", 10), obj("c", 10)),
            lst(20, obj("a", 10), obj("b", 18), obj("d", 19)),
        ]
    )
    r, delivered = reflector(client)
    r._list()
    delivered.clear()
    r._list()
    assert [(e.type, e.name, e.obj is None) for e in delivered] == [
        (MODIFIED, "b", False),
        (ADDED, "d", False),
        (DELETED, "c", True),
        (SYNCED, "", True),
    ]


def test_typed_list_items_get_kind_and_api_version_and_lose_managed_fields():
    item = {"metadata": {"name": "s", "namespace": "default", "resourceVersion": "3", "managedFields": [{}]}}
    client = ScriptedClient([lst(3, item)])
    r, delivered = reflector(client, SERVICES)
    r._list()
    listed = delivered[0].obj
    assert listed is not None
    assert (
        listed["kind"] == "Service"
        and listed["apiVersion"] == "v1"
        and "managedFields" not in listed["metadata"]
    )


def test_an_http_410_is_gone_and_other_statuses_are_errors():
    status = {"kind": "Status", "code": 410, "reason": "Expired", "message": "continue too old"}
    assert isinstance(api_error(410, orjson.dumps(status)), Gone)
    error = api_error(500, b"<html>oops</html>")
    assert type(error) is ApiError and error.code == 500 and "oops" in str(error)


def test_backoff_is_capped_and_jittered():
    options = WatchOptions(backoff_initial=1.0, backoff_max=8.0)
    assert 0.5 <= options.backoff(1) <= 1.0
    assert 2.0 <= options.backoff(3) <= 4.0
    assert all(4.0 <= options.backoff(n) <= 8.0 for n in (4, 10, 1000))


def test_stop_unblocks_a_watch_waiting_for_data():
    """stop() shuts the response down from another thread (urllib3's HTTPResponse.shutdown)."""
    released = threading.Event()

    class Blocking(FakeResponse):
        def stream(self, amt: Any = None, decode_content: Any = None) -> Iterator[bytes]:
            released.wait(10)
            raise OSError("shut down")

        def shutdown(self) -> None:
            released.set()

        def close(self) -> None:
            pass

    client = ScriptedClient([lst(1), Blocking(200, [])])
    r, _ = reflector(client)
    r.start()
    try:
        deadline = time.monotonic() + 10
        while len(client.requests) < 2 and r.is_alive():
            assert time.monotonic() < deadline, "the watch never started"
            released.wait(0.01)
        r.stop()
        assert r.join(5), "the thread must end once its response is shut down"
    finally:
        released.set()
