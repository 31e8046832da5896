"""Reading TrustPolicy files without the models (core/trust/policy.py ``policy_from_yaml``).

Covers: a plain trust file (the common shape) is read without pydantic and gives the policy the
models give; any document the plain reader takes is one the models accept with the same signers
and verify mode (property test over mutated and random documents); files it declines (validity
times, labels, snake_case keys, problems) still get the models' result or their messages.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitedge.core.fleet.yamldoc import parse_documents
from gitedge.core.trust import policy as trust
from gitedge.core.trust.policy import parse_trust_policy, policy_from_model, policy_from_yaml

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPi/bBZgfEqxEJAzvhnUOypFuJ2wl4UwsdQ627CA+EGg r@x"


def plain_doc() -> dict[str, Any]:
    return {
        "apiVersion": "gitedge.io/v1alpha1",
        "kind": "TrustPolicy",
        "metadata": {"name": "fleet"},
        "spec": {
            "signers": [
                {"name": "release-bot", "key": KEY, "roles": ["release"]},
                {
                    "name": "alice",
                    "key": "-----BEGIN PGP PUBLIC KEY BLOCK-----",
                    "roles": ["admin", "release"],
                },
            ],
            "verify": "first-parent",
        },
    }


def dump(doc: object) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False).encode()


def by_models(data: bytes) -> trust.Policy | ValueError:
    try:
        return policy_from_model(parse_trust_policy(data), source="s", data=data)
    except ValueError as e:
        return e


def plain(data: bytes) -> tuple[tuple[trust.PolicySigner, ...], str] | None:
    docs, problems = parse_documents(data, path=trust.TRUST_PATH)
    return trust._plain_signers(docs[0].value) if len(docs) == 1 and not problems else None


def test_a_plain_trust_file_is_read_without_the_models_and_gives_their_policy() -> None:
    data = dump(plain_doc())
    assert plain(data) is not None  # the common shape takes the plain path
    assert policy_from_yaml(data, source="s") == by_models(data)
    # and it does so without importing pydantic (a fresh interpreter)
    code = (
        "import sys; from gitedge.core.trust.policy import policy_from_yaml; "
        f"p = policy_from_yaml({data!r}, source='s'); "
        "assert 'pydantic' not in sys.modules, 'pydantic was imported'; print(len(p.signers))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2"


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["spec"]["signers"][0].update(validBefore="2027-06-30T00:00:00Z"),
        lambda d: d["spec"]["signers"][0].update(valid_after=datetime(2026, 1, 1, tzinfo=UTC)),
        lambda d: d["metadata"].update(labels={"team": "ops"}),
        lambda d: d.update(api_version=d.pop("apiVersion")),
        lambda d: d["spec"]["signers"][1].update(name="release-bot"),  # duplicate
        lambda d: d["spec"]["signers"][0].update(roles=["release", "root"]),
        lambda d: d["spec"].update(verify="some"),
        lambda d: d["metadata"].update(name="Fleet"),
        lambda d: d["spec"].update(signers=[]),
    ],
)
def test_files_the_plain_reader_declines_get_the_models_answer(change: Any) -> None:
    doc = plain_doc()
    change(doc)
    data = dump(doc)
    assert plain(data) is None
    expected = by_models(data)
    if isinstance(expected, ValueError):
        with pytest.raises(ValueError) as e:
            policy_from_yaml(data, source="s")
        assert str(e.value) == str(expected)
    else:
        assert policy_from_yaml(data, source="s") == expected


EDGES = ["", "a", "fleet", "Fleet", "-a", "a-", "a" * 63, "a" * 64, "x\n", "release", "admin",
         "all", "first-parent", "TrustPolicy", "gitedge.io/v1alpha1", KEY, "2026-01-01"]  # fmt: skip
scalars = st.one_of(
    st.sampled_from(EDGES),
    st.text(max_size=8),
    st.integers(),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["name", "key", "roles", "x"]), inner, max_size=3)
    ),
    max_leaves=6,
)
fields = ["apiVersion", "kind", "metadata", "spec", "name", "key", "roles", "verify", "signers"]


texts = st.one_of(st.sampled_from(EDGES), st.text(max_size=6))
names = st.one_of(st.sampled_from(["bot", "alice", "b-2"]), st.text(min_size=1, max_size=6), texts)
good_roles = st.lists(st.sampled_from(["release", "admin"]), min_size=1, max_size=3)
roles = st.one_of(good_roles, st.lists(st.sampled_from(["release", "Release", ""]), max_size=2))
labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)


@st.composite
def near_plain(draw: st.DrawFn) -> dict[str, Any]:
    """Documents of the plain shape: half drawn to be plain, half with drawn strings anywhere."""
    if draw(st.booleans()):  # plain
        who = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3, unique=True))
        signers = [
            {"name": n, "key": draw(st.text(min_size=1)), "roles": draw(good_roles)} for n in who
        ]
        meta = {"name": draw(st.one_of(labels, texts))}
        verify = draw(st.sampled_from(["all", "first-parent", None]))
    else:
        signers = [
            {"name": draw(names), "key": draw(names), "roles": draw(roles)}
            for _ in range(draw(st.integers(0, 3)))
        ]
        meta = {"name": draw(st.one_of(labels, texts))}
        verify = draw(st.sampled_from(["all", "first-parent", "All", "", None]))
    spec: dict[str, Any] = {"signers": signers}
    if verify is not None:
        spec["verify"] = verify
    return {
        "apiVersion": "gitedge.io/v1alpha1",
        "kind": "TrustPolicy",
        "metadata": meta,
        "spec": spec,
    }


@st.composite
def mutated(draw: st.DrawFn) -> object:
    """A near-plain document with a few of its values replaced, keys dropped or added."""
    doc = draw(near_plain())
    for _ in range(draw(st.integers(0, 2))):
        holder = draw(st.sampled_from(list(dicts(doc))))
        op = draw(st.sampled_from(["set", "drop", "add"]))
        if op == "set" and holder:
            holder[draw(st.sampled_from(sorted(holder)))] = draw(values)
        elif op == "drop" and holder:
            holder.pop(draw(st.sampled_from(sorted(holder))))
        else:
            holder[draw(st.sampled_from([*fields, "validAfter", "labels", "extra"]))] = draw(values)
    return doc


def dicts(value: object) -> Any:
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from dicts(v)
    elif isinstance(value, list):
        for v in value:
            yield from dicts(v)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.one_of(near_plain(), mutated(), values))
def test_whatever_the_plain_reader_takes_the_models_take_alike(doc: object) -> None:
    data = dump(doc)
    got = plain(data)
    if got is None:
        return
    expected = by_models(data)
    assert isinstance(expected, trust.Policy), (
        f"models refuse what the plain reader took: {expected}"
    )
    assert got == (expected.signers, expected.verify)


def test_the_property_test_reaches_both_outcomes() -> None:
    """The property above is not vacuous: among simple mutations some stay plain, some do not."""
    stays = dump(json.loads(json.dumps(plain_doc())))
    assert plain(stays) is not None
    doc = plain_doc()
    doc["spec"]["signers"][0]["roles"] = ["release", 1]
    assert plain(dump(doc)) is None
