"""Attacks on ``gitedge pin`` (engineer atk18): YAML whose structure the splice must respect
(aliases, merge keys, block scalars, a BOM) and hostile registry answers from a scripted server
on 127.0.0.1. The rule each test holds: after ``pin`` the file parses to the same document with
only image references changed, or nothing is written and the CLI says why (no traceback)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from gitedge.cli import main
from gitedge.core.fleet import load_fleet
from gitedge.core.pinning import pin_edit, references, splice
from tests.hostileserver import Answer, Request, hostile_server

B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64
TARGET = (
    "apiVersion: gitedge.io/v1alpha1\nkind: UpgradeTarget\nmetadata: {name: t}\nspec:\n"
    "  clusterSelector: {}\n"
)
CATALOG = "apiVersion: gitedge.io/v1alpha1\nkind: K3sReleases\nmetadata: {name: k}\nspec:\n"
TWO = "  releases:\n    - {version: v1.30.6+k3s1}\n    - {version: v1.31.2+k3s1}\n"


def pinned(files: dict[str, str], path: str, digests: dict[str, str]) -> str:
    """``path`` of ``files`` with every reference in it pinned to ``digests[image]``."""
    fleet = load_fleet({k: v.encode() for k, v in files.items()})
    refs = [r for r in references(fleet, upgrade_image="rancher/k3s-upgrade") if r.path == path]
    text = files[path]
    return splice(text, [pin_edit(text, r, digests[r.image]) for r in refs])


def test_an_image_behind_a_merge_key_is_found_and_pinned() -> None:
    """Attack: ``os: {<<: {image: ...}}``: the loader merges it (the target names the image),
    the reference finder looked only at explicit keys: the image stayed unpinned and
    ``pin --check`` called the repo pinned."""
    text = TARGET + "  os:\n    <<: {image: reg.example/edge/os:1.5.0}\n    upgrader: kairos\n"
    out = pinned({"t.yaml": text}, "t.yaml", {"reg.example/edge/os:1.5.0": B})
    assert out == text.replace("os:1.5.0}", f"os:1.5.0@{B}}}")


def test_an_aliased_image_is_one_reference_and_one_edit() -> None:
    """Attack: the same scalar named twice through an alias (``image: *i``): two references
    to one node made two edits at one place, and ``splice`` raised ValueError (a traceback
    from the CLI)."""
    text = TARGET + (
        "  os:\n    image: &i reg.example/edge/os:1.5.0\n    upgrader: kairos\n"
        "    k3s: v1.31.2+k3s1\n    via:\n      - {image: *i, k3s: v1.30.6+k3s1}\n"
    )
    files = {"t.yaml": text, "r.yaml": CATALOG + TWO}
    out = pinned(files, "t.yaml", {"reg.example/edge/os:1.5.0": B})
    assert out == text.replace("os:1.5.0\n", f"os:1.5.0@{B}\n")


def test_a_block_scalar_last_field_gets_the_digest_in_its_own_entry() -> None:
    """Attack: a release entry whose last field is a block scalar: its end mark lies past the
    line break, so the new ``digest:`` line went after the NEXT line, into the next entry
    (that entry's digest given to it, or a duplicate key written)."""
    text = CATALOG + (
        "  releases:\n    - version: v1.30.6+k3s1\n      released: >-\n        2024-10\n"
        "    - version: v1.31.2+k3s1\n"
    )
    digests = {"rancher/k3s-upgrade:v1.30.6-k3s1": B, "rancher/k3s-upgrade:v1.31.2-k3s1": C}
    out = pinned({"r.yaml": text}, "r.yaml", digests)
    doc = yaml.safe_load(out)
    assert doc["spec"]["releases"] == [
        {"version": "v1.30.6+k3s1", "released": "2024-10", "digest": B},
        {"version": "v1.31.2+k3s1", "digest": C},
    ]


def test_a_file_with_a_bom_is_pinned_and_keeps_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Attack: a UTF-8 BOM. The parser's offsets do not count it, the CLI's text did: every
    splice was one character off (refused as 'cannot find', or worse)."""
    manifest = json.dumps({"schemaVersion": 2, "mediaType": _IMAGE, "config": _DESC,
                           "layers": []}).encode()  # fmt: skip
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()

    def answer(req: Request) -> Answer:
        return Answer(200, _headers(manifest, digest), manifest)

    with hostile_server(answer) as reg:
        text = "\ufeff" + TARGET + f"  os: {{image: {reg.host}/edge/os:1.5.0, upgrader: kairos}}\n"
        (tmp_path / "t.yaml").write_bytes(text.encode())
        code = main(["pin", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 0, out
    assert (tmp_path / "t.yaml").read_bytes() == text.replace("1.5.0,", f"1.5.0@{digest},").encode()


_IMAGE = "application/vnd.oci.image.manifest.v1+json"
_DESC = {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
         "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()}  # fmt: skip


def _headers(body: bytes, digest: str) -> tuple[tuple[str, str], ...]:
    return (
        ("Content-Type", _IMAGE),
        ("Content-Length", str(len(body))),
        ("Docker-Content-Digest", digest),
    )
