"""Workload identities: a Kubernetes service account and its SPIFFE id in a trust domain.

Istio names a workload ``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``
(istio/istio pkg/spiffe/spiffe.go, ``URIPrefix``/``Identity.String``) and a Kubernetes service-account
token's subject is ``system:serviceaccount:<namespace>:<name>`` (Kubernetes
pkg/serviceaccount/util.go, ``MakeUsername``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SPIFFE_PREFIX = "spiffe://"
USERNAME_PREFIX = "system:serviceaccount:"
DEFAULT_TRUST_DOMAIN = "cluster.local"

# Kubernetes: namespaces are DNS-1123 labels, service accounts DNS-1123 subdomains
# (k8s.io/apimachinery pkg/util/validation/validation.go).
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# SPIFFE-ID spec, section 2.1: a trust domain is lowercase letters, digits, dots, dashes and underscores.
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")


def check_trust_domain(trust_domain: str) -> str:
    """The trust domain unchanged, or ValueError saying what is wrong with it."""
    if not _TRUST_DOMAIN.fullmatch(trust_domain) or len(trust_domain) > 255:
        raise ValueError(f"trust domain {trust_domain!r} is not a SPIFFE trust domain ([a-z0-9._-]+)")
    return trust_domain


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A Kubernetes service account: the identity a token proves and a workload certificate names."""

    namespace: str
    name: str

    def __post_init__(self) -> None:
        if len(self.namespace) > 63 or not _DNS1123_LABEL.fullmatch(self.namespace):
            raise ValueError(f"namespace {self.namespace!r} is not a DNS-1123 label")
        if len(self.name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(self.name):
            raise ValueError(f"service account {self.name!r} is not a DNS-1123 subdomain")

    @property
    def username(self) -> str:
        """The Kubernetes user name of the account, ``system:serviceaccount:NS:NAME``."""
        return f"{USERNAME_PREFIX}{self.namespace}:{self.name}"

    def spiffe_id(self, trust_domain: str) -> str:
        return f"{SPIFFE_PREFIX}{trust_domain}/ns/{self.namespace}/sa/{self.name}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_username(cls, username: str) -> ServiceAccount:
        """``system:serviceaccount:NS:NAME`` → ServiceAccount; ValueError for anything else."""
        rest = username.removeprefix(USERNAME_PREFIX)
        namespace, sep, name = rest.partition(":")
        if rest == username or not sep:
            raise ValueError(f"{username!r} is not a service account user name ({USERNAME_PREFIX}NS:NAME)")
        return cls(namespace, name)


def parse_spiffe_id(uri: str) -> tuple[str, ServiceAccount]:
    """``spiffe://TD/ns/NS/sa/SA`` → (trust domain, service account); ValueError for anything else."""
    rest = uri.removeprefix(SPIFFE_PREFIX)
    parts = rest.split("/")
    if rest == uri or len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
        raise ValueError(f"{uri!r} is not a workload SPIFFE id (spiffe://TRUST_DOMAIN/ns/NS/sa/SA)")
    return check_trust_domain(parts[0]), ServiceAccount(parts[2], parts[4])
