"""The flags of ``pilot agent`` as one frozen value (imported by ``pilot --help``: no grpc here).

Each field names the Istio setting it stands for (pilot/cmd/pilot-agent/options, pkg/istio-agent).
"""

from __future__ import annotations

import argparse
import datetime
from dataclasses import dataclass
from pathlib import Path

from pilot import flag_values
from pilot.bootstrap import parse_address

ISTIOD_HOST = "istiod.istio-system.svc"
DEFAULT_TRUST_DOMAIN = "cluster.local"
# SECRET_TTL: the lifetime the agent asks the CA for.
DEFAULT_SECRET_TTL = datetime.timedelta(hours=24)
# SECRET_GRACE_PERIOD_RATIO and its jitter (pkg/istio-agent, secretcache.go rotateTime).
DEFAULT_GRACE_RATIO = 0.5
DEFAULT_GRACE_JITTER = 0.01
# Envoy's admin port in an Istio sidecar (pod-local).
DEFAULT_ADMIN_PORT = 15000
INTERCEPTION_MODES = ("REDIRECT", "NONE")
ENVOY_LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical", "off")
# Linux's sun_path holds 108 bytes, the last a NUL: Envoy and grpc refuse longer socket paths.
MAX_SOCKET_PATH = 107


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """One agent: who the workload is, where pilot is, which Envoy to run."""

    xds_address: str  # --xds-address: pilot's secure port (Istio's discoveryAddress, CA_ADDR)
    root_cert: Path  # --root-cert: the mesh root (Istio's ./var/run/secrets/istio/root-cert.pem)
    token_file: Path  # --token-file: the service-account token, re-read on every call (it rotates)
    namespace: str
    service_account: str
    envoy: Path | None = None  # required unless proxyless
    labels: tuple[tuple[str, str], ...] = ()
    interception: str = "REDIRECT"  # INTERCEPTION_MODE: Istio's sidecars are captured by iptables
    ip: str = "127.0.0.1"  # INSTANCE_IP: the pod's address, part 2 of the node id
    node_id: str | None = None  # None: sidecar~IP~POD.NS~NS.svc.cluster.local, POD the host name
    admin_port: int = DEFAULT_ADMIN_PORT
    envoy_args: tuple[str, ...] = ()
    proxy_log_level: str = "warning"  # --proxyLogLevel: Envoy's -l
    workdir: Path | None = None  # None: a fresh private folder, removed on exit
    server_name: str = ISTIOD_HOST  # ISTIOD_SAN: the name pilot's certificate must carry
    trust_domain: str = DEFAULT_TRUST_DOMAIN  # TRUST_DOMAIN: of the SPIFFE id the CSR asks for
    secret_ttl: datetime.timedelta = DEFAULT_SECRET_TTL
    grace_ratio: float = DEFAULT_GRACE_RATIO
    grace_jitter: float = DEFAULT_GRACE_JITTER
    delta: bool = False  # Envoy's ADS: delta (DELTA_GRPC) or state of the world (GRPC)
    # A proxyless gRPC workload (Istio's DISABLE_ENVOY with GRPC_XDS_BOOTSTRAP): no Envoy and no SDS;
    # the agent writes the gRPC bootstrap (``grpc_bootstrap``, default under the work directory)
    # and keeps the certificate files current for gRPC's file_watcher.
    proxyless: bool = False
    grpc_bootstrap: Path | None = None

    def __post_init__(self) -> None:
        parse_address(self.xds_address)
        if self.proxyless:
            if self.workdir is None and self.grpc_bootstrap is None:
                raise ValueError(
                    "--proxyless needs --workdir or --grpc-bootstrap: the application reads the bootstrap"
                )
            if self.delta:
                raise ValueError("--delta: gRPC's xDS client speaks state of the world only")
        elif self.envoy is None:
            raise ValueError("--envoy is required (unless --proxyless)")
        elif self.grpc_bootstrap is not None:
            raise ValueError("--grpc-bootstrap needs --proxyless")
        if self.interception not in INTERCEPTION_MODES:
            raise ValueError(f"--interception must be one of {', '.join(INTERCEPTION_MODES)}")
        if self.secret_ttl <= datetime.timedelta(0):
            raise ValueError("--secret-ttl must be positive")
        if not 0 < self.grace_ratio < 1:
            raise ValueError("--grace-ratio must be between 0 and 1")
        if not 0 <= self.grace_jitter < 1:
            raise ValueError("the grace period jitter must be between 0 and 1")
        if not 0 <= self.admin_port < 65536:
            raise ValueError(f"--admin-port out of range: {self.admin_port}")
        if not self.namespace or not self.service_account:
            raise ValueError("--namespace and --service-account must not be empty")

    def resolved_node_id(self, pod_name: str) -> str:
        """``--node-id``, else Istio's ``sidecar~IP~POD.NS~NS.svc.cluster.local``."""
        if self.node_id:
            return self.node_id
        return f"sidecar~{self.ip}~{pod_name}.{self.namespace}~{self.namespace}.svc.cluster.local"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``pilot agent``."""
    parser.add_argument(
        "--xds-address", required=True, metavar="HOST:PORT", help="pilot's secure port (Istio: 15012)"
    )
    parser.add_argument(
        "--root-cert", type=Path, required=True, metavar="FILE", help="the mesh root certificate (PEM)"
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        required=True,
        metavar="FILE",
        help="the service-account token (re-read on every call; `pilot token` makes one)",
    )
    parser.add_argument("--namespace", required=True, metavar="NS")
    parser.add_argument("--service-account", required=True, metavar="SA")
    parser.add_argument(
        "--label",
        action="append",
        type=flag_values.key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a workload label, sent as node metadata LABELS; repeatable",
    )
    parser.add_argument(
        "--interception",
        choices=INTERCEPTION_MODES,
        default="REDIRECT",
        help="node metadata INTERCEPTION_MODE (default: REDIRECT, as Istio's sidecars)",
    )
    parser.add_argument("--ip", default="127.0.0.1", help="the workload's IP, in the node id")
    parser.add_argument(
        "--node-id", default=None, metavar="ID", help="(default: sidecar~IP~HOST.NS~NS.svc...)"
    )
    parser.add_argument(
        "--envoy",
        type=Path,
        default=None,
        metavar="PATH",
        help="the envoy binary (required unless --proxyless)",
    )
    parser.add_argument(
        "--proxyless",
        action="store_true",
        help="a proxyless gRPC workload: no Envoy; write the gRPC xDS bootstrap (certificate_providers "
        "over the certificate files the agent keeps current) and proxy its xDS to pilot",
    )
    parser.add_argument(
        "--grpc-bootstrap",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --proxyless: where to write the gRPC bootstrap, what GRPC_XDS_BOOTSTRAP names "
        "(default: WORKDIR/etc/istio/proxy/grpc-bootstrap.json)",
    )
    parser.add_argument(
        "--admin-port",
        type=int,
        default=DEFAULT_ADMIN_PORT,
        metavar="N",
        help="Envoy admin port on 127.0.0.1",
    )
    parser.add_argument(
        "--envoy-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra argument for envoy, e.g. --envoy-arg=--log-level=debug; repeatable",
    )
    parser.add_argument(
        "--proxy-log-level",
        choices=ENVOY_LOG_LEVELS,
        default="warning",
        help="Envoy's log level (Istio: --proxyLogLevel, warning)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        metavar="DIR",
        help="sockets, bootstrap and credentials (default: a private temporary folder, removed on exit)",
    )
    parser.add_argument(
        "--server-name",
        default=ISTIOD_HOST,
        metavar="HOST",
        help="the name pilot's certificate must carry (Istio: ISTIOD_SAN)",
    )
    parser.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN, metavar="DOMAIN")
    parser.add_argument(
        "--secret-ttl",
        type=flag_values.duration,
        default=DEFAULT_SECRET_TTL,
        metavar="DURATION",
        help="certificate lifetime asked of the CA (Istio: SECRET_TTL, 24h)",
    )
    parser.add_argument(
        "--grace-ratio",
        type=float,
        default=DEFAULT_GRACE_RATIO,
        metavar="R",
        help="renew when this fraction of the lifetime is left (Istio: SECRET_GRACE_PERIOD_RATIO)",
    )
    parser.add_argument("--delta", action="store_true", help="Envoy uses delta ADS")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")


def options_from(args: argparse.Namespace) -> AgentOptions:
    """The parsed flags as AgentOptions (ValueError, a usage error, for values that do not fit)."""
    return AgentOptions(
        xds_address=args.xds_address,
        root_cert=args.root_cert,
        token_file=args.token_file,
        namespace=args.namespace,
        service_account=args.service_account,
        envoy=args.envoy,
        labels=tuple(args.label),
        interception=args.interception,
        ip=args.ip,
        node_id=args.node_id,
        admin_port=args.admin_port,
        envoy_args=tuple(args.envoy_arg),
        proxy_log_level=args.proxy_log_level,
        workdir=args.workdir,
        server_name=args.server_name,
        trust_domain=args.trust_domain,
        secret_ttl=args.secret_ttl,
        grace_ratio=args.grace_ratio,
        delta=args.delta,
        proxyless=args.proxyless,
        grpc_bootstrap=args.grpc_bootstrap,
    )
