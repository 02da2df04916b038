"""The ``pilot`` command line: parse flags, call the module that does the work, return an exit code.

Subcommands:
    serve       run the control plane (pilot.app)
    demo        a self-contained demo with real Envoys (pilot.demo.run)
    bootstrap   print an Envoy bootstrap that points at pilot (pilot.bootstrap.run)
    validate    check Istio YAML files like istioctl validate (pilot.validate.run)
    iptables    print or apply a pod's capture rules like istio-iptables (pilot.capture.command.run)
    token       print a folder-mode service-account token for the mesh CA (pilot.ca.token_command.run)
    proxy-status, proxy-config, analyze, diff, explain: the operator's commands (pilot.inspect.commands)
    agent       the sidecar's entry point: certificate, SDS, xDS proxy, Envoy (pilot.agent.command.run)

Each subcommand's handler takes a frozen dataclass built from its flags (``Command.options``), never
an ``argparse.Namespace``; options that contradict each other are refused by the class that holds
them (``Settings``) and reported as a usage error. Each subcommand's module is imported only when
that subcommand runs, so ``pilot bootstrap`` does not pay for grpc and ``--help`` is quick. Exit
codes: 0 ok (also Ctrl-C), 1 failure, 2 bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pilot import __version__, flag_values
from pilot.capture.options import IptablesOptions
from pilot.config.limits import DEFAULT_LIMITS, ParseLimits
from pilot.demo.options import DemoOptions, add_mesh_flags
from pilot.errors import PilotError
from pilot.inspect.commands import add_commands as add_operator_commands
from pilot.settings import Settings

if TYPE_CHECKING:  # pilot.ca imports cryptography and PyJWT: only `pilot token` pays for them
    from pilot.agent.options import AgentOptions
    from pilot.ca.token_command import TokenOptions

log = logging.getLogger("pilot.cli")

LOG_LEVELS = ("debug", "info", "warning", "error")

Options = TypeVar("Options")


@dataclass(frozen=True, slots=True)
class Command(Generic[Options]):
    """A subcommand: its typed options built from the parsed flags, and the handler that takes them.

    ``options`` raises ValueError for flags that contradict each other (a usage error, exit 2).
    """

    options: Callable[[argparse.Namespace], Options]
    handler: Callable[[Options], int]


@dataclass(frozen=True, slots=True)
class BootstrapOptions:
    node_id: str
    xds_address: str  # HOST:PORT
    delta: bool = False
    vhds: bool = False  # node metadata VHDS: virtual hosts over VHDS (needs delta)
    admin_port: int | None = None
    label: tuple[tuple[str, str], ...] = ()  # workload labels, sent as node metadata LABELS
    metadata: tuple[tuple[str, str], ...] = ()
    output: str = "json"  # or "yaml"
    service_account: str | None = None  # node metadata SERVICE_ACCOUNT
    interception: str | None = None  # node metadata INTERCEPTION_MODE: REDIRECT or NONE
    grpc: bool = False  # a gRPC xDS bootstrap for a proxyless gRPC application (pilot.grpc_bootstrap)
    cert_dir: Path | None = None  # --grpc: certificate_providers over the agent's files there


@dataclass(frozen=True, slots=True)
class ValidateOptions:
    files: tuple[str, ...] = ()  # files or folders; none: standard input
    limits: ParseLimits = DEFAULT_LIMITS
    grpc: bool = False  # warn on VirtualService fields proxyless gRPC clients cannot honour


class _CommandList(argparse.HelpFormatter):
    """``pilot --help``: each command's help on the line of its name. argparse measures subcommand
    names without the indent they are printed at, so a long one (``proxy-status``) wrapped."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action._get_subactions():
                width = (
                    len(self._format_action_invocation(sub))
                    + self._current_indent
                    + 2 * self._indent_increment
                )
                self._action_max_length = max(self._action_max_length, width)


class DefaultsOnce(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default in its help, once: not when the help already says it, nor when it is
    None or False (the help says what absence means)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        quiet = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or quiet or not action.option_strings:
            return text
        return super()._get_help_string(action)


def _namespaces(text: str) -> tuple[str, ...]:
    names = tuple(sorted({name.strip() for name in text.split(",") if name.strip()}))
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of namespaces")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pilot",
        description="An Istio-compatible service-mesh control plane and Envoy xDS server.",
        formatter_class=_CommandList,
    )
    parser.add_argument("--version", action="version", version=f"pilot {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_serve(commands)
    # Subcommands implemented elsewhere: their flags live here, their code is imported on use.
    _add_demo(commands)
    _add_bootstrap(commands)
    _add_validate(commands)
    _add_iptables(commands)
    _add_token(commands)
    add_operator_commands(commands, Command)  # proxy-status, proxy-config, analyze, diff, explain
    _add_agent(commands)
    # Room for more: add a _add_<name>(commands) that sets a `command_spec`.
    return parser


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    limits = _add_config_limits(serve, defaults)
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


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="a demo: pilot, Envoys, backends (--mesh: namespaces)",
        formatter_class=DefaultsOnce,
    )
    demo.add_argument(
        "--duration",
        type=flag_values.non_negative,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: until Ctrl-C)",
    )
    demo.add_argument(
        "--xds-port", type=flag_values.port, default=0, help="pilot's ADS port (0: any free port)"
    )
    demo.add_argument(
        "--http-port", type=flag_values.port, default=0, help="pilot's HTTP port (0: any free port)"
    )
    demo.add_argument(
        "--listen-port", type=flag_values.port, default=0, help="the Envoy listener port (0: any free port)"
    )
    demo.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="level of pilot's own logs")
    add_mesh_flags(demo)
    demo.set_defaults(command_spec=Command(demo_options_from, _demo))


def _add_bootstrap(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bootstrap = commands.add_parser(
        "bootstrap",
        help="print an Envoy bootstrap that points at pilot",
        formatter_class=DefaultsOnce,
    )
    bootstrap.add_argument(
        "--node-id",
        required=True,
        metavar="ID",
        help="Envoy node id, e.g. sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local",
    )
    bootstrap.add_argument("--xds-address", required=True, metavar="HOST:PORT", help="pilot's ADS address")
    bootstrap.add_argument("--delta", action="store_true", help="use delta (incremental) xDS")
    bootstrap.add_argument(
        "--vhds",
        action="store_true",
        help="with --delta: take virtual hosts over VHDS, so an edit sends only the virtual hosts it changed",
    )
    bootstrap.add_argument(
        "--admin-port",
        type=flag_values.port,
        default=None,
        metavar="N",
        help="Envoy admin port on 127.0.0.1 (default: no admin)",
    )
    bootstrap.add_argument(
        "--label",
        action="append",
        type=flag_values.key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a workload label, sent as node metadata LABELS (a router's Gateway "
        "selector matches these); repeatable",
    )
    bootstrap.add_argument(
        "--metadata",
        action="append",
        type=flag_values.key_value,
        default=[],
        metavar="KEY=VALUE",
        help="other node metadata, e.g. INTERCEPTION_MODE=REDIRECT; repeatable",
    )
    bootstrap.add_argument(
        "--service-account",
        default=None,
        metavar="NAME",
        help="the workload's service account, sent as node metadata SERVICE_ACCOUNT",
    )
    bootstrap.add_argument(
        "--interception",
        choices=("REDIRECT", "NONE"),
        default=None,
        help="how traffic reaches the proxy, sent as node metadata INTERCEPTION_MODE (absent: "
        "pilot treats the proxy as NONE, where Istio assumes REDIRECT)",
    )
    bootstrap.add_argument("--output", choices=("json", "yaml"), default="json", help="output format")
    bootstrap.add_argument(
        "--grpc",
        action="store_true",
        help="write the gRPC xDS bootstrap (GRPC_XDS_BOOTSTRAP) of a proxyless gRPC application "
        "instead; uses --node-id, --xds-address, --label and --metadata",
    )
    bootstrap.add_argument(
        "--cert-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --grpc: certificate_providers (file_watcher 'default') over the workload "
        "certificate files pilot agent writes there (cert-chain.pem, key.pem, root-cert.pem)",
    )
    bootstrap.set_defaults(command_spec=Command(bootstrap_options_from, _bootstrap))


def _add_config_limits(parser: argparse.ArgumentParser, defaults: Settings) -> argparse._ArgumentGroup:
    """The limits a config file and its objects are held to; ``serve`` and ``validate`` share them, so a
    file validates exactly when the server, given the same flags, would load it."""
    limits = parser.add_argument_group("limits (past one, a config file or object is refused with an error)")
    limits.add_argument(
        "--max-file-bytes",
        type=flag_values.positive,
        default=defaults.max_file_bytes,
        metavar="N",
        help="bytes of one config file",
    )
    limits.add_argument(
        "--max-objects-per-file",
        type=flag_values.positive,
        default=defaults.max_objects_per_file,
        metavar="N",
        help="objects in one file, counting kind: List items",
    )
    limits.add_argument(
        "--max-hosts-per-object",
        type=flag_values.positive,
        default=defaults.max_hosts_per_object,
        metavar="N",
        help="hosts of one object",
    )
    limits.add_argument(
        "--max-routes-per-object",
        type=flag_values.positive,
        default=defaults.max_routes_per_object,
        metavar="N",
        help="HTTP, TLS and TCP routes of one VirtualService",
    )
    limits.add_argument(
        "--max-yaml-depth",
        type=flag_values.positive,
        default=defaults.max_yaml_depth,
        metavar="N",
        help="nesting of one YAML document",
    )
    return limits


def _add_validate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    validate = commands.add_parser(
        "validate", help="check Istio YAML like istioctl validate (exit 1 on errors)"
    )
    validate.add_argument(
        "files", nargs="*", metavar="FILE", help="YAML/JSON files or folders; '-' or none: standard input"
    )
    validate.add_argument(
        "--grpc",
        action="store_true",
        help="the VirtualServices and DestinationRules serve proxyless gRPC clients, the "
        "AuthorizationPolicies select proxyless gRPC servers: warn on what gRPC ignores or fails",
    )
    _add_config_limits(validate, Settings())
    validate.set_defaults(command_spec=Command(validate_options_from, _validate))


def _add_iptables(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """istio-iptables' short flags; the defaults are what Istio's injector gives istio-init."""
    iptables = commands.add_parser(
        "iptables",
        help="a pod's capture rules, like istio-iptables",
        description="The nat rules Istio's istio-iptables installs in a pod, as iptables-restore input. "
        "Lists are comma-separated; '*' means all. IPv4 and REDIRECT mode only.",
        formatter_class=DefaultsOnce,
    )
    # (short, long, dest, default, help): istio-iptables' flags (tools/istio-iptables/pkg/cmd/root.go).
    istio_flags = (
        ("-p", "--envoy-port", "proxy_port", "15001", "outbound capture port"),
        ("-z", "--inbound-capture-port", "inbound_capture_port", "15006", "inbound capture port"),
        ("-e", "--inbound-tunnel-port", "inbound_tunnel_port", "15008", "tunnel port, never redirected"),
        ("-u", "--proxy-uid", "proxy_uid", "1337", "uids whose traffic is never captured"),
        ("-g", "--proxy-gid", "proxy_gid", "", "gids whose traffic is never captured (empty: the -u ids)"),
        (
            "-b",
            "--istio-inbound-ports",
            "inbound_ports",
            "*",
            "inbound ports redirected to the inbound capture port ('*': all, empty: none)",
        ),
        (
            "-d",
            "--istio-local-exclude-ports",
            "inbound_ports_exclude",
            "15090,15021,15020",
            "inbound ports not redirected (with -b '*')",
        ),
        (
            "-i",
            "--istio-service-cidr",
            "outbound_ip_ranges",
            "*",
            "outbound destinations redirected ('*': all, empty: none)",
        ),
        (
            "-x",
            "--istio-service-exclude-cidr",
            "outbound_ip_ranges_exclude",
            "",
            "outbound destinations not redirected",
        ),
        ("-q", "--istio-outbound-ports", "outbound_ports_include", "", "outbound ports always redirected"),
        (
            "-o",
            "--istio-local-outbound-ports-exclude",
            "outbound_ports_exclude",
            "",
            "outbound ports never redirected",
        ),
        (
            "-k",
            "--kube-virt-interfaces",
            "reroute_virtual_interfaces",
            "",
            "interfaces whose inbound traffic is treated as outbound",
        ),
        ("-c", "--istio-exclude-interfaces", "exclude_interfaces", "", "interfaces never captured"),
    )
    for short, long, dest, default, help_text in istio_flags:
        iptables.add_argument(short, long, dest=dest, default=default, help=help_text)
    iptables.add_argument(
        "-m",
        "--istio-inbound-interception-mode",
        dest="interception_mode",
        default="REDIRECT",
        choices=("REDIRECT",),
        help="inbound interception mode (TPROXY is not implemented)",
    )
    iptables.add_argument(
        "--apply",
        action="store_true",
        help="install the rules in the current network namespace "
        "(iptables-restore --noflush) instead of printing them",
    )
    iptables.set_defaults(command_spec=Command(iptables_options_from, _iptables))


def iptables_options_from(args: argparse.Namespace) -> IptablesOptions:
    """``pilot iptables`` flags as typed options (ValueError naming the flag of a bad value)."""
    from pilot.capture import command

    return command.options_from(args)


def _iptables(options: IptablesOptions) -> int:
    from pilot.capture import command

    return command.run(options)


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


def demo_options_from(args: argparse.Namespace) -> DemoOptions:
    return DemoOptions(
        duration=args.duration,
        xds_port=args.xds_port,
        http_port=args.http_port,
        listen_port=args.listen_port,
        mesh=args.mesh,
        requests=args.requests,
    )


def bootstrap_options_from(args: argparse.Namespace) -> BootstrapOptions:
    return BootstrapOptions(
        node_id=args.node_id,
        xds_address=args.xds_address,
        delta=args.delta,
        vhds=args.vhds,
        admin_port=args.admin_port,
        label=tuple(args.label),
        metadata=tuple(args.metadata),
        output=args.output,
        service_account=args.service_account,
        interception=args.interception,
        grpc=args.grpc,
        cert_dir=args.cert_dir,
    )


def validate_options_from(args: argparse.Namespace) -> ValidateOptions:
    limits = ParseLimits(
        file_bytes=args.max_file_bytes,
        objects_per_file=args.max_objects_per_file,
        hosts_per_object=args.max_hosts_per_object,
        routes_per_object=args.max_routes_per_object,
        depth=args.max_yaml_depth,
    )
    return ValidateOptions(files=tuple(args.files), limits=limits, grpc=args.grpc)


def _serve(settings: Settings) -> int:
    from pilot import app

    try:
        asyncio.run(app.run(settings))
    except PilotError as err:
        log.error("%s", err)
        return 1
    return 0


def _demo(options: DemoOptions) -> int:
    from pilot import demo

    return demo.run(options)


def _validate(options: ValidateOptions) -> int:
    from pilot import validate
    from pilot.translate.grpc_authz_warnings import grpc_authorization_warnings

    return validate.run(options, policy_warnings=grpc_authorization_warnings)


def _bootstrap(options: BootstrapOptions) -> int:
    if options.cert_dir is not None and not options.grpc:
        print(
            "pilot bootstrap: --cert-dir needs --grpc (Envoy gets its certificates over SDS)", file=sys.stderr
        )
        return 2
    if options.grpc:
        from pilot import grpc_bootstrap

        return grpc_bootstrap.run(options)
    from pilot import bootstrap

    return bootstrap.run(options)


def _add_token(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser(
        "token",
        help="a folder-mode service-account token for the mesh CA",
        description="Sign a JWT with Kubernetes service-account token claims with the token-signing key "
        "of the CA directory: the folder-mode stand-in for a projected service-account token.",
    )
    token.add_argument(
        "--ca-dir", type=Path, required=True, metavar="DIR", help="the CA directory of pilot serve"
    )
    token.add_argument("--namespace", required=True, metavar="NS")
    token.add_argument("--service-account", required=True, metavar="SA")
    token.add_argument(
        "--ttl", type=flag_values.duration, default="1h", help="lifetime, e.g. 1h, 30m, 90s (default 1h)"
    )
    token.add_argument("--audience", default="istio-ca", help="the aud claim (default: istio-ca)")
    token.set_defaults(command_spec=Command(token_options_from, _token))


def token_options_from(args: argparse.Namespace) -> TokenOptions:
    """ValueError (a usage error) for a namespace or service account Kubernetes would refuse."""
    from pilot.ca.identity import ServiceAccount
    from pilot.ca.token_command import TokenOptions

    account = ServiceAccount(args.namespace, args.service_account)
    return TokenOptions(args.ca_dir, account, args.ttl, args.audience)


def _token(options: TokenOptions) -> int:
    from pilot.ca import token_command

    try:
        return token_command.run(options)
    except PilotError as err:
        log.error("%s", err)
        return 1


def _add_agent(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # The flags and their typed options live in pilot.agent.options (no grpc there).
    from pilot.agent import options

    agent = commands.add_parser(
        "agent",
        help="a sidecar's entry point: certificate, SDS, Envoy",
        description="The pilot-agent role: get the workload certificate from pilot's CA with the token, "
        "serve it to Envoy over SDS, rotate it, proxy Envoy's ADS to pilot over TLS, run Envoy.",
    )
    options.add_arguments(agent)
    agent.set_defaults(command_spec=Command(options.options_from, _agent))


def _agent(options: AgentOptions) -> int:
    from pilot.agent import command

    return command.run(options)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pilot ARGS``; returns the exit code (argparse exits 2 itself on bad flags)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command[Any] = args.command_spec
    try:
        options = command.options(args)
    except ValueError as err:
        parser.error(str(err))
    if hasattr(args, "log_level"):
        from pilot import log as pilot_log

        pilot_log.configure(args.log_level.upper())
    try:
        return command.handler(options)
    except KeyboardInterrupt:
        # Ctrl-C is how an operator stops pilot in a terminal: not an error.
        print(file=sys.stderr)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
