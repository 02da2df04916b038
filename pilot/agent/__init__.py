"""``pilot agent``: the pilot-agent role beside each Envoy (Istio's pkg/istio-agent).

It makes the workload's private key, gets a certificate from pilot's CA with the workload's
service-account token, serves it to Envoy over SDS on a Unix socket, renews it before it expires,
proxies Envoy's ADS to pilot's secure port over TLS with the token, writes Envoy's bootstrap and
runs Envoy as its child. See docs/agent.md.

Modules: ``options`` (the flags, no grpc), ``workload_key`` (key, CSR, the files in the work
directory), ``control_plane`` (the TLS channel to pilot and the bearer token), ``ca_client``
(CreateCertificate), ``secret_cache`` (the current secret and its rotation), ``sds`` (the SDS
server), ``xds_proxy`` (the ADS proxy), ``envoy_process`` (the child), ``command`` (``run``).
"""
