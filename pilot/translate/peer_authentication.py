"""The effective PeerAuthentication of a workload and port: istiod's mTLS mode computation.

Istio's pilot/pkg/model/authentication.go (``addPeerAuthentication``, ``GetNamespaceMutualTLSMode``,
``getConfigsForWorkload``) and pilot/pkg/security/authn/policy_applier.go
(``ComposePeerAuthentication``, ``GetMutualTLSModeForPort``); ISTIO-SIDECAR-AND-SECURITY.md §6:

* A policy without a selector (or with an empty one) is **mesh-wide** in the root namespace (mesh
  ``rootNamespace``, ``istio-system`` by default) and **namespace-wide** elsewhere; one with a
  selector is **workload** level and applies to the workloads of its namespace whose labels hold
  every pair of the selector. A selector policy in the root namespace applies to nothing.
* Within a level the oldest policy wins (creation time, then name: istiod's
  ``sortConfigByCreationTime``); the others are ignored, and istiod logs the extra mesh- and
  namespace-wide ones (``ignored()`` names them here).
* Composition starts at PERMISSIVE and applies mesh, namespace, workload in that order; UNSET (or
  no ``mtls``) inherits the level above.
* ``portLevelMtls`` of the chosen workload policy, keyed by the workload's (target) port, overrides
  the mode for that port; an UNSET entry takes the workload-level mode.

The client side reads ``namespace_mode`` (Istio's ``GetNamespaceMutualTLSMode``): the mode of the
namespace-wide policy of a namespace, else the mesh-wide one, None when there is neither (istiod's
``MTLSUnknown``, which auto mTLS takes as PERMISSIVE).
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pilot._gen import security_pb2
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.translate.context import PushContext
from pilot.translate.policy_selection import selector_matches
from pilot.translate.proxy import ProxyView
from pilot.translate.registry import Endpoint

log = logging.getLogger("pilot.translate.peer_authentication")

PeerAuthentication = security_pb2.PeerAuthentication
PeerAuthenticationObject = ConfigObject[PeerAuthentication]
_Mode = PeerAuthentication.MutualTLS.Mode


class MtlsMode(enum.Enum):
    """Istio's MutualTLSMode, without MTLSUnknown (None stands for it)."""

    DISABLE = "DISABLE"
    PERMISSIVE = "PERMISSIVE"
    STRICT = "STRICT"


_FROM_SPEC = {
    PeerAuthentication.MutualTLS.DISABLE: MtlsMode.DISABLE,
    PeerAuthentication.MutualTLS.PERMISSIVE: MtlsMode.PERMISSIVE,
    PeerAuthentication.MutualTLS.STRICT: MtlsMode.STRICT,
}


def _mode(mtls: PeerAuthentication.MutualTLS | None) -> MtlsMode | None:
    """The mode a policy's ``mtls`` sets; None for UNSET or absent (inherit)."""
    return None if mtls is None else _FROM_SPEC.get(mtls.mode)


def _spec_mode(spec: PeerAuthentication) -> MtlsMode | None:
    return _mode(spec.mtls) if spec.HasField("mtls") else None


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """A workload's mTLS mode, and the ports ``portLevelMtls`` gives another one (sorted)."""

    mode: MtlsMode = MtlsMode.PERMISSIVE
    per_port: tuple[tuple[int, MtlsMode], ...] = ()

    def for_port(self, port: int) -> MtlsMode:
        """Istio's ``GetMutualTLSModeForPort``: the port's own mode, else the workload's."""
        return dict(self.per_port).get(port, self.mode)

    @property
    def modes(self) -> frozenset[MtlsMode]:
        return frozenset({self.mode, *(mode for _, mode in self.per_port)})


PERMISSIVE_DEFAULT = EffectivePolicy()


def is_workload_level(obj: PeerAuthenticationObject) -> bool:
    return bool(obj.spec.selector.match_labels)


def selects(obj: PeerAuthenticationObject, labels: Mapping[str, str]) -> bool:
    """Istio's ``labels.Instance.SubsetOf``: every selector pair is among ``labels`` (the selection
    rule of every security policy, pilot.translate.policy_selection; PeerAuthentication has no
    targetRef)."""
    return selector_matches(obj.spec.selector, labels)


def compose(root_namespace: str, applicable: Sequence[PeerAuthenticationObject]) -> EffectivePolicy:
    """Istio's ``ComposePeerAuthentication`` over the policies that apply to one workload (its
    namespace's and the root namespace's whose selector matches)."""
    ordered = sorted(applicable, key=lambda o: o.precedence)
    mesh = next((o for o in ordered if not is_workload_level(o) and o.namespace == root_namespace), None)
    namespace = next((o for o in ordered if not is_workload_level(o) and o.namespace != root_namespace), None)
    workload = next((o for o in ordered if is_workload_level(o) and o.namespace != root_namespace), None)
    mode = MtlsMode.PERMISSIVE
    for level in (mesh, namespace, workload):
        if level is not None:
            mode = _spec_mode(level.spec) or mode
    if workload is None:
        return EffectivePolicy(mode)
    per_port = tuple(
        (port, _mode(mtls) or mode) for port, mtls in sorted(workload.spec.port_level_mtls.items())
    )
    return EffectivePolicy(mode, per_port)


@dataclass(frozen=True)
class PeerAuthentications:
    """The PeerAuthentications of one push context, by namespace (each list oldest first)."""

    root_namespace: str
    by_namespace: Mapping[str, tuple[PeerAuthenticationObject, ...]]
    _namespace_modes: dict[str, MtlsMode] = field(default_factory=dict, repr=False)
    _mesh_mode: list[MtlsMode | None] = field(default_factory=list, repr=False)

    @classmethod
    def build(cls, root_namespace: str, objects: Sequence[PeerAuthenticationObject]) -> PeerAuthentications:
        grouped: dict[str, list[PeerAuthenticationObject]] = {}
        for obj in sorted(objects, key=lambda o: o.precedence):
            grouped.setdefault(obj.namespace, []).append(obj)
        built = cls(root_namespace, {ns: tuple(objs) for ns, objs in grouped.items()})
        for key in built.ignored():
            level = "mesh" if key.namespace == root_namespace else "namespace"
            log.warning(
                "PeerAuthentication %s/%s ignored: an older %s-wide PeerAuthentication is in force in %s",
                key.namespace,
                key.name,
                level,
                key.namespace,
            )
        return built

    def ignored(self) -> list[ConfigKey]:
        """The mesh- and namespace-wide policies that lose to an older one of their namespace, and
        selector policies in the root namespace (they apply to nothing)."""
        out = []
        for namespace, objects in sorted(self.by_namespace.items()):
            wide = [o for o in objects if not is_workload_level(o)]
            out += [o.key for o in wide[1:]]
            if namespace == self.root_namespace:
                out += [o.key for o in objects if is_workload_level(o)]
        return out

    def applicable(self, namespace: str, labels: Mapping[str, str]) -> list[PeerAuthenticationObject]:
        """Istio's ``GetPeerAuthenticationsForWorkload``: the workload's namespace's and the root
        namespace's policies whose selector its labels satisfy."""
        namespaces = dict.fromkeys((namespace, self.root_namespace))
        return [obj for ns in namespaces for obj in self.by_namespace.get(ns, ()) if selects(obj, labels)]

    def for_workload(self, namespace: str, labels: Mapping[str, str]) -> EffectivePolicy:
        """The effective policy of a workload of ``namespace`` with ``labels``."""
        if not self.by_namespace:
            return PERMISSIVE_DEFAULT
        return compose(self.root_namespace, self.applicable(namespace, labels))

    def mesh_mode(self) -> MtlsMode | None:
        """Istio's ``globalMutualTLSMode``: the oldest mesh-wide policy's mode (UNSET is PERMISSIVE);
        None without one."""
        if not self._mesh_mode:
            wide = [o for o in self.by_namespace.get(self.root_namespace, ()) if not is_workload_level(o)]
            found = (_spec_mode(wide[0].spec) or MtlsMode.PERMISSIVE) if wide else None
            self._mesh_mode.append(found)
        return self._mesh_mode[0]

    def namespace_mode(self, namespace: str) -> MtlsMode | None:
        """Istio's ``GetNamespaceMutualTLSMode``: the namespace-wide policy's mode (UNSET inherits the
        mesh's, else PERMISSIVE), else the mesh-wide mode; None when neither exists."""
        if namespace == self.root_namespace:
            return self.mesh_mode()
        found = self._namespace_modes.get(namespace)
        if found is not None:
            return found
        wide = [o for o in self.by_namespace.get(namespace, ()) if not is_workload_level(o)]
        if not wide:
            return self.mesh_mode()
        found = _spec_mode(wide[0].spec) or self.mesh_mode() or MtlsMode.PERMISSIVE
        self._namespace_modes[namespace] = found
        return found

    def auto_mtls_to(self, namespace: str) -> bool:
        """Whether auto mTLS may upgrade a client to a service of ``namespace`` (Istio's
        ``BestEffortInferServiceMTLSMode``: not when its namespace or the mesh says DISABLE)."""
        return self.namespace_mode(namespace) is not MtlsMode.DISABLE

    def plaintext_only(self, namespace: str) -> Callable[[Endpoint, int], bool] | None:
        """Whether an endpoint of a service of ``namespace`` takes plain text only on a target port:
        its own workload's policy is DISABLE there (Istio's mtls_checker.go, which keeps the
        endpoint's ``tlsMode`` metadata off so auto mTLS sends it plain text). None without policies."""
        if not self.by_namespace:
            return None

        def disabled(endpoint: Endpoint, target_port: int) -> bool:
            policy = self.for_workload(namespace, dict(endpoint.labels))
            return policy.for_port(target_port) is MtlsMode.DISABLE

        return disabled


# One index per push context: keyed by the identity of the context's policy tuple (held here, so
# the id cannot be reused while it is cached) and the root namespace. Translation runs on the
# pusher's one worker thread; the lock keeps other callers (tests, debug views) safe.
_CACHE_SIZE = 4
_cache: dict[tuple[int, str], tuple[object, PeerAuthentications]] = {}
_cache_lock = threading.Lock()


def index_of(root_namespace: str, objects: tuple[PeerAuthenticationObject, ...]) -> PeerAuthentications:
    """The index of ``objects`` (a push context's ``peer_authentications``), built once per tuple."""
    key = (id(objects), root_namespace)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None and found[0] is objects:
            return found[1]
    built = PeerAuthentications.build(root_namespace, objects)
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = (objects, built)
    return built


def of_view(view: ProxyView, context: PushContext) -> EffectivePolicy:
    """The effective policy of the workload behind ``view``: its labels answer every selector as the
    workload's would (pilot.translate.views keeps the pairs the policies' selectors name)."""
    index = index_of(context.mesh.root_namespace, context.peer_authentications)
    return index.for_workload(view.namespace, dict(view.labels))


__all__ = [
    "PERMISSIVE_DEFAULT",
    "EffectivePolicy",
    "MtlsMode",
    "PeerAuthentications",
    "compose",
    "index_of",
    "of_view",
    "selects",
]
