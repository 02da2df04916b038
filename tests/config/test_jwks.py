"""Fetched key sets as store objects: what the resolver needs, and the round trip through the
push context and a ``/debug/configz`` answer (which ``pilot diff`` reads back)."""

from __future__ import annotations

from google.protobuf import json_format

from pilot._gen import security_pb2
from pilot.config import kinds
from pilot.config.jwks import JwksKey, resolved_keys, resolved_object, wanted_keys
from pilot.inspect.diff import objects_from_configz
from tests import factories


def spec(*rules: dict[str, object]) -> security_pb2.RequestAuthentication:
    return json_format.ParseDict({"jwtRules": list(rules)}, security_pb2.RequestAuthentication())


def test_wanted_keys_skip_inline_and_take_the_shortest_timeout() -> None:
    wanted = wanted_keys(
        [
            spec({"issuer": "a", "jwksUri": "https://a/k", "timeout": "3s"}, {"issuer": "b", "jwks": "{}"}),
            spec({"issuer": "a", "jwksUri": "https://a/k", "timeout": "1s"}, {"issuer": "https://c/"}),
        ]
    )
    assert wanted == {JwksKey("https://a/k", "a"): 1.0, JwksKey("", "https://c/"): 5.0}
    assert JwksKey("", "https://c/").discovery_url() == "https://c/.well-known/openid-configuration"


def test_a_key_set_reaches_the_push_context_and_reads_back_from_configz() -> None:
    key = JwksKey("https://a/k", "a")
    obj = resolved_object(key, '{"keys":[]}')
    assert kinds.JWKS_INFO.holds(obj) and not kinds.resolve("v1", "Jwks").info
    assert factories.push_context(obj).jwks == {key: '{"keys":[]}'}
    item = {"kind": obj.kind, "namespace": "", "name": obj.name, "spec": json_format.MessageToDict(obj.spec)}
    (back,) = objects_from_configz({"objects": [item]})
    assert resolved_keys([back]) == {key: '{"keys":[]}'}
