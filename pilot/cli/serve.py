"""``pilot serve``: its flags, the Settings they make, and the handler that runs the control plane."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from pilot import flag_values
from pilot.cli.command import LOG_LEVELS, Command, Subcommands
from pilot.cli.config_limits import add_config_limits
from pilot.cli.help_format import DefaultsOnce
from pilot.errors import PilotError
from pilot.settings import Settings

log = logging.getLogger("pilot.cli")


def _namespaces(text: str) -> tuple[str, ...]:
    names = tuple(sorted({name.strip() for name in text.split(",") if name.strip()}))
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of namespaces")
    return names


def add_serve(commands: Subcommands) -> None:
    defaults = Settings()
    serve = commands.add_parser(
        "serve",
        help="run the control plane",
        description="Watch a folder of Istio YAML and serve it to Envoy proxies over ADS.",
        formatter_class=DefaultsOnce,
    )
    serve.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of Istio YAML/JSON, watched recursively (none: serve empty config)",
    )
    serve.add_argument("--xds-host", default=defaults.xds_host, help="address of the ADS gRPC server")
    serve.add_argument(
        "--xds-port",
        type=flag_values.port,
        default=defaults.xds_port,
        help="port of the plaintext ADS gRPC server (0: not served)",
    )
    serve.add_argument("--http-host", default=defaults.http_host, help="address of /ready, /metrics, /debug")
    serve.add_argument(
        "--http-port",
        type=flag_values.port,
        default=defaults.http_port,
        help="port of /ready, /metrics, /debug (0: any free port)",
    )
    serve.add_argument(
        "--debounce-after",
        type=flag_values.non_negative,
        default=defaults.debounce_after,
        metavar="SECONDS",
        help="push after this much quiet (PILOT_DEBOUNCE_AFTER)",
    )
    serve.add_argument(
        "--debounce-max",
        type=flag_values.non_negative,
        default=defaults.debounce_max,
        metavar="SECONDS",
        help="push at the latest this long after a burst started (PILOT_DEBOUNCE_MAX)",
    )
    serve.add_argument(
        "--push-concurrency",
        type=flag_values.count,
        default=defaults.push_concurrency,
        metavar="N",
        help="proxies sent a push at the same time (PILOT_PUSH_THROTTLE)",
    )
    serve.add_argument(
        "--send-timeout",
        type=flag_values.non_negative,
        default=defaults.send_timeout,
        metavar="SECONDS",
        help="a send slower than this gives up its push slot",
    )
    serve.add_argument(
        "--shutdown-grace",
        type=flag_values.non_negative,
        default=defaults.shutdown_grace,
        metavar="SECONDS",
        help="time streams get to finish on shutdown",
    )
    serve.add_argument(
        "--max-connection-age",
        type=flag_values.non_negative,
        default=defaults.max_connection_age,
        metavar="SECONDS",
        help="close xDS connections after this long so proxies rebalance "
        "over replicas (default: 1800, with gRPC's +/-10%% jitter; 0: no maximum age)",
    )
    limits = add_config_limits(serve, defaults)
    limits.add_argument(
        "--http-request-timeout",
        type=flag_values.non_negative,
        default=defaults.http_request_timeout,
        metavar="SECONDS",
        help="time a request to the HTTP port has to arrive whole",
    )
    limits.add_argument(
        "--http-max-connections",
        type=flag_values.count,
        default=defaults.http_max_connections,
        metavar="N",
        help="open connections to the HTTP port",
    )
    limits.add_argument(
        "--max-requests-per-second",
        type=flag_values.non_negative,
        default=defaults.max_requests_per_second,
        metavar="N",
        help="new xDS streams per second, all proxies together; 0: no limit "
        "(PILOT_MAX_REQUESTS_PER_SECOND, default min(15 + 5 * CPUs, 100))",
    )
    limits.add_argument(
        "--max-stream-requests-per-second",
        type=flag_values.non_negative,
        default=defaults.max_stream_requests_per_second,
        metavar="N",
        help="requests per second of one xDS stream, beyond --stream-request-burst; 0: no limit",
    )
    limits.add_argument(
        "--stream-request-burst",
        type=flag_values.count,
        default=defaults.stream_request_burst,
        metavar="N",
        help="requests one xDS stream may send at once before its rate applies",
    )
    limits.add_argument(
        "--nack-log-interval",
        type=flag_values.non_negative,
        default=defaults.nack_log_interval,
        metavar="SECONDS",
        help="one stream's NACKs are logged at most once per this long (with a count of the others)",
    )
    kube = serve.add_argument_group("Kubernetes")
    kube.add_argument(
        "--kube",
        action="store_true",
        help="read Istio config, Services, EndpointSlices and the mesh ConfigMap from the Kubernetes API",
    )
    kube.add_argument(
        "--watch-namespaces",
        type=_namespaces,
        default=None,
        metavar="NS[,NS...]",
        help="only these namespaces, comma-separated (None: all)",
    )
    kube.add_argument(
        "--pilot-namespace",
        default=defaults.pilot_namespace,
        metavar="NS",
        help="pilot's own namespace, where the ConfigMap 'istio' is read",
    )
    kube.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        metavar="FILE",
        help="kubeconfig of the cluster to watch (default: the in-cluster service account, else "
        "$KUBECONFIG or ~/.kube/config)",
    )
    kube.add_argument(
        "--status-write-interval",
        type=flag_values.non_negative,
        default=defaults.status_write_interval,
        metavar="SECONDS",
        help="write each object's status at most once per this long (default: 5; --no-status-writes: never)",
    )
    kube.add_argument(
        "--no-status-writes",
        action="store_true",
        help="never write the status of Istio and Gateway API objects",
    )
    kube.add_argument(
        "--cluster-domain",
        default=defaults.cluster_domain,
        metavar="DOMAIN",
        help="DNS suffix of Services (NAME.NS.svc.DOMAIN)",
    )
    kube.add_argument(
        "--webhook-host", default=defaults.webhook_host, help="address of the admission webhook"
    )
    kube.add_argument(
        "--webhook-port",
        type=flag_values.port,
        default=None,
        metavar="N",
        help="serve the validating admission webhook (HTTPS) on this port (Istio: 15017)",
    )
    kube.add_argument(
        "--webhook-cert",
        type=Path,
        default=None,
        metavar="FILE",
        help="the webhook's certificate (PEM; reloaded when the file changes)",
    )
    kube.add_argument(
        "--webhook-key", type=Path, default=None, metavar="FILE", help="the webhook's private key (PEM)"
    )
    security = serve.add_argument_group("mesh CA and secure port (docs/security.md)")
    ca_help = (
        "the mesh CA: Istio's cacerts files, or a self-signed root made here (none: no CA, no secure port)"
    )
    security.add_argument("--ca-dir", type=Path, default=None, metavar="DIR", help=ca_help)
    security.add_argument(
        "--trust-domain", default=defaults.trust_domain, help="SPIFFE trust domain of workload certificates"
    )
    ttl_help = "workload certificate lifetime when the CSR asks for none, e.g. 24h, 90m (default: 24h)"
    security.add_argument(
        "--workload-cert-ttl", type=flag_values.duration, default=None, metavar="DURATION", help=ttl_help
    )
    tls_port_help = (
        "port of the TLS gRPC server: ADS for token holders, the CSR service (needs --ca-dir; 0: off)"
    )
    security.add_argument(
        "--xds-tls-port", type=flag_values.port, default=defaults.xds_tls_port, help=tls_port_help
    )
    security.add_argument(
        "--xds-tls-host",
        action="append",
        default=[],
        metavar="HOST",
        help="another name (or IP) in the secure port's certificate besides istiod.istio-system.svc "
        "(repeatable)",
    )
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="level of pilot's own logs")
    serve.set_defaults(command_spec=Command(settings_from, _serve))


def settings_from(args: argparse.Namespace) -> Settings:
    """``pilot serve`` flags as Settings (ValueError when they contradict each other)."""
    return Settings(
        config_dir=args.config_dir,
        xds_host=args.xds_host,
        xds_port=args.xds_port or None,
        ca_dir=args.ca_dir,
        trust_domain=args.trust_domain,
        workload_cert_ttl=Settings().workload_cert_ttl
        if args.workload_cert_ttl is None
        else args.workload_cert_ttl.total_seconds(),
        xds_tls_port=args.xds_tls_port or None,
        xds_tls_hosts=tuple(args.xds_tls_host),
        http_host=args.http_host,
        http_port=args.http_port,
        debounce_after=args.debounce_after,
        debounce_max=args.debounce_max,
        push_concurrency=args.push_concurrency,
        send_timeout=args.send_timeout,
        shutdown_grace=args.shutdown_grace,
        max_connection_age=args.max_connection_age or None,  # 0: connections never age out
        max_file_bytes=args.max_file_bytes,
        max_objects_per_file=args.max_objects_per_file,
        max_hosts_per_object=args.max_hosts_per_object,
        max_routes_per_object=args.max_routes_per_object,
        max_yaml_depth=args.max_yaml_depth,
        http_request_timeout=args.http_request_timeout,
        http_max_connections=args.http_max_connections,
        max_requests_per_second=args.max_requests_per_second,
        max_stream_requests_per_second=args.max_stream_requests_per_second,
        stream_request_burst=args.stream_request_burst,
        nack_log_interval=args.nack_log_interval,
        kube=args.kube,
        watch_namespaces=args.watch_namespaces,
        pilot_namespace=args.pilot_namespace,
        kubeconfig=args.kubeconfig,
        cluster_domain=args.cluster_domain,
        status_write_interval=None if args.no_status_writes else args.status_write_interval,
        webhook_host=args.webhook_host,
        webhook_port=args.webhook_port,
        webhook_cert=args.webhook_cert,
        webhook_key=args.webhook_key,
    )


def _serve(settings: Settings) -> int:
    from pilot import app

    try:
        asyncio.run(app.run(settings))
    except PilotError as err:
        log.error("%s", err)
        return 1
    return 0
