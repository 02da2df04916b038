"""The ``pilot`` command line: parse flags, call the module that does the work, return an exit code.

Subcommands:
    serve       run the control plane (pilot.app)
    demo        a self-contained demo with real Envoys (pilot.demo.run)
    bootstrap   print an Envoy bootstrap that points at pilot (pilot.bootstrap.run)
    validate    check Istio YAML files like istioctl validate (pilot.validate.run)

Each subcommand's module is imported only when that subcommand runs, so ``pilot bootstrap`` does
not pay for grpc and ``--help`` is quick. Exit codes: 0 ok (also Ctrl-C), 1 failure, 2 bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pilot import __version__
from pilot.errors import PilotError
from pilot.settings import Settings

log = logging.getLogger("pilot.cli")

LOG_LEVELS = ("debug", "info", "warning", "error")

Handler = Callable[[argparse.Namespace], int]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _namespaces(text: str) -> tuple[str, ...]:
    names = tuple(sorted({name.strip() for name in text.split(",") if name.strip()}))
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of namespaces")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pilot", description="An Istio-compatible service-mesh control plane and Envoy xDS server."
    )
    parser.add_argument("--version", action="version", version=f"pilot {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_serve(commands)
    # Subcommands implemented elsewhere: their flags live here, their code is imported on use.
    _add_demo(commands)
    _add_bootstrap(commands)
    _add_validate(commands)
    # Room for more: add a _add_<name>(commands) that sets `handler` lazily.
    return parser


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    defaults = Settings()
    serve = commands.add_parser(
        "serve",
        help="run the control plane",
        description="Watch a folder of Istio YAML and serve it to Envoy proxies over ADS.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve.add_argument("--config-dir", type=Path, default=None, metavar="DIR",
                       help="folder of Istio YAML/JSON, watched recursively (none: serve empty config)")
    serve.add_argument("--xds-host", default=defaults.xds_host, help="address of the ADS gRPC server")
    serve.add_argument("--xds-port", type=_port, default=defaults.xds_port,
                       help="port of the ADS gRPC server (0: any free port)")
    serve.add_argument("--http-host", default=defaults.http_host, help="address of /ready, /metrics, /debug")
    serve.add_argument("--http-port", type=_port, default=defaults.http_port,
                       help="port of /ready, /metrics, /debug (0: any free port)")
    serve.add_argument("--debounce-after", type=_seconds, default=defaults.debounce_after, metavar="SECONDS",
                       help="push after this much quiet (PILOT_DEBOUNCE_AFTER)")
    serve.add_argument("--debounce-max", type=_seconds, default=defaults.debounce_max, metavar="SECONDS",
                       help="push at the latest this long after a burst started (PILOT_DEBOUNCE_MAX)")
    serve.add_argument("--push-concurrency", type=_positive_int, default=defaults.push_concurrency,
                       metavar="N", help="proxies sent a push at the same time (PILOT_PUSH_THROTTLE)")
    serve.add_argument("--send-timeout", type=_seconds, default=defaults.send_timeout, metavar="SECONDS",
                       help="a send slower than this gives up its push slot")
    serve.add_argument("--shutdown-grace", type=_seconds, default=defaults.shutdown_grace, metavar="SECONDS",
                       help="time streams get to finish on shutdown")
    serve.add_argument("--max-connection-age", type=_seconds, default=defaults.max_connection_age,
                       metavar="SECONDS", help="close xDS connections after this long so proxies rebalance "
                       "over replicas (default: 1800, with gRPC's +/-10%% jitter)")
    limits = serve.add_argument_group("limits (past one, a config file or object is refused with an error)")
    limits.add_argument("--max-file-bytes", type=_positive_int, default=defaults.max_file_bytes, metavar="N",
                        help="bytes of one config file")
    limits.add_argument("--max-objects-per-file", type=_positive_int, default=defaults.max_objects_per_file,
                        metavar="N", help="objects in one file, counting kind: List items")
    limits.add_argument("--max-hosts-per-object", type=_positive_int, default=defaults.max_hosts_per_object,
                        metavar="N", help="hosts of one object")
    limits.add_argument("--max-routes-per-object", type=_positive_int,
                        default=defaults.max_routes_per_object, metavar="N",
                        help="HTTP, TLS and TCP routes of one VirtualService")
    limits.add_argument("--max-yaml-depth", type=_positive_int, default=defaults.max_yaml_depth, metavar="N",
                        help="nesting of one YAML document")
    limits.add_argument("--http-request-timeout", type=_seconds, default=defaults.http_request_timeout,
                        metavar="SECONDS", help="time a request to the HTTP port has to arrive whole")
    limits.add_argument("--http-max-connections", type=_positive_int, default=defaults.http_max_connections,
                        metavar="N", help="open connections to the HTTP port")
    kube = serve.add_argument_group("Kubernetes")
    kube.add_argument("--kube", action="store_true",
                      help="read Istio config, Services, EndpointSlices and the mesh ConfigMap from the "
                      "Kubernetes API")
    kube.add_argument("--watch-namespaces", type=_namespaces, default=None, metavar="NS[,NS...]",
                      help="only these namespaces, comma-separated (None: all)")
    kube.add_argument("--pilot-namespace", default=defaults.pilot_namespace, metavar="NS",
                      help="pilot's own namespace, where the ConfigMap 'istio' is read")
    kube.add_argument("--kubeconfig", type=Path, default=None, metavar="FILE",
                      help="(None: the in-cluster service account, else $KUBECONFIG or ~/.kube/config)")
    kube.add_argument("--cluster-domain", default=defaults.cluster_domain, metavar="DOMAIN",
                      help="DNS suffix of Services (NAME.NS.svc.DOMAIN)")
    kube.add_argument("--webhook-host", default=defaults.webhook_host,
                      help="address of the admission webhook")
    kube.add_argument("--webhook-port", type=_port, default=None, metavar="N",
                      help="serve the validating admission webhook (HTTPS) on this port (Istio: 15017)")
    kube.add_argument("--webhook-cert", type=Path, default=None, metavar="FILE",
                      help="the webhook's certificate (PEM; reloaded when the file changes)")
    kube.add_argument("--webhook-key", type=Path, default=None, metavar="FILE",
                      help="the webhook's private key (PEM)")
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="level of pilot's own logs")
    serve.set_defaults(handler=_serve)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="run a demo: pilot, real Envoys and backends on 127.0.0.1",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument("--duration", type=_seconds, default=None, metavar="SECONDS",
                      help="stop after this long (default: until Ctrl-C)")
    demo.add_argument("--xds-port", type=_port, default=0, help="pilot's ADS port (0: any free port)")
    demo.add_argument("--http-port", type=_port, default=0, help="pilot's HTTP port (0: any free port)")
    demo.add_argument("--listen-port", type=_port, default=0,
                      help="the Envoy listener port (0: any free port)")
    demo.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="level of pilot's own logs")
    demo.set_defaults(handler=_demo)


def _add_bootstrap(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bootstrap = commands.add_parser(
        "bootstrap",
        help="print an Envoy bootstrap that points at pilot",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    bootstrap.add_argument("--node-id", required=True, metavar="ID",
                           help="Envoy node id, e.g. sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local")
    bootstrap.add_argument("--xds-address", required=True, metavar="HOST:PORT", help="pilot's ADS address")
    bootstrap.add_argument("--delta", action="store_true", help="use delta (incremental) xDS")
    bootstrap.add_argument("--admin-port", type=_port, default=None, metavar="N",
                           help="Envoy admin port on 127.0.0.1 (default: no admin)")
    bootstrap.add_argument("--label", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                           help="a workload label, sent as node metadata LABELS (a router's Gateway "
                           "selector matches these); repeatable")
    bootstrap.add_argument("--metadata", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                           help="other node metadata, e.g. INTERCEPTION_MODE=REDIRECT; repeatable")
    bootstrap.add_argument("--output", choices=("json", "yaml"), default="json", help="output format")
    bootstrap.set_defaults(handler=_bootstrap)


def _add_validate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    validate = commands.add_parser(
        "validate", help="check Istio YAML like istioctl validate (exit 1 on errors)"
    )
    validate.add_argument("files", nargs="*", metavar="FILE",
                          help="YAML/JSON files or folders; '-' or none: standard input")
    validate.set_defaults(handler=_validate)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def settings_from(args: argparse.Namespace) -> Settings:
    """``pilot serve`` flags as Settings (ValueError when they contradict each other)."""
    return Settings(
        config_dir=args.config_dir,
        xds_host=args.xds_host,
        xds_port=args.xds_port,
        http_host=args.http_host,
        http_port=args.http_port,
        debounce_after=args.debounce_after,
        debounce_max=args.debounce_max,
        push_concurrency=args.push_concurrency,
        send_timeout=args.send_timeout,
        shutdown_grace=args.shutdown_grace,
        max_connection_age=args.max_connection_age,
        max_file_bytes=args.max_file_bytes,
        max_objects_per_file=args.max_objects_per_file,
        max_hosts_per_object=args.max_hosts_per_object,
        max_routes_per_object=args.max_routes_per_object,
        max_yaml_depth=args.max_yaml_depth,
        http_request_timeout=args.http_request_timeout,
        http_max_connections=args.http_max_connections,
        kube=args.kube,
        watch_namespaces=args.watch_namespaces,
        pilot_namespace=args.pilot_namespace,
        kubeconfig=args.kubeconfig,
        cluster_domain=args.cluster_domain,
        webhook_host=args.webhook_host,
        webhook_port=args.webhook_port,
        webhook_cert=args.webhook_cert,
        webhook_key=args.webhook_key,
    )


def _serve(args: argparse.Namespace) -> int:
    from pilot import app

    settings = settings_from(args)
    try:
        asyncio.run(app.run(settings))
    except PilotError as err:
        log.error("%s", err)
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pilot import demo

    result: int = demo.run(args)
    return result


def _validate(args: argparse.Namespace) -> int:
    from pilot import validate

    return validate.run(args)


def _bootstrap(args: argparse.Namespace) -> int:
    from pilot import bootstrap

    return bootstrap.run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pilot ARGS``; returns the exit code (argparse exits 2 itself on bad flags)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve" and args.debounce_max < args.debounce_after:
        parser.error("--debounce-max must be at least --debounce-after")
    if args.command == "serve" and args.webhook_port is not None and not (
        args.webhook_cert and args.webhook_key
    ):
        parser.error("--webhook-port needs --webhook-cert and --webhook-key")
    if args.command == "serve" and args.watch_namespaces is not None and not args.kube:
        parser.error("--watch-namespaces needs --kube")
    if hasattr(args, "log_level"):
        from pilot import log as pilot_log

        pilot_log.configure(args.log_level.upper())
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        # Ctrl-C is how an operator stops pilot in a terminal: not an error.
        print(file=sys.stderr)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
