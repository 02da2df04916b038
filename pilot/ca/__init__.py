"""The mesh CA (istiod's Citadel role): a root or the operator's cacerts in ``--ca-dir``, workload
certificates with SPIFFE ids signed from CSRs, folder-mode service-account tokens, and Istio's
``IstioCertificateService`` on the secure port.

Modules: ``identity`` (service accounts, SPIFFE ids), ``directory`` (the CA directory's files),
``authority`` (the CA's key and chain), ``workload_certificate`` (leaves and CSR checks), ``tokens``
(authenticators), ``token_command`` (``pilot token``), ``csr_metrics``; ``csr_service`` and
``server_credentials`` are the only ones that import grpc.
"""
