"""A client of one cluster's Kubernetes API, through the official ``kubernetes`` client:
credentials (:meth:`KubeClient.connect`), a timeout on every request, list calls read page by
page, and every failure as one :class:`~gitedge.errors.KubeApiError`.

Every API failure becomes :class:`~gitedge.errors.KubeApiError` with the HTTP status and a reason
word (``Forbidden``, ``Conflict``, ``AlreadyExists``, ``NotFound``, ``Unreachable``, ...), its
message cut short and scrubbed of credentials. Reads ask for raw JSON (``_preload_content=False``)
and parse it with the pure functions of :mod:`gitedge.core.rollout.clusterstate`. What the agent
reads and writes through it: :mod:`gitedge.adapters.kube.cluster` (nodes, Plans, Jobs) and
:mod:`gitedge.adapters.kube.status` (its status ConfigMap and Events).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any, Self, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from gitedge.errors import KubeApiError, scrub

__all__ = ["KubeClient", "api_error"]

_PAGE = 500
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

T = TypeVar("T")


def api_error(what: str, e: ApiException) -> KubeApiError:
    status = int(e.status) if e.status else None
    reason = _REASONS.get(status or 0, "ApiError")
    message = str(e.reason or "")
    try:
        body = json.loads(e.body) if e.body else None
    except (ValueError, TypeError):
        body = None
    if isinstance(body, Mapping):
        word = body.get("reason")
        if isinstance(word, str) and word.isalpha() and word[:1].isupper():
            reason = word
        if isinstance(body.get("message"), str):
            message = body["message"]
    return KubeApiError(
        f"{what}: HTTP {status} {reason}: {scrub(message)}", status=status, reason=reason
    )


class KubeClient:
    """One cluster's API, for the agent. ``namespace`` holds the SUC Plans (``apply.namespace``);
    ``status_namespace`` holds the agent's status ConfigMap (the agent's own namespace)."""

    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        namespace: str = "system-upgrade",
        status_namespace: str = "gitedge-system",
        request_timeout: float = 30.0,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.status_namespace = status_namespace
        self._timeout = request_timeout
        self.core = k8s.CoreV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)
        self.batch = k8s.BatchV1Api(api)

    @classmethod
    def connect(
        cls,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str = "system-upgrade",
        status_namespace: str | None = None,
        request_timeout: float = 30.0,
    ) -> Self:
        """Credentials from ``kubeconfig`` when given, else the in-cluster service account when
        running in a pod, else ``$KUBECONFIG`` / ``~/.kube/config``. The status namespace
        defaults to ``$POD_NAMESPACE`` (the Deployment sets it), else ``gitedge-system``."""
        cfg = k8s.Configuration()
        try:
            if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            else:
                k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig,
                    context=context,
                    client_configuration=cfg,
                    persist_config=False,
                )
        except (ConfigException, OSError, ValueError, TypeError) as e:
            raise KubeApiError(
                f"cannot load Kubernetes credentials: {scrub(str(e))}", reason="NoCredentials"
            ) from None
        cfg.retries = urllib3.Retry(total=1, connect=1, read=0, redirect=0, status=0)
        return cls(
            k8s.ApiClient(cfg),
            namespace=namespace,
            status_namespace=status_namespace or os.environ.get("POD_NAMESPACE", "gitedge-system"),
            request_timeout=request_timeout,
        )

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ plumbing
    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        kwargs.setdefault("_request_timeout", self._timeout)
        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            raise api_error(what, e) from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise KubeApiError(
                f"{what}: the Kubernetes API cannot be reached: {scrub(type(e).__name__)}",
                reason="Unreachable",
            ) from None

    def call_json(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        response = self.call(what, fn, *args, _preload_content=False, **kwargs)
        try:
            return json.loads(response.data)
        except ValueError:
            raise KubeApiError(f"{what}: the API answered with something other than JSON") from None

    def list_items(self, what: str, fn: Callable[..., Any], *args: Any) -> list[Mapping[str, Any]]:
        """Every item of a list call, page by page."""
        out: list[Mapping[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": _PAGE}
            if token:
                kwargs["_continue"] = token
            page = self.call_json(what, fn, *args, **kwargs)
            out.extend(page.get("items") or ())
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return out
