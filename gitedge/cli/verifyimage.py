"""``gitedge verify-image REF --config AGENT.yaml``: one image's cosign signature, checked by hand.

The signers are those of the TrustPolicy in force at the site (its last verified commit, read
from the agent's state and git mirror), or of ``--trust FILE``. The image is read upstream (the
digest its tag names now, or the pinned one), or with ``--cache`` from the site's cache, offline,
exactly as the agent's apply step judges it. Prints the digest, the verdict, the signer and the
form found; exit 0 when verified, 1 when not.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gitedge.adapters.git.source import GitMirror
from gitedge.adapters.images.mirroring import LayoutRef, Mirror
from gitedge.adapters.images.signedindex import check_cut_index
from gitedge.adapters.registry.hosts import Hosts
from gitedge.adapters.state import IMAGE_SIGNATURES, State
from gitedge.adapters.trust.imagesigs import SigSite, find_signatures, signer_keys, verify
from gitedge.cli.common import read_file
from gitedge.cli.siteconfig import agent_config, last_verified
from gitedge.core.fleet.files import trust_file
from gitedge.core.fleet.model import Fleet
from gitedge.core.images.refs import ImageRef, cache_host
from gitedge.core.trust.policy import parse_trust_policy
from gitedge.errors import ImageNotFound, UsageError


def _fleet_signers(config: Any, trust: str | None) -> tuple[Any, str]:
    if trust:
        try:
            tp = parse_trust_policy(read_file(trust, "--trust"), path=trust)
        except ValueError as e:
            raise UsageError(str(e)) from None
        return signer_keys(Fleet(trust_policy=tp)), trust
    state_dir = Path(config.state.dir)
    if not (state_dir / "state.sqlite3").is_file():
        raise UsageError(f"no agent state in {state_dir}: give --trust FILE")
    last = last_verified(state_dir)
    if last is None:
        raise UsageError(f"the agent in {state_dir} has verified no commit yet: give --trust FILE")
    git = GitMirror(mirror_dir=state_dir / "fleet.git")
    snap = git.tree_snapshot(last.commit, subdir=config.source.path)
    # the trust file only: the rest of the commit may be for a newer agent (agent/steps/compat.py)
    found = trust_file(snap, subdir=config.source.path)
    try:
        at = parse_trust_policy(found[1], path=f"{last.commit[:12]}/{found[0]}") if found else None
    except ValueError as e:
        raise UsageError(f"{e}\n(give --trust FILE)") from None
    return signer_keys(Fleet(trust_policy=at)), f"the TrustPolicy at {last.commit[:12]}"


def cmd_verify_image(args: argparse.Namespace) -> int:
    try:
        ref = ImageRef.parse(args.ref)
    except ValueError as e:
        raise UsageError(str(e)) from None
    config = agent_config(args.config)
    keys, policy = _fleet_signers(config, args.trust)
    if not keys:
        raise UsageError(f"{policy} lists no image signers (spec.images.signers)")
    with Mirror(hosts=Hosts.from_config(config.registry)) as mirror:
        if args.cache:
            where, signed, cached = _in_cache(config, ref)
        else:
            where = ref
            signed = cached = mirror.open(ref).manifest(ref.digest or ref.tag, what=str(ref)).digest
        found = find_signatures(mirror, SigSite.of(where), signed, what=str(ref))
        v = verify(found, keys=keys, repository=ref.name, digest=signed)
        if v.ok and cached != signed:
            problem = check_cut_index(
                mirror, dst=where, signed=signed, cached=cached, what=str(ref)
            )
            if problem:
                v = type(v)(False, v.repository, signed, problem)
    doc = {
        **v.to_json(),
        "image": str(ref),
        "read": "cache" if args.cache else "upstream",
        "cached": cached,
        "formsFound": list(found.forms),
        "policy": policy,
        "problems": found.problems,
    }
    if args.output == "json":
        print(json.dumps(doc, indent=2))
    else:
        print(f"image   {ref} ({doc['read']})")
        print(
            f"digest  {signed}"
            + (f" (cached as the cut index {cached})" if cached != signed else "")
        )
        print(f"found   {', '.join(found.forms) or 'no signature'}")
        print(("verified: " if v.ok else "REFUSED: ") + v.reason)
    return 0 if v.ok else 1


def _in_cache(config: Any, ref: Any) -> tuple[Any, str, str]:
    """Where the site's cache holds ``ref``, the digest signed, and the digest cached."""
    state = State(Path(config.state.dir))
    try:
        have = state.mirrored().get(str(ref))
        doc = (state.doc(IMAGE_SIGNATURES) or {}).get(str(ref))
    finally:
        state.close()
    if have is None:
        raise ImageNotFound(f"image {ref} is not recorded in the site's cache ({config.state.dir})")
    known = (
        doc.get("digest") if isinstance(doc, dict) and doc.get("cached") == have.digest else None
    )
    signed = str(known or ref.digest or have.digest)
    cache = config.registry.cache
    if cache is None:
        where: Any = LayoutRef(Path(config.state.dir) / "cache" / ref.registry / ref.repository)
    else:
        where = ImageRef(cache_host(cache.url), ref.repository)
    return where, signed, have.digest
