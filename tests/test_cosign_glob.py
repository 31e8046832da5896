"""Signer repository globs (``SignerKey.allows``), attacked by atk16: ``*`` matches ``/`` in the
repository path (docs/fleet-repo.md), but a ``*`` in the registry part reached into the path, so
``*.example.com/edge/*`` allowed ``evil.example.net/x.example.com/edge/app`` (a registry outside
example.com whose first path component looks like a host). The registry part of a glob is now
matched against the registry alone; ``..``, ``//``, upper case and the like never reach the glob
(``ImageRef`` refuses them), and a port is part of the registry. Last, a parser differential
with sigstore-go: a signed statement with a duplicate key."""

from __future__ import annotations

import fnmatch

from hypothesis import given, settings
from hypothesis import strategies as st

from gitedge.core.images.cosign import SignerKey, load_public_key
from gitedge.core.images.refs import ImageRef
from tests.cosigntools import make_key

PEM = make_key().public_pem


def allows(glob: str, name: str) -> bool:
    return SignerKey("k", load_public_key(PEM), (glob,)).allows(name)


def test_a_wildcard_in_the_registry_part_stays_in_the_registry() -> None:
    assert allows("*.example.com/edge/*", "registry.example.com/edge/app")
    assert not allows("*.example.com/edge/*", "evil.example.net/x.example.com/edge/app")
    assert not allows("*/edge/*", "evil.example.net/team/edge/app")
    assert allows("*/edge/*", "evil.example.net/edge/app")  # any registry: as written
    assert allows("registry.example.com/edge/*", "registry.example.com/edge/a/b")  # * matches /
    assert not allows("registry.example.com/edge/*", "registry.example.com:5000/edge/app")
    assert not allows("registry.example.com/edge/*", "registry.example.com.evil.net/edge/app")
    assert allows("*", "anything.example/at/all")  # one * with no registry part: every image
    for bad in ("registry.example.com/edge/../x", "registry.example.com/edge//x",
                "registry.example.com/Edge/x"):  # fmt: skip
        try:
            ImageRef.parse(bad + ":1")
        except ValueError:
            continue
        raise AssertionError(f"{bad} parsed")


_part = st.text(alphabet=st.sampled_from("abc.-"), min_size=1, max_size=6)
_host = st.builds(lambda a, b: f"{a}.{b}", _part, _part)
_path = st.lists(_part, min_size=1, max_size=4).map("/".join)


@settings(max_examples=300, deadline=None)
@given(host_glob=st.text(alphabet=st.sampled_from("abc.-*?"), min_size=1, max_size=8), path_glob=st.text(
    alphabet=st.sampled_from("abc.-*/?"), min_size=1, max_size=10), host=_host, path=_path)  # fmt: skip
def test_a_glob_allows_an_image_only_when_its_registry_matches_the_registry_part(
    host_glob: str, path_glob: str, host: str, path: str
) -> None:
    glob, name = f"{host_glob}/{path_glob}", f"{host}/{path}"
    if allows(glob, name):
        assert fnmatch.fnmatchcase(host, host_glob) and fnmatch.fnmatchcase(path, path_glob)
    elif fnmatch.fnmatchcase(host, host_glob) and fnmatch.fnmatchcase(path, path_glob):
        raise AssertionError(f"{glob} refuses {name}")


def test_a_signed_statement_with_a_duplicate_key_is_refused() -> None:
    """Parser differential: a DSSE statement naming its subject twice. Python's ``json`` keeps
    the last, Go's ``encoding/json`` too, but sigstore-go reads the statement with ``protojson``
    (in-toto-golang ``Statement``), which refuses a duplicate field; gitedge accepted the last
    subject. Every JSON object gitedge reads from a signature artifact must now have unique
    keys (cosign never writes a duplicate)."""
    import base64
    import hashlib
    import json

    from gitedge.core.images.cosign import bundle_referrer, judge, pae
    from tests.cosigntools import BUNDLE, referrer_manifest

    key = make_key()
    digest, decoy = "sha256:" + "ab" * 32, "sha256:" + "cd" * 32
    statement = (
        '{"_type":"https://in-toto.io/Statement/v1",'
        f'"subject":[{{"digest":{{"sha256":"{decoy[7:]}"}}}}],'
        f'"subject":[{{"digest":{{"sha256":"{digest[7:]}"}}}}],'
        '"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}'
    ).encode()
    sig = key.sign(pae("application/vnd.in-toto+json", statement))
    bundle = json.dumps({"mediaType": BUNDLE, "verificationMaterial": {}, "dsseEnvelope": {
        "payload": base64.b64encode(statement).decode(),
        "payloadType": "application/vnd.in-toto+json",
        "signatures": [{"sig": base64.b64encode(sig).decode()}]}}).encode()  # fmt: skip
    m = referrer_manifest(bundle=bundle, subject=("application/vnd.oci.image.index.v1+json",
                                                  digest, 1000))  # fmt: skip
    blobs = {"sha256:" + hashlib.sha256(bundle).hexdigest(): bundle}
    try:
        c = bundle_referrer(m, blobs, subject=digest, where="r")
    except ValueError as e:
        assert "duplicate key 'subject'" in str(e)
        return
    signer = SignerKey("k", load_public_key(key.public_pem), ("registry.example.com/edge/*",))
    v = judge(repository="registry.example.com/edge/os", digest=digest, candidates=[c],
              signers=[signer])  # fmt: skip
    raise AssertionError(f"accepted: {v}")
