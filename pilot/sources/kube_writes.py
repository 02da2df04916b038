"""Writes to the Kubernetes API server through the client the watches use (pilot.sources.kube):
create a TokenReview, create or update a ConfigMap, replace an object's status (and read it again
after a conflict). Blocking: call from a thread.

The same ``kubernetes.client.ApiClient`` as the reflectors (``load_api_client``), so a write carries
the same credentials, TLS and proxy settings as a watch; answers are decoded as the reflector does
(``read_json``: an ApiError with the Status message for any non-2xx).
"""

from __future__ import annotations

from typing import Any

from pilot.sources.kube_api import WatchOptions, get_json, read_json

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
NAMESPACES = "/api/v1/namespaces"


def send_json(api_client: Any, method: str, path: str, body: dict[str, Any], options: WatchOptions) -> Any:
    """``method`` (POST, PUT) ``body`` to ``path``; the decoded answer, ApiError for an error status."""
    # The client encodes the body as JSON itself (for Content-Type application/json).
    method, url, headers, data, _ = api_client.param_serialize(
        method,
        path,
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    timeout = (options.connect_timeout, options.request_timeout)
    response = api_client.call_api(method, url, header_params=headers, body=data, _request_timeout=timeout)
    return read_json(response.response)


def review_token(api_client: Any, token: str, audiences: list[str], options: WatchOptions) -> dict[str, Any]:
    """The ``status`` of a TokenReview of ``token`` for ``audiences`` (authenticated, user, audiences,
    error), as the API server answers it."""
    review = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": audiences},
    }
    answer = send_json(api_client, "POST", TOKEN_REVIEWS, review, options)
    status = answer.get("status") if isinstance(answer, dict) else None
    return status if isinstance(status, dict) else {}


def get_object(api_client: Any, path: str, options: WatchOptions) -> dict[str, Any] | None:
    """The object at ``path`` as the API server holds it now; None when it is gone (404)."""
    found = get_json(api_client, path, options)
    return found if isinstance(found, dict) else None
