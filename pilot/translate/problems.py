"""What translation could not take as written, per view: config key → reasons, carried on the view's
Snapshot (``Snapshot.problems``) so ``/debug/configz`` shows them on their objects, and counted in
``pilot_translation_failures_total{kind}``.

Each problem is one translation already handled safely (security fails closed): an
AuthorizationPolicy that passed validation and cannot be translated becomes, for the workloads it
selects, a DENY of everything named ``ns[NS]-policy[NAME]-untranslatable``
(pilot.translate.authz_policies). The listener generator built the view's RBAC filters at this
context (``authorization_filters`` is memoized per namespace and labels), so this reads what it
found (for a proxyless gRPC server: pilot.translate.grpc_authz's filters, memoized likewise);
``build_snapshot`` keeps the previous snapshot's problems when it keeps its listeners.
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import partial
from types import MappingProxyType

from pilot import metrics
from pilot.cache.snapshot import Problems
from pilot.config.objects import ConfigKey
from pilot.translate.authz_listeners import authorization_filters
from pilot.translate.authz_policies import untranslatable_name
from pilot.translate.context import PushContext
from pilot.translate.grpc_authz import server_authorization
from pilot.translate.proxy import ProxyView

NONE: Problems = MappingProxyType({})


def _counted(key: ConfigKey) -> bool:
    metrics.translation_failures.labels(key.kind).inc()
    return True


def translation_problems(view: ProxyView, context: PushContext) -> Problems:
    """The config objects (by ConfigKey) that apply to ``view`` and that translation could not take,
    with why."""
    if not context.authorization_policies:
        return NONE
    if view.proxyless_grpc:
        # A proxyless gRPC application's server listeners (pilot.translate.grpc_listeners, only for
        # the ports it serves) carry pilot.translate.grpc_authz's RBAC filters.
        untaken = server_authorization(view, context).untranslatable if view.targets else {}
    else:
        untaken = authorization_filters(view, context).untranslatable
    found: dict[Hashable, tuple[str, ...]] = {}
    for key, reason in untaken.items():
        context.derived(("translation-failure-counted", key), partial(_counted, key))
        found[key] = (
            f"cannot be translated ({reason}): the workloads it selects deny every request "
            f"(RBAC policy {untranslatable_name(key.namespace, key.name)})",
        )
    return MappingProxyType(found) if found else NONE


__all__ = ["NONE", "translation_problems"]
