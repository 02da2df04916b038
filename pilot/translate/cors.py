"""A VirtualService ``corsPolicy`` as the per-route config of Envoy's CORS filter.

Istio's ``TranslateCORSPolicy`` (pilot/pkg/networking/core/route/route.go): the HTTP connection
manager always carries ``envoy.filters.http.cors`` (listeners.py), and a route with a policy gets a
``CorsPolicy`` in ``typed_per_filter_config``. Origins: ``allowOrigins`` string matches, else the
deprecated ``allowOrigin`` strings as exact matches. Lists are joined with commas, ``maxAge`` is whole
seconds, and preflights that match no origin are forwarded unless ``unmatchedPreflights: IGNORE``.
"""

from __future__ import annotations

from typing import TypeAlias

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from pilot._gen import networking_pb2 as nw
from pilot.translate.matches import string_matcher

CORS_FILTER = "envoy.filters.http.cors"
CorsPolicy: TypeAlias = cors_pb2.CorsPolicy


def cors_policy(spec: nw.CorsPolicy) -> CorsPolicy:
    out = CorsPolicy(
        forward_not_matching_preflights=wrappers_pb2.BoolValue(
            value=spec.unmatched_preflights != nw.CorsPolicy.IGNORE
        ),
        filter_enabled=base_pb2.RuntimeFractionalPercent(
            default_value=percent_pb2.FractionalPercent(
                numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED
            )
        ),
        allow_methods=",".join(spec.allow_methods),
        allow_headers=",".join(spec.allow_headers),
        expose_headers=",".join(spec.expose_headers),
    )
    if spec.allow_origins:
        matchers = (string_matcher(origin) for origin in spec.allow_origins)
        out.allow_origin_string_match.extend(m for m in matchers if m is not None)
    else:
        out.allow_origin_string_match.extend(
            string_pb2.StringMatcher(exact=origin) for origin in spec.allow_origin
        )
    if spec.HasField("allow_credentials"):
        out.allow_credentials.CopyFrom(spec.allow_credentials)
    if spec.HasField("max_age"):
        out.max_age = str(spec.max_age.seconds)
    return out


__all__ = ["CORS_FILTER", "CorsPolicy", "cors_policy"]
