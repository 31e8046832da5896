"""The trust rules as properties over generated histories (issue 13): core/trust/decision.decide driven
directly, with a fake signature checker (a signature names its key; the policy says whether that
key is there, with which roles and validity window), hundreds of histories in a few seconds.

Histories (hypothesis): a root, then up to 14 steps, each one of: a commit on a branch head; a
rotation (an edit of the trust file: a key removed, added, re-added, its admin role toggled, a
``validBefore`` set, the verify mode flipped); a fork from any earlier commit; a merge of two or
three heads (octopus) in any parent order, keeping either parent's trust file or an older one;
and the attack of the issue, a merge of an old commit and the main tip in either order with the
old commit's trust file, signed by a key the old policy trusts. Signers are drawn either "by the
book" (a key the rules allow, as an honest operator would pick) or from any key, retired or
unknown, or none; committer dates go forward, or back by 2 minutes (inside the tolerance) or by
an hour (outside). The bootstrap and every policy say ``verify: all`` or ``first-parent``.

Asserted for every history, of the main tip:

(a) no key removed by a rotation signs a checked commit descending from that rotation, nor is
    trusted by a commit reached from it, unless an admin re-added it on every path;
(b) the trust in force never returns to a replaced policy except through a commit that an admin
    of the newer policy on each of its parents signed;
(c) one range in one go, and any split of it into (since, rev] pieces as successive fetches and
    bundle imports would make (with and without the cache of verified commits carried from piece
    to piece), give the same verdict; in first-parent mode the split points are the tip's
    first-parent chain (the branch's own earlier tips; a tip off that chain is a rollback there);
(d) a history whose every commit was made by the book is accepted, and one with no
    ``first-parent`` policy anywhere is accepted only if every commit was;
(e) the cache filled by a refused range changes no later verdict (each other head verified with
    that cache and without it);
(f) every trust file in force in an accepted history was approved: where it differs from a
    parent's, an admin of that parent's policy signed (exempt side commits included);
(g) parent order never matters: every merge's parents reversed, the verdict is the same (unless
    a merge's parents all say ``first-parent``: then the order says which side is vouched for).

The run prints how many histories it drew and of which shapes.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitedge.core.trust.decision import decide
from gitedge.core.trust.history import DATE_TOLERANCE
from gitedge.core.trust.policy import Policy, PolicySigner, policy_from_yaml
from gitedge.errors import RollbackRefused, VerificationFailed

EXAMPLES = 800
KEYS = ("k0", "k1", "k2", "k3", "k4")
EPOCH = datetime(2027, 1, 1, tzinfo=UTC)
SHAPES: Counter[str] = Counter()


# ---------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Pol:
    """A trust file: signers (name = key, roles, validBefore in seconds after EPOCH) and mode."""

    signers: tuple[tuple[str, tuple[str, ...], int | None], ...]
    mode: str = "all"

    def yaml(self) -> bytes:
        lines = ["apiVersion: gitedge.io/v1alpha1", "kind: TrustPolicy",
                 "metadata: {name: fleet}", "spec:", "  signers:"]  # fmt: skip
        for name, roles, before in self.signers:
            lines += [f"    - name: {name}", f"      key: fake-key-{name}",
                      f"      roles: [{', '.join(roles)}]"]  # fmt: skip
            if before is not None:
                lines.append(
                    f"      validBefore: {(EPOCH + timedelta(seconds=before)).isoformat()}"
                )
        lines.append(f"  verify: {self.mode}")
        return ("\n".join(lines) + "\n").encode()

    @property
    def blob(self) -> str:
        return hashlib.sha1(self.yaml()).hexdigest()

    def names(self) -> set[str]:
        return {n for n, _, _ in self.signers}

    def allows(self, key: str | None, role: str, t: int) -> bool:
        return any(
            n == key and role in roles and (before is None or t <= before)
            for n, roles, before in self.signers
        )


BOOT_SIGNERS = (("k0", ("admin", "release"), None), ("k1", ("release",), None))


@dataclass(frozen=True)
class Node:
    id: str
    parents: tuple[str, ...]
    time: int
    signer: str | None
    trust: str | None  # blob id
    book: bool  # made by the book: the signer is one the rules allow
    kind: str

    # what decide reads (trust.Commit)
    @property
    def committer_time(self) -> datetime:
        return EPOCH + timedelta(seconds=self.time)

    @property
    def signature(self) -> bytes | None:
        return None if self.signer is None else f"by:{self.signer}".encode()

    @property
    def payload(self) -> bytes | None:
        return None if self.signer is None else self.id.encode()

    @property
    def trust_blob_id(self) -> str | None:
        return self.trust


@dataclass
class History:
    boot: Pol
    nodes: dict[str, Node] = field(default_factory=dict)
    pols: dict[str, Pol] = field(default_factory=dict)
    anc: dict[str, frozenset[str]] = field(default_factory=dict)
    heads: list[str] = field(default_factory=list)

    def pol(self, node_id: str | None) -> Pol:
        t = None if node_id is None else self.nodes[node_id].trust
        return self.boot if t is None else self.pols[t]

    def pol_of_blob(self, blob: str | None) -> Pol:
        return self.boot if blob is None else self.pols[blob]

    def allowed(self, parents: Sequence[str], trust: str | None, t: int) -> list[str]:
        """Keys the rules allow to sign such a commit (the honest operator's choice)."""
        latest = max((self.nodes[a].time for p in parents for a in self.anc[p]), default=t)
        if t < latest - DATE_TOLERANCE.seconds:  # the latest date in the history, not the parent's
            return []
        blobs = {self.nodes[p].trust for p in parents} if parents else {None}
        if trust is None and blobs != {None}:
            return []  # a trust file once there is never removed
        out = []
        for k in KEYS:
            if all(
                self.pol_of_blob(b).allows(k, "admin" if b != trust else "release", t)
                for b in blobs
            ):
                out.append(k)
        return out

    def add(self, parents: tuple[str, ...], t: int, signer: str | None, trust: str | None,
            kind: str) -> str:  # fmt: skip
        nid = f"c{len(self.nodes):03d}"
        book = signer is not None and signer in self.allowed(parents, trust, t)
        self.nodes[nid] = Node(nid, parents, t, signer, trust, book, kind)
        self.anc[nid] = frozenset({nid}).union(*(self.anc[p] for p in parents))
        return nid

    def first_parent_chain(self, tip: str) -> list[str]:
        chain, cur = [], tip
        while True:
            chain.append(cur)
            ps = self.nodes[cur].parents
            if not ps:
                return chain
            cur = ps[0]


@st.composite
def histories(draw: st.DrawFn) -> History:
    h = History(boot=Pol(BOOT_SIGNERS, draw(st.sampled_from(["all", "first-parent"]))))
    h.heads = [h.add((), 0, "k0", None, "root")]

    def signer_for(parents: tuple[str, ...], trust: str | None, t: int) -> str | None:
        ok = h.allowed(parents, trust, t)
        how = draw(st.sampled_from(["book"] * 6 + ["any"]))
        if how == "book" and ok:
            return draw(st.sampled_from(ok))
        return draw(st.sampled_from((*KEYS, None)))

    def when(parents: tuple[str, ...]) -> int:
        base = max(h.nodes[p].time for p in parents)
        return base + draw(st.sampled_from([60] * 6 + [3600, 86_400, -120, -240, -3600]))

    for _ in range(draw(st.integers(1, 14))):
        op = draw(st.sampled_from(["commit", "rotate", "rotate", "fork", "fork", "merge",
                                   "merge", "merge", "attack"]))  # fmt: skip
        if op == "commit":
            i = draw(st.integers(0, len(h.heads) - 1))
            ps = (h.heads[i],)
            t = when(ps)
            trust = h.nodes[ps[0]].trust
            rogue = i > 0 and draw(st.booleans())  # on a side branch: any key, or none
            signer = draw(st.sampled_from((*KEYS, None))) if rogue else signer_for(ps, trust, t)
            h.heads[i] = h.add(ps, t, signer, trust, "commit")
        elif op == "rotate":
            i = draw(st.integers(0, len(h.heads) - 1))
            ps = (h.heads[i],)
            t = when(ps)
            new = rotate(draw, h.pol(ps[0]), t)
            h.pols[new.blob] = new
            rogue = i > 0 and draw(st.booleans())  # on a side branch, by any key
            signer = draw(st.sampled_from(KEYS)) if rogue else signer_for(ps, new.blob, t)
            h.heads[i] = h.add(ps, t, signer, new.blob, "rotate")
        elif op == "fork" and len(h.heads) < 4:
            h.heads.append(draw(st.sampled_from(sorted(h.nodes))))
        elif op == "merge" and len(h.heads) > 1:
            k = draw(st.integers(2, min(3, len(h.heads))))
            if draw(st.booleans()):  # into main, main first or not
                picked = [0, *draw(st.permutations(range(1, len(h.heads))))[: k - 1]]
                order = draw(st.permutations(picked))
                into = 0
            else:  # between any heads
                order = draw(st.permutations(range(len(h.heads))))[:k]
                into = order[0]
            ps = tuple(dict.fromkeys(h.heads[j] for j in order))
            if len(ps) < 2:
                continue
            t = when(ps)
            keep = draw(st.sampled_from([*ps, "old"]))
            src = draw(st.sampled_from(sorted(h.nodes))) if keep == "old" else keep
            trust = h.nodes[src].trust
            kind = "octopus" if len(ps) > 2 else "merge"
            h.heads[into] = h.add(ps, t, signer_for(ps, trust, t), trust, kind)
        elif op == "attack":
            old = draw(st.sampled_from(sorted(h.nodes)))
            if old == h.heads[0]:
                continue
            ps = (old, h.heads[0]) if draw(st.booleans()) else (h.heads[0], old)
            t = when(ps)
            trust = h.nodes[old].trust
            trusted = sorted(h.pol(old).names())
            signer = draw(st.sampled_from(trusted))
            h.heads[0] = h.add(ps, t, signer, trust, "attack")
    return h


def rotate(draw: st.DrawFn, old: Pol, t: int) -> Pol:
    signers = list(old.signers)
    what = draw(st.sampled_from(["remove", "add", "admin", "window", "mode", "mode"]))
    names = [n for n, _, _ in signers]
    if what == "remove" and len(signers) > 1:
        signers.pop(draw(st.integers(0, len(signers) - 1)))
    elif what == "add" and len(signers) < len(KEYS):
        name = draw(st.sampled_from([k for k in KEYS if k not in names]))
        roles = draw(st.sampled_from([("release",), ("admin", "release"), ("admin",)]))
        signers.append((name, roles, None))
    elif what == "admin":
        j = draw(st.integers(0, len(signers) - 1))
        n, roles, before = signers[j]
        flipped = tuple(sorted(set(roles) ^ {"admin"})) or ("release",)
        signers[j] = (n, flipped, before)
    elif what == "window":
        j = draw(st.integers(0, len(signers) - 1))
        n, roles, _ = signers[j]
        signers[j] = (n, roles, t + draw(st.sampled_from([-1800, 600, 86_400])))
    else:
        return Pol(tuple(signers), "first-parent" if old.mode == "all" else "all")
    return Pol(tuple(signers), old.mode)


# ---------------------------------------------------------------------------- the fake checker


@dataclass(frozen=True)
class FakeCheck:
    outcome: str
    signer: str | None
    key_id: str
    detail: str
    keys: tuple[PolicySigner, ...]


class FakeChecker:
    """Keyring stand-in: ``by:<key>`` is a good signature by that key; found by key text."""

    def __init__(self, policy: Policy) -> None:
        self.by_key = {s.key_text: s for s in policy.signers}

    def check(self, *, signature: bytes, payload: bytes, namespace: str = "git") -> FakeCheck:
        name = signature.decode().removeprefix("by:")
        s = self.by_key.get(f"fake-key-{name}")
        if s is None:
            return FakeCheck("unknown-key", None, name, "no such key in the policy", ())
        return FakeCheck("good", s.name, name, "", (s,))


# ---------------------------------------------------------------------------- running decide


@dataclass
class Verdict:
    ok: bool
    checked: list[str]
    error: Exception | None = None


def run(h: History, boot: Policy, *, since: str | None, rev: str, cache: set[str]) -> Verdict:
    """verify_range's part, with the model: the range, the outside facts, the cache kept."""
    hidden = h.anc[since] if since is not None else frozenset()
    commits = [n for nid, n in h.nodes.items() if nid in h.anc[rev] and nid not in hidden]
    in_range = {c.id for c in commits}
    outside = {p for c in commits for p in c.parents if p not in in_range}
    if since is not None:
        outside.add(since)
    accepted: list[str] = []
    try:
        d = decide(
            commits=commits,
            tip=rev,
            bootstrap=boot,
            outside_trust={p: h.nodes[p].trust for p in outside},
            outside_times={p: max(h.nodes[a].committer_time for a in h.anc[p]) for p in outside},
            since=since,
            blobs={b: p.yaml() for b, p in h.pols.items()},
            checker_for=FakeChecker,
            cached=cache,
            on_accept=accepted.append,
        )
    except (VerificationFailed, RollbackRefused) as e:
        cache.update(accepted)
        return Verdict(False, accepted, e)
    cache.update(accepted)
    return Verdict(True, [a.commit for a in d.accepted])


def run_split(h: History, boot: Policy, points: Sequence[str], tip: str, *, keep: bool) -> bool:
    """Successive fetches/bundles (None, p1], (p1, p2], ..., (pn, tip]: the agent records each
    piece's tip only when the whole piece verifies; ``keep``: one cache carried throughout."""
    cache: set[str] = set()
    since: str | None = None
    for rev in [*points, tip]:
        if not run(h, boot, since=since, rev=rev, cache=cache if keep else set()).ok:
            return False
        since = rev
    return True


def reach(
    h: History, start: str, within: frozenset[str], stop: Callable[[str, Node], bool]
) -> set[str]:
    """Commits of ``within`` reached from ``start`` along parent->child edges, except the
    edges ``stop(u, v)`` says are the rule's way out."""
    seen = {start}
    for v, n in h.nodes.items():
        if v in within and v != start and any(u in seen and not stop(u, n) for u in n.parents):
            seen.add(v)
    return seen


# ---------------------------------------------------------------------------- the property


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(h=histories(), data=st.data())
def test_trust_only_moves_forward(h: History, data: st.DataObject) -> None:
    boot = policy_from_yaml(h.boot.yaml(), source="bootstrap:test")
    tip = h.heads[0]
    hist = h.anc[tip]
    first_parent = h.boot.mode == "first-parent" or any(
        p.mode == "first-parent" for b, p in h.pols.items()
        if any(h.nodes[n].trust == b for n in hist)
    )  # fmt: skip
    _count_shapes(h, hist, first_parent)

    one = run(h, boot, since=None, rev=tip, cache=set())
    SHAPES["accepted" if one.ok else "refused"] += 1
    if not one.ok:
        err = one.error
        SHAPES[f"reason {getattr(err, 'reason', type(err).__name__)}"] += 1

    # (d) by the book is accepted; with no first-parent policy, only by the book is
    all_book = all(h.nodes[n].book for n in hist)
    if all_book:
        assert one.ok, f"a history made by the book was refused: {one.error}"
    if not first_parent:
        assert one.ok == all_book, (one.error, [n for n in hist if not h.nodes[n].book])

    # (f) every trust file in force in an accepted history was approved: a commit whose trust
    # file differs from a parent's was signed by an admin of that parent's policy
    if one.ok:
        for v in hist:
            n = h.nodes[v]
            for u in n.parents or ():
                if h.nodes[u].trust != n.trust:
                    assert h.pol(u).allows(n.signer, "admin", n.time), f"{v} changed trust"

    # (g) parent order never matters, unless a merge's parents all say first-parent (then the
    # order says which side its signer vouches for)
    vouching = any(
        len(h.nodes[v].parents) > 1
        and all(h.pol(p).mode == "first-parent" for p in h.nodes[v].parents)
        for v in hist
    )
    if not vouching:
        mirrored = History(h.boot, dict(h.nodes), h.pols, h.anc, h.heads)
        for v, n in h.nodes.items():
            mirrored.nodes[v] = replace(n, parents=n.parents[::-1])
        SHAPES["parent order swapped"] += 1
        assert run(mirrored, boot, since=None, rev=tip, cache=set()).ok == one.ok

    if one.ok:
        checked = set(one.checked)
        for r in sorted(hist):
            for a in h.nodes[r].parents or ():
                _assert_removed_keys_stay_out(h, hist, checked, a, r)
                _assert_no_return(h, hist, a, r)

    # (c) any split, as fetches and bundles of successive tips would
    chain = h.first_parent_chain(tip)[1:]
    pool = sorted(chain if first_parent else hist - {tip})
    picks = sorted(set(data.draw(st.lists(st.sampled_from(pool), max_size=4) if pool
                                 else st.just([]))))  # fmt: skip
    points: list[str] = []
    for p in picks:  # ids are in creation order; keep a chain of descendants
        if not points or points[-1] in h.anc[p]:
            points.append(p)
    SHAPES[f"split into {len(points) + 1}"] += 1
    for keep in (True, False):
        assert run_split(h, boot, points, tip, keep=keep) == one.ok, (points, keep, one.error)

    # (e) what a refused range left in the cache changes no later verdict
    cache: set[str] = set()
    run(h, boot, since=None, rev=tip, cache=cache)
    for other in h.heads[1:]:
        assert (
            run(h, boot, since=None, rev=other, cache=set(cache)).ok
            == run(h, boot, since=None, rev=other, cache=set()).ok
        )


def _assert_removed_keys_stay_out(
    h: History, hist: frozenset[str], checked: set[str], a: str, r: str
) -> None:
    """(a) for each key the accepted commit ``r`` removed w.r.t. its parent ``a``."""
    for k in h.pol(a).names() - h.pol(r).names():
        SHAPES["removal checked"] += 1

        def readded(u: str, v: Node, k: str = k) -> bool:
            return (
                k in h.pol(v.id).names()
                and k not in h.pol(u).names()
                and h.pol(u).allows(v.signer, "admin", v.time)
            )

        after = reach(h, r, hist, readded)
        for v in after:
            assert k not in h.pol(v).names(), f"{k} removed at {r} trusted again at {v}"
        for v in checked:
            if h.nodes[v].signer == k and v != r:
                assert not any(u in after for u in h.nodes[v].parents), (
                    f"{k}, removed at {r}, signed {v}"
                )


def _assert_no_return(h: History, hist: frozenset[str], a: str, r: str) -> None:
    """(b) the policy ``r`` replaced (its parent ``a``'s) is in force again only after a commit
    that an admin of the newer policy on each parent signed."""
    old = h.nodes[a].trust
    if old == h.nodes[r].trust:
        return
    SHAPES["replacement checked"] += 1

    def returned(u: str, v: Node) -> bool:
        return (
            v.trust == old
            and h.nodes[u].trust != old
            and h.pol(u).allows(v.signer, "admin", v.time)
        )

    for v in reach(h, r, hist, returned):
        assert h.nodes[v].trust != old, f"{v} brought back the policy {r} replaced"


def _count_shapes(h: History, hist: frozenset[str], first_parent: bool) -> None:
    SHAPES["histories"] += 1
    SHAPES["first-parent" if first_parent else "all"] += 1
    kinds = Counter(h.nodes[n].kind for n in hist)
    for kind in ("merge", "octopus", "rotate", "attack"):
        if kinds[kind]:
            SHAPES[f"with {kind}"] += 1
    if any(b is not None for p in h.pols.values() for _, _, b in p.signers):
        SHAPES["with validBefore"] += 1
    if any(not h.nodes[n].book for n in hist):
        SHAPES["with a commit off the book"] += 1
    if any(
        n.time < max(h.nodes[p].time for p in n.parents) - DATE_TOLERANCE.seconds
        for n in (h.nodes[x] for x in hist)
        if n.parents
    ):
        SHAPES["with a date before a parent"] += 1


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    SHAPES.clear()
    yield
    print("\ntrust property test:", dict(sorted(SHAPES.items())))


# ---------------------------------------------------------------------------- worked examples


def _boot(mode: str) -> tuple[History, Policy]:
    h = History(boot=Pol(BOOT_SIGNERS, mode))
    return h, policy_from_yaml(h.boot.yaml(), source="bootstrap:test")


def test_the_issues_merge_by_a_retired_key_is_refused_in_both_parent_orders() -> None:
    """k1 is removed by a rotation; k1 merges the commit before the rotation with the tip,
    keeping the old trust file: refused whichever parent comes first, from any base."""
    for first_old in (True, False):
        h, boot = _boot("all")
        v1 = Pol((("k0", ("admin", "release"), None), ("k1", ("release",), None)))
        v2 = Pol((("k0", ("admin", "release"), None),))
        h.pols |= {v1.blob: v1, v2.blob: v2}
        c1 = h.add((), 0, "k0", v1.blob, "root")
        c2 = h.add((c1,), 60, "k1", v1.blob, "commit")
        c3 = h.add((c2,), 120, "k0", v2.blob, "rotate")  # k1's laptop was stolen
        c4 = h.add((c3,), 180, "k0", v2.blob, "commit")
        ps = (c2, c4) if first_old else (c4, c2)
        attack = h.add(ps, 240, "k1", v1.blob, "attack")
        for since in (None, c3, c4):
            v = run(h, boot, since=since, rev=attack, cache=set())
            assert isinstance(v.error, VerificationFailed) and v.error.commit == attack
            assert v.error.reason == "merge-not-allowed-by-parent-policy"
        # nor a merge that keeps the new trust file: the new policy does not know k1
        plain = h.add(ps, 300, "k1", v2.blob, "merge")
        v = run(h, boot, since=c4, rev=plain, cache=set())
        assert _reason(v) == "merge-not-allowed-by-parent-policy"
        assert "unknown-key" in str(v.error) and "not-admin-for-trust-change" in str(v.error)
        # the admin of the new policy may bring the old one back, deliberately
        readd = h.add(ps, 360, "k0", v1.blob, "merge")
        assert run(h, boot, since=c4, rev=readd, cache=set()).ok
        after = h.add((readd,), 420, "k1", v1.blob, "commit")
        assert run(h, boot, since=c4, rev=after, cache=set()).ok


def test_a_retired_key_cannot_backdate_into_its_window() -> None:
    h, boot = _boot("all")
    v1 = Pol((("k0", ("admin", "release"), None), ("k1", ("release",), 3600)))
    h.pols[v1.blob] = v1
    c1 = h.add((), 0, "k0", v1.blob, "root")
    c2 = h.add((c1,), 7200, "k0", v1.blob, "commit")  # after k1's validBefore
    late = h.add((c2,), 7300, "k1", v1.blob, "commit")
    back = h.add((c2,), 3000, "k1", v1.blob, "commit")  # dated inside k1's window
    near = h.add((c1,), 3000, "k1", v1.blob, "commit")  # what the tolerance still allows
    assert _reason(run(h, boot, since=c2, rev=late, cache=set())) == "key-not-valid-at-time"
    assert _reason(run(h, boot, since=c2, rev=back, cache=set())) == "date-before-parent"
    assert run(h, boot, since=c1, rev=near, cache=set()).ok  # between its parent and validBefore
    within = h.add((c2,), 7200 - 240, "k0", v1.blob, "commit")  # 4 minutes before: tolerated
    assert run(h, boot, since=c2, rev=within, cache=set()).ok


def test_first_parent_mode_needs_the_last_verified_commit_on_the_new_tips_first_parent_chain(
) -> None:  # fmt: skip
    for mode in ("first-parent", "all"):
        h, boot = _boot(mode)
        c0 = h.add((), 0, "k0", None, "root")
        c1 = h.add((c0,), 60, "k0", None, "commit")  # the last verified commit
        c2 = h.add((c0,), 120, "k1", None, "commit")
        swapped = h.add((c2, c1), 180, "k0", None, "merge")
        straight = h.add((c1, c2), 180, "k0", None, "merge")
        assert run(h, boot, since=c1, rev=straight, cache=set()).ok
        v = run(h, boot, since=c1, rev=swapped, cache=set())
        if mode == "all":
            assert v.ok
        else:
            assert isinstance(v.error, RollbackRefused) and v.error.last_verified == c1
            assert run(h, boot, since=None, rev=swapped, cache=set()).ok  # no base: no chain


def test_a_side_commit_is_exempt_only_when_every_parents_policy_says_first_parent() -> None:
    h, boot = _boot("first-parent")
    both = Pol(BOOT_SIGNERS, "all")
    h.pols[both.blob] = both
    c0 = h.add((), 0, "k0", None, "root")
    c1 = h.add((c0,), 60, "k0", None, "commit")
    side = h.add((c0,), 60, "k0", both.blob, "rotate")  # the side branch says verify: all
    unsigned = h.add((side,), 120, None, both.blob, "commit")
    merge = h.add((c1, unsigned), 180, "k0", both.blob, "merge")  # k0: admin of both
    v = run(h, boot, since=None, rev=merge, cache=set())
    assert isinstance(v.error, VerificationFailed) and v.error.commit == unsigned
    # with first-parent on both sides, the merge's signer vouches for it
    h2, boot2 = _boot("first-parent")
    d0 = h2.add((), 0, "k0", None, "root")
    d1 = h2.add((d0,), 60, "k0", None, "commit")
    d2 = h2.add((d0,), 120, None, None, "commit")
    assert run(
        h2, boot2, since=None, rev=h2.add((d1, d2), 180, "k0", None, "merge"), cache=set()
    ).ok


def test_an_exempt_side_commit_that_changes_trust_is_checked() -> None:
    h, boot = _boot("first-parent")
    rogue = Pol((("k2", ("admin", "release"), None), ("k0", ("admin", "release"), None)),
                "first-parent")  # fmt: skip
    h.pols[rogue.blob] = rogue
    c0 = h.add((), 0, "k0", None, "root")
    c1 = h.add((c0,), 60, "k0", None, "commit")
    side = h.add((c0,), 60, "k2", rogue.blob, "rotate")  # k2 adds itself, on the side
    merge = h.add((c1, side), 120, "k0", rogue.blob, "merge")
    v = run(h, boot, since=None, rev=merge, cache=set())
    assert isinstance(v.error, VerificationFailed) and v.error.commit == side
    assert v.error.reason == "unknown-key"


def _reason(v: Verdict) -> str:
    assert isinstance(v.error, VerificationFailed), v
    return v.error.reason


def test_scope_of_a_revocation_a_branch_forked_before_it_enters_only_by_a_merge_valid_on_both(
) -> None:  # fmt: skip
    """k1 signed work on a branch forked before the rotation that removed it: valid there; it
    enters the tracked history only through a merge whose signer every parent's policy allows
    (release in the new policy, admin in the old, since the merge keeps the new file)."""
    for mode in ("all", "first-parent"):
        h, boot = _boot(mode)
        v1 = Pol((("k0", ("admin", "release"), None), ("k1", ("release",), None),
                  ("k2", ("release",), None)), mode)  # fmt: skip
        v2 = Pol((("k0", ("admin", "release"), None), ("k2", ("release",), None)), mode)
        h.pols |= {v1.blob: v1, v2.blob: v2}
        c1 = h.add((), 0, "k0", v1.blob, "root")
        side = h.add((c1,), 60, "k1", v1.blob, "commit")  # k1's work, forked before
        rotation = h.add((c1,), 120, "k0", v2.blob, "rotate")
        assert run(h, boot, since=None, rev=side, cache=set()).ok  # valid where it was made
        on_top = h.add((rotation,), 180, "k1", v2.blob, "commit")
        assert _reason(run(h, boot, since=rotation, rev=on_top, cache=set())) == "unknown-key"
        for signer, ok in (("k1", False), ("k2", False), ("k0", True)):
            for ps in ((rotation, side), (side, rotation)):
                merge = h.add(ps, 240, signer, v2.blob, "merge")
                v = run(h, boot, since=rotation, rev=merge, cache=set())
                if mode == "first-parent" and ps[0] == side:
                    assert isinstance(v.error, RollbackRefused)  # the mainline is the rotation's
                    continue
                assert v.ok == ok, (mode, signer, ps, v.error)
                if ok:
                    assert side in v.checked or mode == "first-parent"
