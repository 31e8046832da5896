"""A small Kubernetes API emulator for tests, over real HTTP on 127.0.0.1, and a stand-in for the
system-upgrade-controller that works on it the way SUC does.

Why not ``kmock``: it installs, but (0.8) it is asyncio-only, keeps no ``resourceVersion`` (so no
409 on a stale update or a failed delete precondition) and has no label selectors; those are
exactly what the kube adapter's tests are about. This one is small and synchronous:

- resources: core/v1 ``nodes`` (cluster-scoped), ``configmaps``, ``events``, and
  ``plans.upgrade.cattle.io/v1`` (namespaced, with SUC's ``status`` subresource: a PUT on the
  Plan keeps the stored status); list (``labelSelector``: =, ==, !=, in, notin, exists, !exists;
  ``limit``/``continue`` paging), get, create (409 ``AlreadyExists``), replace (409 ``Conflict``
  on a stale ``metadata.resourceVersion``; Plans require one, as custom resources do), delete
  (404; 409 when ``preconditions.resourceVersion``/``uid`` do not match);
- bearer-token authentication (401) and RBAC authorisation (403) from the Role/ClusterRole and
  binding documents of ``deploy/`` for the agent's ServiceAccount: every test over this emulator
  also proves the shipped RBAC is enough, and :attr:`KubeEmulator.grants_used` shows it is no more
  than what is used;
- faults injected per verb/resource (any status, ``times`` in a row), hooks run just before a
  request is handled (to race a write), and a log of every request;
- discovery documents (``/api``, ``/apis``, ...) so ``kubectl`` can talk to it.

Plans written over HTTP (create, update) are checked against SUC's Plan CRD schema
(tests/plancrd.py; undeclared fields are errors, since a real API server would silently prune
them): an invalid Plan is refused with 422 ``Invalid``. ``old_suc=True`` stands for a cluster
whose SUC is older than v0.15.0: its CRD has no ``spec.window``, and the API server prunes it.
``jobs`` (batch/v1) and ``pods`` are stored for the SUC simulation (tests/sucsim.py), which works
on this store: SUC itself is no longer simulated here.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.gitserver import TlsFiles
from tests.plancrd import plan_errors, prune_for_old_suc

DONE = "plan.upgrade.cattle.io/"
HOSTNAME = "kubernetes.io/hostname"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


KINDS = {
    "nodes": Kind("", "v1", "nodes", "Node", False),
    "configmaps": Kind("", "v1", "configmaps", "ConfigMap", True),
    "events": Kind("", "v1", "events", "Event", True),
    "namespaces": Kind("", "v1", "namespaces", "Namespace", False),
    "serviceaccounts": Kind("", "v1", "serviceaccounts", "ServiceAccount", True),
    "persistentvolumeclaims": Kind(
        "", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True
    ),
    "plans": Kind("upgrade.cattle.io", "v1", "plans", "Plan", True),
    "jobs": Kind("batch", "v1", "jobs", "Job", True),
    "pods": Kind("", "v1", "pods", "Pod", True),
    "deployments": Kind("apps", "v1", "deployments", "Deployment", True),
    "roles": Kind("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    "clusterroles": Kind("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    "rolebindings": Kind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    "clusterrolebindings": Kind(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False
    ),
}


def node_object(
    name: str,
    *,
    kubelet: str,
    arch: str = "amd64",
    control_plane: bool = False,
    labels: Mapping[str, str] | None = None,
    hostname: bool = True,
) -> dict[str, Any]:
    all_labels = {"kubernetes.io/arch": arch, "kubernetes.io/os": "linux", **(labels or {})}
    if hostname:
        all_labels[HOSTNAME] = name
    if control_plane:
        all_labels[CONTROL_PLANE] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "status": {
            "nodeInfo": {"architecture": arch, "kubeletVersion": kubelet, "osImage": "Kairos"}
        },
    }


# ------------------------------------------------------------------------- label selectors

_REQ = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<nkey>[^\s,!=()]+)"
    r"|(?P<key>[^\s,!=()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<val>[^\s,()]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<vals>[^)]*)\))?)\s*(?:,|$)"
)


def parse_selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    reqs: list[Callable[[Mapping[str, str]], bool]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _REQ.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"bad label selector {text!r}")
        pos = m.end()
        if m["not"]:
            reqs.append(lambda labels, k=m["nkey"]: k not in labels)
        elif m["op"]:
            k, v, op = m["key"], m["val"], m["op"]
            if op == "!=":
                reqs.append(lambda labels, k=k, v=v: labels.get(k) != v)
            else:
                reqs.append(lambda labels, k=k, v=v: labels.get(k) == v)
        elif m["setop"]:
            k = m["key"]
            vals = {s.strip() for s in m["vals"].split(",") if s.strip()}
            if m["setop"] == "in":
                reqs.append(lambda labels, k=k, vals=vals: labels.get(k) in vals)
            else:
                reqs.append(lambda labels, k=k, vals=vals: labels.get(k) not in vals)
        else:
            reqs.append(lambda labels, k=m["key"]: k in labels)
    return lambda labels: all(r(labels) for r in reqs)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels/matchExpressions) against labels."""
    selector = selector or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or ():
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        ok = {
            "In": labels.get(k) in vals,
            "NotIn": labels.get(k) not in vals,
            "Exists": k in labels,
            "DoesNotExist": k not in labels,
        }[op]
        if not ok:
            return False
    return True


# ------------------------------------------------------------------------------------ RBAC


@dataclass(frozen=True)
class Grant:
    """One (apiGroup, resource, verb) a Role/ClusterRole rule gives, where."""

    group: str
    resource: str
    verb: str
    namespace: str | None  # None: cluster-wide
    names: tuple[str, ...] = ()


def load_rbac(
    docs: Iterable[Mapping[str, Any]], *, namespace: str, account: str
) -> tuple[Grant, ...]:
    """The grants the documents give ServiceAccount ``namespace/account``."""
    docs = [d for d in docs if isinstance(d, Mapping)]
    roles = {
        (d["kind"], (d["metadata"].get("namespace") or ""), d["metadata"]["name"]): d
        for d in docs
        if d.get("kind") in ("Role", "ClusterRole")
    }
    grants: list[Grant] = []
    for b in docs:
        if b.get("kind") not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(
            s.get("kind") == "ServiceAccount"
            and s.get("name") == account
            and s.get("namespace") == namespace
            for s in b.get("subjects") or ()
        ):
            continue
        ref = b["roleRef"]
        bound_ns = b["metadata"].get("namespace") if b["kind"] == "RoleBinding" else None
        role_ns = (bound_ns or "") if ref["kind"] == "Role" else ""
        role = roles.get((ref["kind"], role_ns, ref["name"]))
        if role is None:
            raise ValueError(f"{b['kind']} {b['metadata']['name']} binds a missing {ref}")
        for rule in role.get("rules") or ():
            for group in rule.get("apiGroups") or ():
                for resource in rule.get("resources") or ():
                    for verb in rule.get("verbs") or ():
                        grants.append(
                            Grant(
                                group,
                                resource,
                                verb,
                                bound_ns,
                                tuple(rule.get("resourceNames") or ()),
                            )
                        )
    return tuple(grants)


def load_deploy_rbac(deploy: Path) -> tuple[Grant, ...]:
    docs: list[Mapping[str, Any]] = []
    for path in sorted(deploy.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    accounts = [d for d in docs if d.get("kind") == "ServiceAccount"]
    assert len(accounts) == 1, "deploy/ has one ServiceAccount"
    sa = accounts[0]["metadata"]
    return load_rbac(docs, namespace=sa["namespace"], account=sa["name"])


# ---------------------------------------------------------------------------------- server


@dataclass
class Fault:
    method: str
    resource: str
    status: int
    times: int = 1
    name: str | None = None
    message: str = "injected failure"


@dataclass
class Request:
    method: str
    path: str
    verb: str
    resource: str
    namespace: str | None
    name: str | None
    code: int = 0
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


class KubeEmulator:
    """Start with ``with KubeEmulator(...) as api:``; ``api.url`` is the server."""

    def __init__(
        self,
        *,
        token: str | None = "test-token",
        grants: Iterable[Grant] | None = None,
        tls: TlsFiles | None = None,
        old_suc: bool = False,
    ) -> None:
        self.token = token
        self.old_suc = old_suc
        self.tls = tls
        self.grants = tuple(grants) if grants is not None else None
        self.grants_used: set[Grant] = set()
        self.lock = threading.RLock()
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.revision = 100
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.hooks: list[tuple[str, str, Callable[[KubeEmulator], None]]] = []
        # keep-alive connections a client never closed: each holds a handler thread blocked
        # on its next request, for as long as that client lives (ended in __exit__)
        self.connections: set[socket.socket] = set()
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()  # headers and body go out in two writes: no Nagle delay
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with emulator.lock:
                    emulator.connections.add(self.connection)

            def finish(self) -> None:
                with emulator.lock:
                    emulator.connections.discard(self.connection)
                super().finish()

            def _handle(self) -> None:
                emulator._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:  # HTTPS as a real API server (what in-cluster config expects)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> KubeEmulator:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        with self.lock:
            live = list(self.connections)
        for conn in live:  # their handler threads read end-of-file and end
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def kubeconfig(self, path: Path, *, token: str | None = None) -> Path:
        token = token if token is not None else self.token
        user: dict[str, Any] = {"token": token} if token else {}
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "emu", "cluster": {"server": self.url}}],
                    "users": [{"name": "agent", "user": user}],
                    "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "agent"}}],
                    "current-context": "emu",
                }
            )
        )
        return path

    # ----------------------------------------------------------------------- store helpers

    def _bump(self) -> str:
        self.revision += 1
        return str(self.revision)

    def put(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store an object as is (test set-up: nodes, foreign Plans), with a new version."""
        with self.lock:
            obj = copy.deepcopy(dict(obj))
            kind = next(k for k in KINDS.values() if k.kind == obj["kind"])
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["resourceVersion"] = self._bump()
            meta.setdefault("generation", 1)
            if kind.plural == "plans":  # set-up Plans meet the CRD too
                status = obj.pop("status", None)
                obj = self._admit_plan(obj)
                if status is not None:
                    obj["status"] = status
            key = (kind.plural, meta.get("namespace") or "", meta["name"])
            self.store[key] = obj
            return copy.deepcopy(obj)

    def get(self, resource: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        with self.lock:
            obj = self.store.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def items(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                copy.deepcopy(o)
                for (r, ns, _), o in sorted(self.store.items())
                if r == resource and (namespace is None or ns == namespace)
            ]

    def modify(
        self, resource: str, name: str, namespace: str, fn: Callable[[dict[str, Any]], None]
    ):
        """Change a stored object in place (a concurrent writer, SUC, a kubelet); new version."""
        with self.lock:
            obj = self.store[(resource, namespace, name)]
            fn(obj)
            if resource == "plans":
                errors = plan_errors(obj)
                assert not errors, f"Plan {name} modified out of SUC's CRD schema: {errors}"
            obj["metadata"]["resourceVersion"] = self._bump()

    def add_node(self, name: str, **kw: Any) -> None:
        self.put(node_object(name, **kw))

    def set_kubelet(self, node: str, version: str) -> None:
        self.modify(
            "nodes", node, "", lambda o: o["status"]["nodeInfo"].update(kubeletVersion=version)
        )

    def fail(self, method: str, resource: str, status: int, **kw: Any) -> Fault:
        fault = Fault(method.upper(), resource, status, **kw)
        with self.lock:
            self.faults.append(fault)
        return fault

    def before(self, method: str, resource: str, hook: Callable[[KubeEmulator], None]) -> None:
        """Run ``hook`` once, just before the next ``method`` on ``resource`` is handled."""
        with self.lock:
            self.hooks.append((method.upper(), resource, hook))

    def writes(self, resource: str | None = None) -> list[Request]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.method != "GET" and (resource is None or r.resource == resource)
            ]

    # -------------------------------------------------------------------------- HTTP side

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        req = Request(
            h.command,
            url.path,
            "",
            "",
            None,
            None,
            headers={k.title(): v for k, v in h.headers.items()},
        )
        try:
            code, body = self._route(req, url.path, query, raw)
        except ApiError as e:
            code, body = e.code, self._status(e.code, e.reason, e.message)
        req.code = code
        with self.lock:
            self.requests.append(req)
        data = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def _status(code: int, reason: str, message: str) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure" if code >= 400 else "Success",
            "message": message,
            "reason": reason,
            "code": code,
        }

    def _route(
        self, req: Request, path: str, query: Mapping[str, str], raw: bytes
    ) -> tuple[int, Any]:
        scheme, _, token = (req.headers.get("Authorization") or "").partition(" ")
        if self.token is not None and (scheme.lower() != "bearer" or token != self.token):
            raise ApiError(401, "Unauthorized", "Unauthorized")
        discovery = self._discovery(path)
        if discovery is not None:
            req.verb, req.resource = "get", "discovery"
            return 200, discovery
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            rest = parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            rest = parts[3:]
        else:
            raise ApiError(404, "NotFound", f"the server could not find {path}")
        namespace = None
        if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
            namespace, rest = rest[1], rest[2:]
        if not rest or rest[0] not in KINDS or len(rest) > 2:
            raise ApiError(404, "NotFound", f"the server could not find {path}")
        kind = KINDS[rest[0]]
        name = rest[1] if len(rest) == 2 else None
        req.resource, req.namespace, req.name = kind.plural, namespace, name
        req.verb = {
            "GET": "get" if name else "list",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }[req.method]
        self._authorize(req, kind)
        with self.lock:
            for i, (method, resource, hook) in enumerate(self.hooks):
                if method == req.method and resource == kind.plural:
                    del self.hooks[i]
                    hook(self)
                    break
            for fault in self.faults:
                if (
                    fault.times > 0
                    and fault.method == req.method
                    and fault.resource == kind.plural
                    and (fault.name is None or fault.name == name)
                ):
                    fault.times -= 1
                    # like some proxies, echo the request (incl. credentials) into the error
                    echo = f"{fault.message}; request {req.method} {path} Authorization: {req.headers.get('Authorization')}"
                    raise ApiError(
                        fault.status,
                        "InternalError"
                        if fault.status >= 500
                        else "Forbidden"
                        if fault.status == 403
                        else "BadRequest",
                        echo,
                    )
            body = json.loads(raw) if raw else None
            return self._crud(req, kind, namespace or "", name, query, body)

    def _authorize(self, req: Request, kind: Kind) -> None:
        if self.grants is None:
            return
        for g in self.grants:
            if (
                g.group in (kind.group, "*")
                and g.resource in (kind.plural, "*")
                and g.verb in (req.verb, "*")
                and (g.namespace is None or g.namespace == req.namespace)
                and (not g.names or (req.name in g.names and req.verb not in ("create", "list")))
            ):
                with self.lock:
                    self.grants_used.add(g)
                return
        where = f' in the namespace "{req.namespace}"' if req.namespace else " at the cluster scope"
        raise ApiError(
            403,
            "Forbidden",
            f'{kind.plural}.{kind.group or ""} "{req.name or ""}" is forbidden: User '
            f'"system:serviceaccount:gitedge" cannot {req.verb} resource "{kind.plural}" in API '
            f'group "{kind.group}"{where}',
        )

    def _crud(
        self,
        req: Request,
        kind: Kind,
        ns: str,
        name: str | None,
        query: Mapping[str, str],
        body: Any,
    ) -> tuple[int, Any]:
        if kind.namespaced and not ns and req.verb != "list":
            raise ApiError(404, "NotFound", "namespace required")
        key = (kind.plural, ns, name or "")
        if req.verb == "list":
            match = parse_selector(query.get("labelSelector", ""))
            items = [
                copy.deepcopy(o)
                for (r, ons, _), o in sorted(self.store.items())
                if r == kind.plural
                and (not ns or ons == ns)
                and match(o["metadata"].get("labels") or {})
            ]
            limit = int(query.get("limit") or 0)
            start = int(query.get("continue") or 0)
            meta: dict[str, Any] = {"resourceVersion": str(self.revision)}
            if limit and start + limit < len(items):
                meta["continue"] = str(start + limit)
            page = items[start : start + limit] if limit else items[start:]
            return 200, {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": meta,
                "items": page,
            }
        if req.verb == "get":
            obj = self.store.get(key)
            if obj is None:
                raise ApiError(404, "NotFound", f'{kind.plural} "{name}" not found')
            return 200, copy.deepcopy(obj)
        if req.verb == "create":
            if not isinstance(body, dict) or not (body.get("metadata") or {}).get("name"):
                raise ApiError(422, "Invalid", "metadata.name: Required value")
            name = body["metadata"]["name"]
            if kind.plural == "events" and not body.get("involvedObject"):
                raise ApiError(422, "Invalid", "involvedObject: Required value")
            key = (kind.plural, ns, name)
            if key in self.store:
                raise ApiError(409, "AlreadyExists", f'{kind.plural} "{name}" already exists')
            obj = copy.deepcopy(body)
            meta = obj["metadata"]
            meta.pop("resourceVersion", None)
            meta.update(uid=str(uuid.uuid4()), resourceVersion=self._bump(), generation=1)
            if kind.namespaced:
                meta["namespace"] = ns
            obj.setdefault("apiVersion", kind.api_version)
            obj.setdefault("kind", kind.kind)
            if kind.plural == "plans":
                obj.pop("status", None)
                obj = self._admit_plan(obj)
            self.store[key] = obj
            return 201, copy.deepcopy(obj)
        if req.verb == "update":
            old = self.store.get(key)
            if old is None:
                raise ApiError(404, "NotFound", f'{kind.plural} "{name}" not found')
            if not isinstance(body, dict) or body.get("metadata", {}).get("name") != name:
                raise ApiError(400, "BadRequest", "the name in the body does not match the URL")
            rv = body["metadata"].get("resourceVersion")
            if not rv and kind.plural == "plans":
                raise ApiError(
                    422,
                    "Invalid",
                    "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                )
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind.plural}.{kind.group} "{name}": the '
                    "object has been modified; please apply your changes to the latest version "
                    "and try again",
                )
            obj = copy.deepcopy(body)
            meta = obj["metadata"]
            for k in ("uid", "creationTimestamp"):
                if k in old["metadata"]:
                    meta[k] = old["metadata"][k]
            meta["namespace"] = ns if kind.namespaced else meta.get("namespace")
            if not kind.namespaced:
                meta.pop("namespace", None)
            changed = obj.get("spec") != old.get("spec")
            meta["generation"] = old["metadata"].get("generation", 1) + (1 if changed else 0)
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            if kind.plural == "plans":  # status subresource: a PUT cannot change status
                obj.pop("status", None)
                obj = self._admit_plan(obj)
                if "status" in old:
                    obj["status"] = copy.deepcopy(old["status"])
            if obj == old:
                # apiserver's GuaranteedUpdate: an update that changes nothing is not written:
                # same resourceVersion, no watch event (so SUC's UniqueApplyForResourceVersion
                # does not apply the Plan's Jobs again)
                return 200, copy.deepcopy(old)
            obj["metadata"]["resourceVersion"] = self._bump()
            self.store[key] = obj
            return 200, copy.deepcopy(obj)
        if req.verb == "delete":
            old = self.store.get(key)
            if old is None:
                raise ApiError(404, "NotFound", f'{kind.plural} "{name}" not found')
            pre = (body or {}).get("preconditions") or {}
            if (
                pre.get("resourceVersion")
                and pre["resourceVersion"] != old["metadata"]["resourceVersion"]
            ):
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind.plural} "{name}": the '
                    f"ResourceVersion in the precondition ({pre['resourceVersion']}) does not "
                    f"match the ResourceVersion in record ({old['metadata']['resourceVersion']})",
                )
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise ApiError(409, "Conflict", "the UID in the precondition does not match")
            del self.store[key]
            self._bump()
            return 200, self._status(200, "", "") | {"details": {"name": name, "kind": kind.plural}}
        raise ApiError(405, "MethodNotAllowed", f"{req.verb} is not supported here")

    def _admit_plan(self, obj: dict[str, Any]) -> dict[str, Any]:
        """What the API server does with a Plan before storing it: with an old SUC's CRD
        (< v0.15.0) ``spec.window`` is pruned; then the CRD schema check (422 when invalid)."""
        if self.old_suc:
            obj = prune_for_old_suc(obj)
        errors = plan_errors(obj)
        if errors:
            raise ApiError(
                422,
                "Invalid",
                f'Plan.upgrade.cattle.io "{obj["metadata"]["name"]}" is invalid: '
                + "; ".join(errors),
            )
        return obj

    def _discovery(self, path: str) -> Any:
        path = path.rstrip("/")
        groups: dict[str, list[Kind]] = {}
        for k in KINDS.values():
            groups.setdefault(k.api_version, []).append(k)

        def resources(api_version: str) -> dict[str, Any]:
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": api_version,
                "resources": [
                    {
                        "name": k.plural,
                        "singularName": k.kind.lower(),
                        "namespaced": k.namespaced,
                        "kind": k.kind,
                        "verbs": ["create", "delete", "get", "list", "patch", "update"],
                    }
                    for k in groups[api_version]
                ],
            }

        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/api/v1":
            return resources("v1")
        if path == "/apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": av.split("/")[0],
                        "versions": [{"groupVersion": av, "version": av.split("/")[1]}],
                        "preferredVersion": {"groupVersion": av, "version": av.split("/")[1]},
                    }
                    for av in sorted(groups)
                    if "/" in av
                ],
            }
        if path.startswith("/apis/") and path.count("/") == 3 and path[6:] in groups:
            return resources(path[6:])
        if path == "/version":
            return {"major": "1", "minor": "30", "gitVersion": "v1.30.6+k3s1"}
        return None
