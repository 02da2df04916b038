"""Envoy matchers for AuthorizationPolicy values, with Istio's wildcards.

Istio's pilot/pkg/security/authz/matcher (string.go, header.go, metadata.go) and the JWT metadata
matchers of model/util.go: a value is exact, ``x*`` a prefix, ``*x`` a suffix, ``*`` anything
non-empty (a regex ``.+``, or a header's presence); Envoy rejects empty prefixes and suffixes, which
is why ``*`` is tested first.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import TypeAlias

from envoy.config.core.v3 import address_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2
from google.protobuf import wrappers_pb2

from pilot.errors import TranslationError
from pilot.translate.jwt_authn import JWT_AUTHN_FILTER, JWT_PAYLOAD_METADATA_KEY

StringMatcher: TypeAlias = string_pb2.StringMatcher
ValueMatcher: TypeAlias = value_pb2.ValueMatcher
MetadataMatcher: TypeAlias = metadata_pb2.MetadataMatcher
PathSegment: TypeAlias = metadata_pb2.MetadataMatcher.PathSegment

# The verified JWT payload: pilot.translate.jwt_authn configures every jwt_authn provider with
# ``payload_in_metadata: payload``, so Envoy puts the payload in the dynamic metadata of the jwt_authn
# filter under ``payload`` (upstream Envoy has no istio_authn filter; Istio reads the same place since
# 1.21, istio/istio#47407). Request principals and claims match there.

SPIFFE_PREFIX = "spiffe://"
_ANY_NON_EMPTY = ".+"


def regex(pattern: str) -> StringMatcher:
    return StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=pattern))


def string_matcher(value: str, prefix: str = "", ignore_case: bool = False) -> StringMatcher:
    """Istio's ``StringMatcherWithPrefix``: ``prefix`` is prepended to what is compared (the SPIFFE
    scheme for principals); a leading ``*`` with a prefix needs a regex, since Envoy has no
    prefix-and-suffix matcher."""
    if value == "*":
        return regex(_ANY_NON_EMPTY)
    if value.startswith("*"):
        if not prefix:
            return StringMatcher(suffix=value[1:], ignore_case=ignore_case)
        return regex(re.escape(prefix) + ".*" + re.escape(value[1:]))
    if value.endswith("*"):
        return StringMatcher(prefix=prefix + value[:-1], ignore_case=ignore_case)
    return StringMatcher(exact=prefix + value, ignore_case=ignore_case)


def header_matcher(name: str, value: str, ignore_case: bool = False) -> rc.HeaderMatcher:
    """Istio's ``HeaderMatcher`` (``HostMatcher`` with ``ignore_case``): ``*`` means present."""
    if value == "*":
        return rc.HeaderMatcher(name=name, present_match=True)
    return rc.HeaderMatcher(name=name, string_match=string_matcher(value, ignore_case=ignore_case))


def path_matcher(value: str) -> path_pb2.PathMatcher:
    return path_pb2.PathMatcher(path=string_matcher(value))


def cidr_range(value: str) -> address_pb2.CidrRange:
    """Istio's ``AddrStrToCidrRange``: an address or a CIDR; a bare address is a /32 (or /128)."""
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as err:
        raise TranslationError(f"invalid IP address or CIDR {value!r}") from err
    address, _, _ = value.strip().partition("/")
    return address_pb2.CidrRange(
        address_prefix=address, prefix_len=wrappers_pb2.UInt32Value(value=network.prefixlen)
    )


def _path(keys: Sequence[str]) -> list[PathSegment]:
    return [PathSegment(key=key) for key in keys]


def jwt_claim_string(claim: str, matcher: StringMatcher) -> MetadataMatcher:
    """Istio's ``MetadataStringMatcherForJWTClaim``: ``payload.<claim>`` as a string."""
    return MetadataMatcher(
        filter=JWT_AUTHN_FILTER,
        path=_path((JWT_PAYLOAD_METADATA_KEY, claim)),
        value=ValueMatcher(string_match=matcher),
    )


def string_or(values: Sequence[str]) -> ValueMatcher:
    """Istio's ``StringOrMatcher``: any of ``values`` (with wildcards)."""
    return _or([ValueMatcher(string_match=string_matcher(v)) for v in values])


def jwt_claim_list(claims: Sequence[str], value: ValueMatcher) -> MetadataMatcher:
    """Istio's ``MetadataListValueMatcherForJWTClaims``: ``payload.<claims...>`` is a list holding a
    match, or is itself a match (a claim may be a string or a list of strings)."""
    either = value_pb2.OrMatcher(
        value_matchers=[ValueMatcher(list_match=value_pb2.ListMatcher(one_of=value)), value]
    )
    return MetadataMatcher(
        filter=JWT_AUTHN_FILTER,
        path=_path((JWT_PAYLOAD_METADATA_KEY, *claims)),
        value=ValueMatcher(or_match=either),
    )


def filter_metadata(filter_name: str, key: str, values: Sequence[str]) -> MetadataMatcher:
    """``experimental.envoy.filters.NAME[KEY]``: any of ``values``, each a string or ``[v]`` for a
    list holding ``v`` (Istio's envoyFilterGenerator ``extendedPermission``)."""
    matchers = []
    for value in values:
        if value.startswith("[") and value.endswith("]"):
            inner = ValueMatcher(string_match=string_matcher(value[1:-1]))
            matchers.append(ValueMatcher(list_match=value_pb2.ListMatcher(one_of=inner)))
        else:
            matchers.append(ValueMatcher(string_match=string_matcher(value)))
    return MetadataMatcher(filter=filter_name, path=_path((key,)), value=_or(matchers))


def _or(matchers: list[ValueMatcher]) -> ValueMatcher:
    """Istio's ``OrMatcher``: one matcher as itself."""
    if len(matchers) == 1:
        return matchers[0]
    return ValueMatcher(or_match=value_pb2.OrMatcher(value_matchers=matchers))


def bracketed(text: str) -> list[str]:
    """``[a][b]`` → ``["a", "b"]`` (Istio's ``extractNameInNestedBrackets``); a malformed key raises."""
    found = re.fullmatch(r"(\[[^\[\]]+\])+", text)
    if not found:
        raise TranslationError(f"expected [name] or nested [a][b] after the attribute, got {text!r}")
    return re.findall(r"\[([^\[\]]+)\]", text)
