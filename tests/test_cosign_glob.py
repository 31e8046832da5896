"""Signer repository globs (``SignerKey.allows``), attacked by atk16: ``*`` matches ``/`` in the
repository path (docs/fleet-repo.md), but a ``*`` in the registry part reached into the path, so
``*.example.com/edge/*`` allowed ``evil.example.net/x.example.com/edge/app`` (a registry outside
example.com whose first path component looks like a host). The registry part of a glob is now
matched against the registry alone; ``..``, ``//``, upper case and the like never reach the glob
(``ImageRef`` refuses them), and a port is part of the registry."""

from __future__ import annotations

import fnmatch

from hypothesis import given, settings
from hypothesis import strategies as st

from gitedge.core.cosignsig import SignerKey, load_public_key
from gitedge.core.images import ImageRef
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
