"""What an AuthorizationPolicy loses on proxyless gRPC servers, as warnings naming file, object and
field (``pilot validate --grpc``).

pilot.translate.grpc_authz enforces ALLOW and DENY policies on a gRPC server, but not CUSTOM (istiod
builds no ext_authz for gRPC), AUDIT (gRPC ignores the ``LOG`` action, gRFC A41) or dry-run
policies (``shadow_rules``, which gRPC does not read). A condition gRPC cannot evaluate
(pilot.translate.grpc_rbac_support) drops an ALLOW rule and is left out of a DENY rule.

Which conditions those are is not listed here: each field of a rule is built alone, by the builder
in its gRPC mode (``authz_model.rule_policy`` with ``grpc``, as an ALLOW so the refusal shows), and
a field it refuses is named. Like the VirtualService warnings (pilot.config.validation.grpc_clients),
these are asked for: an AuthorizationPolicy selects workloads, not gRPC servers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from pilot._gen import security_pb2 as sec
from pilot.config.objects import FieldError
from pilot.errors import TranslationError
from pilot.translate import authz_model
from pilot.translate import authz_policies as ap
from pilot.translate import authz_rules as r

_Part = TypeVar("_Part", sec.Source, sec.Operation)
# Principals are rewritten for the mesh's trust domains; that decides no gRPC support.
_TRUST = r.TrustDomains(("cluster.local",))
_WHY = {
    sec.AuthorizationPolicy.CUSTOM: "istiod and pilot build no ext_authz for gRPC",
    sec.AuthorizationPolicy.AUDIT: "gRPC ignores the LOG action",
}
_LOSS = {
    sec.AuthorizationPolicy.ALLOW: "so the ALLOW rule is dropped on them (it allows no call)",
    sec.AuthorizationPolicy.DENY: "so the DENY rule applies on them without it (it denies more calls)",
}


def grpc_authorization_warnings(obj: ap.AuthorizationPolicyObject) -> list[FieldError]:
    """A warning for every part of ``obj`` a proxyless gRPC server does not enforce as written."""
    spec = obj.spec

    def warn(path: str, message: str) -> FieldError:
        return FieldError(obj.origin, message, obj.key, path, severity="warning")

    if spec.action in _WHY:
        name = sec.AuthorizationPolicy.Action.Name(spec.action)
        return [
            warn("spec.action", f"{name} is not enforced on proxyless gRPC servers ({_WHY[spec.action]})")
        ]
    if ap.dry_run(obj):
        where = f"metadata.annotations[{ap.DRY_RUN_ANNOTATION}]"
        return [warn(where, "dry-run policies are not evaluated on proxyless gRPC servers (shadow rules)")]
    out = []
    for path, why in _unevaluable(obj):
        out.append(warn(path, f"{why}: {_LOSS.get(spec.action, _LOSS[sec.AuthorizationPolicy.ALLOW])}"))
    return out


def _unevaluable(obj: ap.AuthorizationPolicyObject) -> Iterator[tuple[str, str]]:
    """(field path, why) of each field of ``obj``'s rules the gRPC-mode builder refuses."""
    for i, rule in enumerate(obj.spec.rules):
        for j, source in enumerate(getattr(rule, "from")):
            for name, alone in _fields(source.source):
                rule_alone = sec.Rule()
                getattr(rule_alone, "from").add(source=alone)
                yield from _refused(f"spec.rules[{i}].from[{j}].source.{name}", rule_alone, obj.namespace)
        for j, to in enumerate(rule.to):
            for name, alone in _fields(to.operation):
                rule_alone = sec.Rule(to=[sec.Rule.To(operation=alone)])
                yield from _refused(f"spec.rules[{i}].to[{j}].operation.{name}", rule_alone, obj.namespace)
        for j, condition in enumerate(rule.when):
            yield from _refused(f"spec.rules[{i}].when[{j}]", sec.Rule(when=[condition]), obj.namespace)


def _fields(message: _Part) -> Iterator[tuple[str, _Part]]:
    """(JSON name, a copy of ``message`` with only that field) of every set field."""
    for descriptor, value in message.ListFields():
        alone = type(message)()
        getattr(alone, descriptor.name).extend(value)
        yield descriptor.json_name, alone


def _refused(path: str, rule: sec.Rule, namespace: str) -> Iterator[tuple[str, str]]:
    try:
        authz_model.rule_policy(rule, namespace, _TRUST, False, r.ALLOW, grpc=True)
    except r.HttpOnlyError as err:
        yield path, str(err)
    except TranslationError:
        pass  # not a gRPC matter: the policy fails closed everywhere (pilot.translate.problems)


__all__ = ["grpc_authorization_warnings"]
