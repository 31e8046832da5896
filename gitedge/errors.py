"""The one exception tree of gitedge.

Errors are grouped by what happens next, not by where they come from::

    GitEdgeError
    ├── UsageError                 the command line is wrong (exit 2)
    ├── Stalled                    a person must act; retrying changes nothing
    │   ├── InvalidInput           a file is wrong; carries Problems (path:line: message)
    │   │   └── InvalidFleetRepo   the fleet repo (or a cluster/agent file) does not validate
    │   │       └── AgentTooOld    it uses only kinds/fields newer than this agent
    │   ├── SelectorError          a label selector or label is malformed
    │   ├── WindowError            a maintenance window cannot be evaluated
    │   ├── VersionError           a K3s version string is malformed
    │   │   └── UpgradePathError   no allowed path (missing minor, downgrade): says what to add
    │   ├── AmbiguousTarget        two top-priority targets disagree on a component
    │   ├── TrustError             the trust policy or a bootstrap trust file is unusable
    │   ├── VerificationFailed     a commit failed verification (commit id + reason word)
    │   ├── RollbackRefused        the tracked branch does not descend from the last verified commit
    │   ├── ImageNotFound          an image (or one of its blobs) is not in the registry
    │   ├── DigestMismatch         content does not hash to its digest, or is cut short
    │   ├── InvalidImage           a manifest is malformed, unsupported, or lacks an asked platform
    │   ├── RegistryAuthError      a registry refused our credentials, or wants some we do not have
    │   ├── RegistryRefused        a registry rejected a request for a reason retrying won't fix
    │   ├── StateError             the state dir cannot be used (corrupt, locked, newer gitedge)
    │   ├── ReportError            a pushed status report cannot be read
    │   ├── Malformed              wire data (SSHSIG, bundle index, registry answer) does not parse
    │   ├── TooLarge               an HTTP body is larger than its cap
    │   ├── WorkerFailed           a forked worker died or raised (adapters/forkpool.py)
    │   └── YamlProblem            one YAML node is wrong (turned into a Problem with its line)
    ├── Cancelled                  not an error: another transfer of the same mirror failed
    ├── Waiting                    nothing is wrong; try again after ``retry_after`` seconds
    └── Transient                  I/O failed (network, 5xx, dropped connection); retry with backoff
        ├── TooSlow                an HTTP body came slower than the minimum rate
        ├── SourceUnavailable      the git source could not be reached or read
        ├── RegistryUnavailable    a registry could not be reached, or kept failing (5xx, drops)
        └── KubeApiError           the Kubernetes API failed or refused a request (status code kept)

Every message names the file, commit or image concerned. Messages never carry secrets: text that
comes from remote peers goes through :func:`scrub` before it is put in an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one input file, printed as ``path:line: message``."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line > 0 else self.path
        return f"{where}: {self.message}"


class GitEdgeError(Exception):
    """Root of every error gitedge raises on purpose."""


class UsageError(GitEdgeError):
    """The command line is wrong."""


class Stalled(GitEdgeError):
    """A person must act (fix the repo, sign the commit, add a release); retrying will not help."""


class InvalidInput(Stalled):
    """One or more input files are invalid; ``problems`` lists each as ``path:line: message``."""

    def __init__(
        self,
        problems: list[Problem] | tuple[Problem, ...],
        summary: str = "",
        *,
        dependents: list[Problem] | tuple[Problem, ...] = (),
    ) -> None:
        # causes first; ``dependents`` (a reference to a broken resource) after, pointing at it
        self.problems: tuple[Problem, ...] = (*sorted(problems), *sorted(dependents))
        head = summary or f"{len(self.problems)} problem(s)"
        super().__init__("\n".join([head, *(str(p) for p in self.problems)]))


class InvalidFleetRepo(InvalidInput):
    """The fleet repo (or a cluster identity / agent config) does not validate."""


class AgentTooOld(InvalidFleetRepo):
    """A commit uses kinds or fields newer than this agent (and nothing else is wrong)."""


class DigestRequired(InvalidInput):
    """The fleet names an image by tag only while TrustPolicy ``images.requireDigest`` is on
    (``problems`` names each file, line and image; ``gitedge pin`` adds the digests)."""


class SelectorError(Stalled):
    """A label selector, label key or label value is malformed."""


class WindowError(Stalled):
    """A maintenance window is malformed or cannot be evaluated."""


class VersionError(Stalled):
    """A K3s version string is malformed."""


class UpgradePathError(VersionError):
    """There is no allowed upgrade path (a minor is missing, or it would be a downgrade)."""


class AmbiguousTarget(Stalled):
    """Two targets of the same top priority select a cluster and set a component differently."""

    def __init__(
        self,
        *,
        component: str,
        cluster: str,
        targets: tuple[str, str],
        detail: str,
        where: tuple[str, str] | None = None,
    ) -> None:
        self.component = component
        self.cluster = cluster
        self.targets = targets
        at = f" (at {where[0]} and {where[1]})" if where else ""
        super().__init__(
            f"AmbiguousTarget: targets {targets[0]!r} and {targets[1]!r}{at} both select cluster "
            f"{cluster!r} with the same priority but set {component} differently ({detail}); "
            "give one a higher priority"
        )


class TrustError(Stalled):
    """A trust policy or bootstrap trust file cannot be used."""


class VerificationFailed(Stalled):
    """A commit failed verification; ``reason`` is one of the reason words of DESIGN.md 5."""

    def __init__(self, *, commit: str, reason: str, detail: str = "") -> None:
        self.commit = commit
        self.reason = reason
        self.detail = detail
        msg = f"commit {commit}: {reason}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class RollbackRefused(Stalled):
    """The tracked branch does not descend from the last verified commit."""

    def __init__(self, *, last_verified: str, offered: str, detail: str = "") -> None:
        self.last_verified = last_verified
        self.offered = offered
        super().__init__(
            f"{offered} does not descend from the last verified commit {last_verified}"
            + (f" ({detail})" if detail else "")
            + f". To undo a change, commit a signed revert on top of {last_verified}; if the "
            "history was rewritten on purpose, accept it on the site with `gitedge "
            f"accept-history --config FILE --commit {offered}` (docs/site-setup.md)"
        )


class ImageNotFound(Stalled):
    """An image's manifest, or one of its blobs, is not in the registry (or layout) named."""


class DigestMismatch(Stalled):
    """Content does not hash to the digest that names it, or is shorter/longer than described.

    Nothing is ever stored under ``digest`` when this is raised: the copy refuses before commit.
    """

    def __init__(self, *, image: str, digest: str, detail: str) -> None:
        self.image = image
        self.digest = digest
        super().__init__(f"image {image}: {digest}: {detail}; refused, nothing stored")


class ImageSignatureRefused(Stalled):
    """An image has no valid cosign signature by a signer the TrustPolicy allows for it, over
    its digest (``spec.images.signers``): it is not applied."""


class InvalidImage(Stalled):
    """A manifest is malformed or of an unsupported kind, or lacks a platform that was asked for."""


class RegistryAuthError(Stalled):
    """A registry refused our credentials, or asks for credentials none of our files hold."""


class RegistryRefused(Stalled):
    """A registry rejected a request (4xx) for a reason retrying will not change."""


class StateError(Stalled):
    """The state dir cannot be used: unreadable or corrupt, locked, or from a newer gitedge.
    The message says what is kept and how to recover."""


class StateMoved(StateError):
    """Another gitedge process (a bundle import, accept-history, a pass) moved the last verified
    commit while this one worked from it: nothing was recorded. The agent's pass retries
    (from the new record); a command says to run it again."""


class ReportError(Stalled, ValueError):
    """A report document that cannot be read (the message names what is wrong)."""


class Malformed(Stalled, ValueError):
    """Wire data that does not parse (SSHSIG, a bundle index, a registry's answer)."""


class YamlProblem(Stalled):
    """One YAML node is wrong; :func:`gitedge.core.fleet.yamldoc.parse_documents` turns it into a
    :class:`Problem` with its line."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class TooLarge(Stalled):
    """An HTTP body is larger than its cap (adapters/registry/bounds.py; callers turn it into a
    registry error naming the image)."""

    def __init__(self, *, cap: int, got: int | None) -> None:
        self.cap, self.got = cap, got
        super().__init__(f"more than {cap} bytes" + (f" (Content-Length {got})" if got else ""))


class WorkerFailed(Stalled):
    """A forked worker process (adapters/forkpool.py) died or raised; the message says which
    work and why. Callers that can do the work in-process do so instead."""


class Cancelled(GitEdgeError):
    """Not an error: a signal between the threads of one mirror (adapters/images/endpoints.py raises
    it inside a blob stream when another transfer failed; adapters/images/mirroring.py catches
    it)."""


class Waiting(GitEdgeError):
    """Nothing is wrong, but the work must wait (window closed, registry said 429)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class Transient(GitEdgeError):
    """An I/O step failed in a way that may heal by itself; retried with backoff and jitter."""


class TooSlow(Transient):
    """An HTTP body came slower than the minimum rate, or headers took longer than the stall
    timeout (adapters/registry/bounds.py): a network error, retried like a dropped connection."""


class SourceUnavailable(Transient):
    """The git source could not be reached, authenticated against or read."""


class RegistryUnavailable(Transient):
    """A registry could not be reached, or still failed (5xx, dropped connections) after retries."""


class KubeApiError(Transient):
    """The Kubernetes API could not be reached, or answered a request with an error.

    ``status`` is the HTTP status (None: no answer), ``reason`` a condition reason word
    (``Forbidden``, ``Conflict``, ``NotFound``, ``Unauthorized``, ``ApiError``, ``Unreachable``).
    Retried with backoff: RBAC and API outages are fixed without restarting the agent.
    """

    def __init__(self, message: str, *, status: int | None = None, reason: str = "ApiError"):
        self.status = status
        self.reason = reason
        super().__init__(message)


_SECRETISH = re.compile(
    r"(?i)(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s:]+(?::[^/@\s]*)?@"  # user:pass@ in URLs
    r"|(?P<kv>(?:password|passwd|token|secret|authorization|bearer)\s*[=:]\s*)"
    r"(?:(?:Basic|Bearer)\s+)?\S+"  # "Authorization: Bearer <token>": the token too
    r"|(?P<auth>\b(?:Basic|Bearer)\s+)[A-Za-z0-9._~+/=-]+"
)


#: Credentials this process holds (registry passwords, Basic headers, tokens), so that scrub()
#: removes them where no pattern would see them: a registry echoing our password in plain words.
_KNOWN_SECRETS: dict[str, None] = {}
_MAX_KNOWN_SECRETS = 256  # the newest kept: issued tokens come and go


def register_secret(value: str) -> None:
    """Have :func:`scrub` replace ``value`` (and its URL-encoded form) wherever it appears."""
    for v in {value, quote(value, safe="")}:
        if len(v) >= 4:
            _KNOWN_SECRETS.pop(v, None)
            _KNOWN_SECRETS[v] = None
    while len(_KNOWN_SECRETS) > _MAX_KNOWN_SECRETS:
        _KNOWN_SECRETS.pop(next(iter(_KNOWN_SECRETS)))


def scrub(text: str, *, limit: int = 300) -> str:
    """Cut remote error text short and strip anything that looks like a credential, or is one
    (:func:`register_secret`)."""
    for secret in sorted(_KNOWN_SECRETS.copy(), key=len, reverse=True):
        text = text.replace(secret, "***")

    def repl(m: re.Match[str]) -> str:
        for group in ("scheme", "kv", "auth"):
            if m.group(group):
                return m.group(group) + "***" + ("@" if group == "scheme" else "")
        return "***"  # pragma: no cover - the pattern has only these groups

    cleaned = _SECRETISH.sub(repl, text.replace("\r", " "))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
