"""AuthorizationPolicy checks, as Istio's ``ValidateAuthorizationPolicy`` (pkg/config/validation/
validation.go) and pkg/config/security (``ValidateAttribute``, ``ValidateIPs``, ``ValidatePorts``,
``CheckEmptyValues``, ``CheckValidPathTemplate``, ``CheckServiceAccount``) do, with Istio's messages.

Beyond Istio: a CUSTOM policy whose ``provider.name`` the mesh config does not define gets a warning
(pilot.config.validation.extension_providers ``unknown_providers``, over the store's objects); a
``targetRef`` to a Service, ServiceEntry (waypoints) or GatewayClass selects no proxy pilot serves.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from pilot._gen import security_pb2 as sec
from pilot.config.validation.common import Report, at, item
from pilot.config.validation.policy_target import check_policy_scope, target_refs_of

Policy = sec.AuthorizationPolicy

DENY_ON_TCP_WARNING = (
    "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of "
    "only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port"
)
# pkg/config/security: the ``when`` keys Istio knows (exact, or a prefix taking ``[name]``).
_EXACT_KEYS = frozenset(
    {
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.principal",
        "source.serviceAccount",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "destination.port",
        "connection.sni",
    }
)
_IP_KEYS = frozenset({"source.ip", "remote.ip", "destination.ip"})
_MAP_KEYS = ("request.headers", "request.auth.claims")
_ENVOY_FILTER_PREFIX = "experimental.envoy.filters."
_TEMPLATES = ("{*}", "{**}")
# RFC 3986 pchar, what Envoy's URI template matcher accepts in a literal segment.
_PCHAR = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@%]+$")
_TARGET_GROUPS = {
    "Gateway": "gateway.networking.k8s.io",
    "Service": "core",
    "ServiceEntry": "networking.istio.io",
}


def validate_authorization_policy(spec: Policy, namespace: str, path: str, report: Report) -> None:
    _selection(spec, path, report)
    rules_path = at(path, "rules")
    if spec.action == Policy.CUSTOM:
        if not len(spec.rules):
            report.error(
                rules_path,
                "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty "
                "rule `{}` if you want it be triggered for every request",
            )
        elif not spec.provider.name:
            report.error(at(path, "provider.name"), "`provider.name` must not be empty")
        _custom_rules(spec, rules_path, report)
    if spec.HasField("provider") and spec.action != Policy.CUSTOM:
        report.error(
            at(path, "provider"),
            f"`provider` must not be with non CUSTOM action, found {Policy.Action.Name(spec.action)}",
        )
    if spec.action == Policy.DENY and not len(spec.rules):
        report.error(
            rules_path,
            "DENY action without `rules` is meaningless as it will never be triggered, "
            "add an empty rule `{}` if you want it be triggered for every request",
        )
    for index, rule in enumerate(spec.rules):
        _rule(rule, spec.action, item(rules_path, index), index, report)


def _selection(spec: Policy, path: str, report: Report) -> None:
    """Istio's validateOneOfSelectorType, validateWorkloadSelector and validatePolicyTargetReference(s)
    (pilot.config.validation.policy_target, which also warns of targets that select no proxy pilot
    serves)."""
    selector = spec.selector if spec.HasField("selector") else None
    refs = target_refs_of(spec, path)
    check_policy_scope(selector, refs, path, report)


def _custom_rules(spec: Policy, path: str, report: Report) -> None:
    """What Istio does not support with CUSTOM: identity and request-auth conditions."""
    for index, rule in enumerate(spec.rules):
        where = item(path, index)
        for f_index, source in enumerate(getattr(rule, "from")):
            s = source.source
            for name in (
                "namespaces",
                "not_namespaces",
                "service_accounts",
                "not_service_accounts",
                "principals",
                "not_principals",
                "request_principals",
                "not_request_principals",
            ):
                if len(getattr(s, name)):
                    camel = "".join(p.capitalize() for p in name.split("_"))
                    report.error(
                        item(at(where, "from"), f_index),
                        f"From.{camel} is currently not supported with CUSTOM action",
                    )
        for condition in rule.when:
            key = condition.key
            if key in ("source.namespace", "source.serviceAccount", "source.principal") or key.startswith(
                "request.auth."
            ):
                report.error(at(where, "when"), f"{key} is currently not supported with CUSTOM action")


def _rule(rule: sec.Rule, action: int, path: str, index: int, report: Report) -> None:
    froms = getattr(rule, "from")
    from_rules = to_rules = tcp_in_from = tcp_in_to = False
    for f_index, entry in enumerate(froms):
        where = item(at(path, "from"), f_index)
        if not entry.HasField("source"):
            report.error(where, f"`from.source` must not be nil, found at rule {index}")
            continue
        from_rules = True
        s = entry.source
        src = at(where, "source")
        if (len(s.principals) + len(s.not_principals) + len(s.namespaces) + len(s.not_namespaces)) and (
            len(s.service_accounts) + len(s.not_service_accounts)
        ):
            report.error(
                src, f"cannot set serviceAccounts with namespaces or principals, found at rule {index}"
            )
        fields = [f.name for f in sec.Source.DESCRIPTOR.fields]
        if not any(len(getattr(s, name)) for name in fields):
            report.error(src, f"`from.source` must not be empty, found at rule {index}")
        for name in ("ip_blocks", "not_ip_blocks", "remote_ip_blocks", "not_remote_ip_blocks"):
            report.check_all(at(src, _camel(name)), _ips(getattr(s, name)))
        for name in fields:
            values = getattr(s, name)
            if "service_accounts" in name:
                report.check_all(at(src, _camel(name)), _service_accounts(_Pascal(name), values))
            else:
                report.check(at(src, _camel(name)), _empty_values(_Pascal(name), values))
        tcp_in_from |= any(
            len(getattr(s, name))
            for name in fields
            if name not in ("request_principals", "not_request_principals")
        )
    for t_index, entry in enumerate(rule.to):
        where = item(at(path, "to"), t_index)
        if not entry.HasField("operation"):
            report.error(where, f"`to.operation` must not be nil, found at rule {index}")
            continue
        to_rules = True
        o = entry.operation
        op = at(where, "operation")
        names = [f.name for f in sec.Operation.DESCRIPTOR.fields]
        if not any(len(getattr(o, name)) for name in names):
            report.error(op, f"`to.operation` must not be empty, found at rule {index}")
        for name in ("ports", "not_ports"):
            report.check_all(at(op, _camel(name)), _ports(getattr(o, name)))
        for name in names:
            report.check(at(op, _camel(name)), _empty_values(_Pascal(name), getattr(o, name)))
        for name in ("paths", "not_paths"):
            report.check(at(op, _camel(name)), _path_templates(_Pascal(name), getattr(o, name)))
        tcp_in_to |= bool(len(o.ports) or len(o.not_ports))
    for w_index, condition in enumerate(rule.when):
        where = item(at(path, "when"), w_index)
        key = condition.key
        if not key:
            report.error(at(where, "key"), "`key` must not be empty")
            continue
        if not len(condition.values) and not len(condition.not_values):
            report.error(where, f"at least one of `values` or `notValues` must be set for key {key}")
            continue
        for field, kind, values in (
            ("values", "value", condition.values),
            ("notValues", "notValue", condition.not_values),
        ):
            problem = validate_attribute(key, values)
            if problem:
                report.error(at(where, field), f"invalid `{kind}` for `key` {key}: {problem}")
    only_http = (from_rules and not to_rules and not tcp_in_from) or (to_rules and not tcp_in_to)
    if only_http and action == Policy.DENY:
        report.warn(path, DENY_ON_TCP_WARNING)


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(p.capitalize() for p in rest)


def _Pascal(name: str) -> str:  # noqa: N802 - Istio's field names in messages: NotIpBlocks
    return "".join(p.capitalize() for p in name.split("_"))


def validate_attribute(key: str, values: Sequence[str]) -> str | None:
    """Istio's ``ValidateAttribute``: a known key, ``[name]`` where it takes one, IPs and ports valid."""
    for prefix in _MAP_KEYS:
        if key.startswith(prefix):
            rest = key.removeprefix(prefix)
            if not re.fullmatch(r"(\[[^\[\]]+\])+", rest) or (
                prefix == "request.headers" and rest.count("[") > 1
            ):
                return f"bad key ({key}): should have format a[b]"
            return None
    if key.startswith(_ENVOY_FILTER_PREFIX):
        return (
            None
            if re.fullmatch(r"[^\[\]]+\[[^\[\]]+\]", key)
            else f"bad key ({key}): should have format a[b]"
        )
    if key not in _EXACT_KEYS:
        return f"unknown attribute: {key}"
    if key in _IP_KEYS:
        problems = _ips(values)
        return "; ".join(problems) if problems else None
    if key == "destination.port":
        problems = _ports(values)
        return "; ".join(problems) if problems else None
    return None


def _ips(values: Sequence[str]) -> list[str]:
    problems = []
    for value in values:
        try:
            if "/" in value:
                ipaddress.ip_network(value, strict=False)
            else:
                ipaddress.ip_address(value)
        except ValueError:
            kind = "CIDR range" if "/" in value else "IP address"
            problems.append(f"bad {kind} ({value})")
    return problems


def _ports(values: Sequence[str]) -> list[str]:
    return [f"bad port ({v})" for v in values if not v.isdigit() or int(v) > 65535]


def _empty_values(name: str, values: Sequence[str]) -> str | None:
    if any(v == "" for v in values):
        return f"empty value not allowed, found in {name}"
    return None


def _service_accounts(name: str, values: Sequence[str]) -> list[str]:
    problems = []
    for value in values:
        if not value:
            problems.append(f"empty value not allowed, found in {name}")
        elif value.count("/") > 1 or "*" in value:
            problems.append(
                f"service account {value!r} in {name} must be of the form NAME or NAMESPACE/NAME, "
                "without wildcards"
            )
    return problems


def _path_templates(name: str, paths: Sequence[str]) -> str | None:
    """Istio's ``CheckValidPathTemplate``: ``{*}`` and ``{**}`` whole segments, ``{**}`` last, no
    other braces, and literal segments of a template path valid URI characters."""
    for written in paths:
        templated = any(t in written for t in _TEMPLATES)
        path = written.strip("/")
        found_any = False
        for glob in path.split("/"):
            if glob in _TEMPLATES and found_any:
                return f"invalid or unsupported path {path}, found in {name}. {{**}} is not the last operator"
            if glob in _TEMPLATES:
                found_any = glob == "{**}"
                continue
            if "{" in glob or "}" in glob:
                return (
                    f"invalid or unsupported path {path}, found in {name}. Contains '{{' or '}}' beyond a "
                    "supported path template"
                )
            if templated and not _PCHAR.match(glob):
                return (
                    f"invalid or unsupported path {path}, found in {name}. Contains segment {glob} with "
                    "invalid string literal"
                )
    return None


__all__ = [
    "DENY_ON_TCP_WARNING",
    "validate_attribute",
    "validate_authorization_policy",
]
