"""Trust policies: the signers and verify mode a ``.gitedge/trust.yaml`` (or the bootstrap pinned
at install) puts in force (:class:`Policy`, :class:`PolicySigner`), read from YAML
(:func:`policy_from_yaml`, :func:`parse_trust_policy`) or from the validated model
(:func:`policy_from_model`). What a policy decides: :mod:`gitedge.core.trust.decision`.

Pure: no I/O. A file in its plainest form is read without importing the models (pydantic costs
a fifth of a second at start-up, as much as verifying 2,000 signatures).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Literal

from gitedge.core.fleet.files import TRUST_PATH
from gitedge.core.fleet.yamldoc import parse_documents, validation_problems

if TYPE_CHECKING:
    from gitedge.core.fleet.model import TrustPolicy

Role = Literal["release", "admin"]

VerifyMode = Literal["all", "first-parent"]

__all__ = [
    "Policy",
    "PolicySigner",
    "Role",
    "VerifyMode",
    "parse_trust_policy",
    "policy_from_model",
    "policy_from_yaml",
]


@dataclass(frozen=True)
class PolicySigner:
    name: str
    key_text: str
    roles: frozenset[Role]
    valid_after: datetime | None = None
    valid_before: datetime | None = None
    namespaces: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Policy:
    """A trust policy in force: its signers and verify mode. ``source`` says where it came from
    (``bootstrap:/etc/gitedge/trust`` or ``.gitedge/trust.yaml@<blob>``); ``digest`` identifies
    its content, so caches can tell two policies apart."""

    signers: tuple[PolicySigner, ...]
    verify: VerifyMode = "all"
    source: str = ""
    digest: str = ""

    def signer(self, name: str | None) -> PolicySigner | None:
        return self._by_name.get(name)

    @cached_property
    def _by_name(self) -> dict[str | None, PolicySigner]:
        return {s.name: s for s in reversed(self.signers)}  # the first of a name wins


def policy_from_model(model: TrustPolicy, *, source: str, data: bytes) -> Policy:
    signers = tuple(
        PolicySigner(
            name=s.name,
            key_text=s.key,
            roles=frozenset(s.roles),
            valid_after=s.valid_after,
            valid_before=s.valid_before,
        )
        for s in model.spec.signers
    )
    return Policy(signers, model.spec.verify, source, _digest(data))


def parse_trust_policy(data: bytes, *, path: str = TRUST_PATH) -> TrustPolicy:
    """Parse a TrustPolicy file. Raises ValueError with ``path:line: message`` lines."""
    # The models (pydantic) take a fifth of a second to import, and `gitedge verify` starts its
    # signature workers before it needs them: imported on first use.
    from pydantic import ValidationError  # lazy: start-up time (see above)

    from gitedge.core.fleet.model import TrustPolicy  # lazy: start-up time (pydantic models)

    docs, problems = parse_documents(data, path=path)
    if not problems and len(docs) != 1:
        raise ValueError(f"{path}:1: a trust file holds exactly one TrustPolicy, not {len(docs)}")
    if problems:
        raise ValueError("\n".join(map(str, problems)))
    doc = docs[0]
    if not isinstance(doc.value, dict) or doc.value.get("kind") != "TrustPolicy":
        raise ValueError(f"{path}:{doc.line}: expected kind TrustPolicy")
    try:
        return TrustPolicy.model_validate(doc.value)
    except ValidationError as e:
        lines = validation_problems(
            e, path=path, node=doc.node, prefix="TrustPolicy", model=TrustPolicy
        )
        raise ValueError("\n".join(map(str, lines))) from None


def policy_from_yaml(data: bytes, *, source: str, path: str = TRUST_PATH) -> Policy:
    """The :class:`Policy` of a TrustPolicy file: :func:`parse_trust_policy`, then
    :func:`policy_from_model`. Raises ValueError with ``path:line: message`` lines.

    Speed: importing the models (pydantic) costs a fifth of a second, as much as verifying
    2,000 signatures. A file in the plainest form (:func:`_plain_signers`: exactly the required
    fields, plain strings, no validity times) is read without them; it is one the models accept,
    with the same result (a test holds the two to that). Anything else, including every file
    with a problem, goes through the models and gets their messages."""

    docs, problems = parse_documents(data, path=path)
    plain = _plain_signers(docs[0].value) if len(docs) == 1 and not problems else None
    if plain is not None:
        return Policy(plain[0], plain[1], source, _digest(data))
    return policy_from_model(parse_trust_policy(data, path=path), source=source, data=data)


_API_VERSION = "gitedge.io/v1alpha1"
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_ROLES = frozenset({"release", "admin"})


def _plain_signers(doc: object) -> tuple[tuple[PolicySigner, ...], VerifyMode] | None:
    """The signers and verify mode of a TrustPolicy document written in its plainest form, or
    None. Plainest: the keys apiVersion, kind, metadata (name only) and spec (signers, optional
    verify); each signer exactly name, key and roles; every value a plain non-empty string or a
    list of them; names unique. Every such document validates as a ``fleet.TrustPolicy`` (this
    is stricter than the models on each point), so reading it here changes nothing."""
    if type(doc) is not dict or doc.keys() != {"apiVersion", "kind", "metadata", "spec"}:
        return None
    meta, spec = doc["metadata"], doc["spec"]
    if doc["apiVersion"] != _API_VERSION or doc["kind"] != "TrustPolicy":
        return None
    if type(meta) is not dict or meta.keys() != {"name"} or not _is_label(meta["name"]):
        return None
    if type(spec) is not dict or not {"signers"} <= spec.keys() <= {"signers", "verify"}:
        return None
    verify = spec.get("verify", "all")
    entries = spec["signers"]
    if type(verify) is not str or verify not in ("all", "first-parent"):
        return None
    if type(entries) is not list or not entries:
        return None
    signers: list[PolicySigner] = []
    for e in entries:
        if type(e) is not dict or e.keys() != {"name", "key", "roles"}:
            return None
        name, key, roles = e["name"], e["key"], e["roles"]
        if type(name) is not str or type(key) is not str or not name or not key:
            return None
        if type(roles) is not list or not roles:
            return None
        if any(type(r) is not str or r not in _ROLES for r in roles):
            return None
        if any(s.name == name for s in signers):
            return None
        signers.append(PolicySigner(name=name, key_text=key, roles=frozenset(roles)))
    return tuple(signers), "all" if verify == "all" else "first-parent"


def _is_label(name: object) -> bool:
    return type(name) is str and _DNS1123_LABEL.fullmatch(name) is not None


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
