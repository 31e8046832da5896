"""Hostile bundles (issue 13): every blob member must match its name, and no index or tar shape
gets anything but an error of the one tree (gitedge/errors.py) out of ``bundle import``.

The base is a real bundle made by ``create_bundle`` (what ``gitedge bundle create`` runs) from a
signed fleet repo served by ``git daemon`` and images on a real ``docker-registry`` on 127.0.0.1.
The fuzz test mutates it with hypothesis: the index JSON (arbitrary JSON, the real document with
any field replaced by any JSON value, arbitrary bytes), the tar's members (dropped, duplicated,
swapped, renamed, retyped, data cut or extended or a byte flipped, a header size that lies) and
the tar as a whole (cut at any byte, a byte flipped anywhere). Each import must succeed or raise
a ``GitEdgeError``; a refused one leaves every row of the site's state database as it was.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from gitedge.agent.bundles import import_bundle
from gitedge.errors import InvalidInput
from tests.agentkit import START
from tests.test_bundle import IN_WINDOW, World, agent_of, recorded
from tests.test_bundle import world as world  # the module's shared upstream (fixture)

# ---------------------------------------------------------------------------- unreferenced blob


def _append(bundle: Path, name: str, data: bytes) -> None:
    """Add one regular member at the end of an uncompressed tar (``tarfile`` append mode)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    with tarfile.open(bundle, "a") as t:
        t.addfile(info, io.BytesIO(data))


def test_a_blob_no_image_uses_that_does_not_match_its_name_is_refused(
    world: World, tmp_path: Path
) -> None:
    """The README: every blob must hash to its name. One that no image of the index uses was
    accepted (only referenced blobs were checked); now the whole bundle is refused, naming the
    file and the member, with nothing recorded and nothing left in the scratch directory."""
    fleet = world.repo("unreferenced")
    tip = fleet.commit(world.files(), at=START)
    out = world.bundle("unreferenced", tmp_path / "b.tar", rev=tip)
    claimed = hashlib.sha256(b"what the name promises").hexdigest()
    member = f"images/blobs/sha256/{claimed}"
    _append(out, member, b"other bytes")
    agent = agent_of(world.site(tmp_path / "site"))
    try:
        with pytest.raises(InvalidInput) as e:
            import_bundle(agent, out, now=IN_WINDOW)
        text = str(e.value)
        assert f"bundle {out}" in text and member in text
        assert "sha256:" + hashlib.sha256(b"other bytes").hexdigest() in text
        assert recorded(agent) == (None, {}, None)
    finally:
        agent.close()
    state = tmp_path / "site" / "state"
    assert not (state / "cache").exists()
    assert list((state / "bundles").iterdir()) == []
    # the same blob with the bytes its name promises is accepted: the refusal is the hash
    good = world.bundle("unreferenced", tmp_path / "good.tar", rev=tip)
    _append(good, member, b"what the name promises")
    agent = agent_of(world.site(tmp_path / "site2"))
    try:
        assert import_bundle(agent, good, now=IN_WINDOW).tip == tip
    finally:
        agent.close()
