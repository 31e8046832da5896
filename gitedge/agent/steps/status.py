"""The status document the agent writes after every pass and ``gitedge status`` shows.

It holds names, versions, digests, commit ids and condition words only: never a secret (the
config names secret files; their contents are never read here). Error texts went through
``errors.scrub`` before they reached the pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gitedge.adapters.state import IMAGE_ENDPOINTS, IMAGE_SIGNATURES, State
from gitedge.agent.steps.applyplans import status_fields
from gitedge.core.config import AgentConfig
from gitedge.core.rollout.planning import window_json
from gitedge.core.status import conditions as cond
from gitedge.core.timefmt import iso_z
from gitedge.errors import StateError

if TYPE_CHECKING:
    from gitedge.agent.passtypes import Pass  # a type only: `gitedge status` loads no pass

__all__ = ["build_status", "status_text"]


def build_status(config: AgentConfig, state: State, p: Pass) -> dict[str, Any]:
    last = state.last_verified
    plan = p.plan
    mirrored = state.mirrored()
    signatures = state.doc(IMAGE_SIGNATURES) or {}  # agent/steps/imagetrust.py: who signed what
    served = state.doc(IMAGE_ENDPOINTS) or {}  # adapters/images/endpoints.py: who served what
    windows: dict[str, Any] = {}
    if plan is not None and plan.k3s is not None:
        windows["k3s"] = window_json(plan.k3s.window)
    if plan is not None and plan.os is not None:
        windows["os"] = window_json(plan.os.window)
    # when work may next start: now if a window is open, else the earliest next opening
    opens = [iso_z(p.now) if w["open"] else w["nextOpen"] for w in windows.values() if w]
    opens = [o for o in opens if o]
    running = None
    if p.snapshot is not None and p.snapshot.nodes:
        running = sorted({n.kubelet_version for n in p.snapshot.nodes})
    return {
        "cluster": config.cluster.name,
        "time": iso_z(p.now),
        "lastVerified": None
        if last is None
        else {
            "commit": last.commit,
            "committedAt": iso_z(last.committed_at),
            "verifiedAt": iso_z(last.verified_at),
            "trust": last.policy_source,
        },
        "newCommitsVerified": p.new_commits,
        "desired": None
        if plan is None
        else {
            "k3s": None
            if plan.k3s is None
            else {"version": plan.k3s.version, "path": list(plan.k3s.path)},
            "os": None if plan.os is None else {"image": plan.os.image},
        },
        "running": {"k3s": running, "os": config.cluster.status.os_image},
        "applied": [
            {"component": c, "step": s, "startedAt": iso_z(a), "doneAt": iso_z(d)}
            for c, s, a, d in state.applied()
        ],
        "mirror": {
            "complete": p.mirror_complete,
            "images": [
                {
                    "image": n.key,
                    "digest": mirrored[n.key].digest if n.key in mirrored else None,
                    "cached": mirrored[n.key].cache_ref if n.key in mirrored else None,
                    "signature": signatures.get(n.key),
                    "servedBy": _served_by(served, n.key, mirrored),
                }
                for n in p.needed
            ],
            "copiedThisPass": [{"image": k, "digest": d, "bytes": b} for k, d, b in p.mirrored_now],
        },
        "apply": status_fields(p.applied) if p.applied is not None else None,
        "suc": dict(p.suc) or None,
        "windows": windows,
        "nextWindow": min(opens) if opens else None,
        "steps": dict(p.outcomes),
        "errors": dict(p.errors),
        "conditions": cond.to_json(p.conditions),
    }


def _served_by(doc: Any, key: str, mirrored: dict[str, Any]) -> str | None:
    """The endpoint that served the copy of ``key`` now in the cache (a regional hub, the
    registry itself, or ``bundle``); None when unknown or for another cached digest."""
    entry = doc.get(key) if isinstance(doc, dict) else None
    have = mirrored.get(key)
    if not isinstance(entry, dict) or have is None or entry.get("digest") != have.digest:
        return None
    by = entry.get("endpoint")
    return by if isinstance(by, str) else None


def status_text(doc: object, *, source: str = "the status document") -> str:
    """``gitedge status`` for people. The document is a copy of the last pass's status: one
    that is not shaped like it (a disk fault, a hand edit) is a StateError saying so."""
    try:
        if not isinstance(doc, dict):
            raise TypeError(f"not an object but {type(doc).__name__}")
        return _text(doc)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as e:
        raise StateError(
            f"{source} is corrupt ({type(e).__name__}: {str(e)[:100]}); it is only a copy of "
            "the last pass's status, which the next agent pass writes again (gitedge run "
            "--once); nothing else is affected"
        ) from None


def _text(doc: dict[str, Any]) -> str:
    lines = [f"cluster {doc.get('cluster')}  (as of {doc.get('time')})"]
    lv = doc.get("lastVerified")
    lines.append(
        f"last verified commit: {lv['commit']} (committed {lv['committedAt']}, trust {lv['trust']})"
        if lv
        else "last verified commit: none yet"
    )
    desired = doc.get("desired") or {}
    k3s, os_ = desired.get("k3s"), desired.get("os")
    running = doc.get("running") or {}
    if k3s:
        path = " -> ".join(k3s["path"]) or "already there"
        run = ", ".join(running.get("k3s") or []) or "unknown"
        lines.append(f"k3s: desired {k3s['version']}, running {run}; path {path}")
    if os_:
        lines.append(f"os:  desired {os_['image']}, running {running.get('os') or 'unknown'}")
    applied = doc.get("applied") or []
    for a in applied:
        state = f"done {a['doneAt']}" if a["doneAt"] else f"started {a['startedAt']}"
        lines.append(f"applied: {a['component']} {a['step']} ({state})")
    mirror = doc.get("mirror") or {}
    images = mirror.get("images") or []
    have = sum(1 for i in images if i["digest"])
    word = "complete" if mirror.get("complete") else "incomplete"
    lines.append(f"mirror: {have}/{len(images)} image(s) of the path in the cache ({word})")
    for i in images:
        by = f"  (served by {i['servedBy']})" if i.get("servedBy") else ""
        lines.append(f"  {i['image']}  {i['digest'] or 'missing'}{by}")
        sig = i.get("signature")
        if sig:
            lines.append(
                f"    signature: {'ok, ' if sig.get('verified') else 'REFUSED: '}"
                f"{sig.get('reason')}"
            )
    suc = doc.get("suc") or {}
    if suc.get("kubectlImage"):
        lines.append(f"suc: kubectl {suc['kubectlImage']} ({suc.get('kubectlFrom')})")
    for w in suc.get("warnings") or []:
        lines.append(f"  warning: {w}")
    for name, w in (doc.get("windows") or {}).items():
        if w:
            when = f"OPEN until {w['closesAt']}" if w["open"] else f"closed, opens {w['nextOpen']}"
            lines.append(f"window ({name}): {w['name']} {when}")
    lines.append("conditions:")
    for c in doc.get("conditions") or []:
        lines.append(f"  {c['type']:<16} {c['status']:<7} {c['reason']}: {c['message']}")
    return "\n".join(lines)


def before_first_pass(state: State) -> dict[str, Any] | None:
    """What a site's state holds before the agent finished a pass (a ``gitedge bundle import``
    verified commits and filled the cache): None when it holds nothing yet."""
    last = state.last_verified
    mirrored = state.mirrored()
    if last is None and not mirrored:
        return None
    return {
        "passes": 0,
        "lastVerified": {
            "commit": last.commit,
            "committedAt": iso_z(last.committed_at),
            "verifiedAt": iso_z(last.verified_at),
            "trust": last.policy_source,
        }
        if last
        else None,
        "mirrored": [
            {"image": m.source, "digest": m.digest, "cacheRef": m.cache_ref, "bytes": m.bytes}
            for m in sorted(mirrored.values(), key=lambda m: m.source)
        ],
    }


def before_first_pass_text(doc: dict[str, Any]) -> str:
    lv = doc["lastVerified"]
    n = len(doc["mirrored"])
    lines = [
        "no agent pass yet (plan, windows and conditions come with the first pass: gitedge run)",
        f"last verified commit: {lv['commit']} (committed {lv['committedAt']}, verified "
        f"{lv['verifiedAt']}, trust {lv['trust']})"
        if lv
        else "last verified commit: none yet",
        f"mirror: {n} image{'' if n == 1 else 's'} verified in the cache",
    ]
    lines += [f"  {m['image']}  {m['digest']}" for m in doc["mirrored"]]
    return "\n".join(lines)
