"""``pilot bootstrap``: its flags, their BootstrapOptions, and the handler that prints an Envoy or gRPC
bootstrap (pilot.bootstrap.run, pilot.grpc_bootstrap.run)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from pilot import flag_values
from pilot.cli.command import Command, Subcommands
from pilot.cli.help_format import DefaultsOnce


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


def add_bootstrap(commands: Subcommands) -> None:
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
