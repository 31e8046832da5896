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
from gitedge.core.delivery.pinning import pin_edit, references, splice
from gitedge.core.fleet.model import load_fleet
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


def test_check_spliced_refuses_a_digest_in_the_wrong_entry() -> None:
    """The CLI's last word before writing: the spliced file must parse to the same documents
    with only the references changed; a digest given to the wrong release is refused."""
    from gitedge.core.delivery.pinning import check_spliced
    from gitedge.errors import InvalidFleetRepo

    before = CATALOG + TWO
    wrong = before.replace("v1.31.2+k3s1}", f"v1.31.2+k3s1, digest: {B}}}")
    right = before.replace("v1.30.6+k3s1}", f"v1.30.6+k3s1, digest: {B}}}")
    pins = {"v1.30.6+k3s1": B}
    check_spliced(before, right, path="r.yaml", images={}, releases=pins)
    with pytest.raises(InvalidFleetRepo, match="more than the references: .spec.releases"):
        check_spliced(before, wrong, path="r.yaml", images={}, releases=pins)
    image = TARGET + "  os: {image: a/b:1, upgrader: kairos}\n"
    moved = image.replace("a/b:1,", f"a/b:1@{B},")
    check_spliced(image, moved, path="t.yaml", images={"a/b:1": f"a/b:1@{B}"}, releases={})
    with pytest.raises(InvalidFleetRepo, match="would break the file"):
        check_spliced(image, moved + "  - x\n", path="t.yaml",
                      images={"a/b:1": f"a/b:1@{B}"}, releases={})  # fmt: skip


# -- the splice invariant over many ways to write the same catalog and target (hypothesis) --

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

VERSIONS = ["v1.29.10+k3s1", "v1.30.6+k3s1", "v1.31.2+k3s1"]
SCALAR_STYLES = ["plain", "single", "double", "strip-literal", "strip-folded"]


def _scalar(value: str, style: str, indent: int) -> str:
    pad = " " * (indent + 2)
    return {
        "plain": value,
        "single": f"'{value}'",
        "double": f'"{value}"',
        "strip-literal": f"|-\n{pad}{value}",
        "strip-folded": f">-\n{pad}{value}",
    }[style]


@st.composite
def catalog(draw: st.DrawFn) -> tuple[str, list[str]]:
    nl = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    comment = draw(st.sampled_from(["", "  # note", " # é 😀"]))
    versions = draw(st.lists(st.sampled_from(VERSIONS), min_size=1, max_size=3, unique=True))
    lines = [*CATALOG.splitlines(), "  releases:"]
    for v in versions:
        has_released = draw(st.booleans())
        digest = draw(st.sampled_from(["", "null", "~", "sha256:" + "a" * 64]))
        if draw(st.booleans()):  # flow
            parts = [
                f"version: {_scalar(v, draw(st.sampled_from(['plain', 'single', 'double'])), 0)}"
            ]
            if has_released:
                parts.append("released: '2024-10'")
            if digest:
                parts.append(f"digest: {digest}")
            lines.append("    - {" + ", ".join(parts) + "}" + comment)
            continue
        fields = [("version", v)] + ([("released", "2024-10")] if has_released else [])
        fields = draw(st.permutations(fields))
        if digest:
            fields.insert(draw(st.integers(0, len(fields))), ("digest", digest))
        for i, (k, value) in enumerate(fields):
            style = "plain" if k == "digest" else draw(st.sampled_from(SCALAR_STYLES))
            text = _scalar(value, style, 6)
            after = comment if "\n" not in text else ""
            lines.append(f"    {'- ' if i == 0 else '  '}{k}: {text}{after}")
        if draw(st.booleans()):
            lines.append("")
    text = nl.join(lines) + nl
    return ("\ufeff" if draw(st.booleans()) else "") + text, versions


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalog())
def test_pinning_any_catalog_changes_only_the_digests(case: tuple[str, list[str]]) -> None:
    from gitedge.core.delivery.pinning import check_spliced

    text, versions = case
    body = text.removeprefix("\ufeff")  # as the CLI splices it
    digests = {v: "sha256:" + hashlib.sha256(v.encode()).hexdigest() for v in versions}
    fleet = load_fleet({"r.yaml": text.encode()})
    refs = references(fleet, upgrade_image="rancher/k3s-upgrade")
    new = splice(body, [pin_edit(body, r, digests[r.version]) for r in refs if r.version])
    check_spliced(body, new, path="r.yaml", images={}, releases=digests)
    expected = yaml.safe_load(body)
    for entry in expected["spec"]["releases"]:
        entry["digest"] = digests[entry["version"]]
    assert yaml.safe_load(new) == expected


@st.composite
def target(draw: st.DrawFn) -> str:
    image = "reg.example/edge/os:1.5.0"
    style = draw(st.sampled_from(SCALAR_STYLES))
    comment = draw(st.sampled_from(["", "  # os", " # é 😀"]))
    anchor = draw(st.sampled_from(["", "&i "]))
    shape = draw(st.sampled_from(["block", "flow", "merge", "merge-list"]))
    if style.startswith("strip") and shape in ("flow", "merge-list"):
        shape = "merge"  # a block scalar has no place in a flow collection
    value = anchor + _scalar(image, style, 6 if shape == "merge" else 4)
    after = comment if "\n" not in value else ""
    if shape == "block":
        os = f"  os:\n    upgrader: kairos\n    image: {value}{after}\n"
    elif shape == "flow":
        os = f"  os: {{image: {value}, upgrader: kairos}}{after}\n"
    elif shape == "merge-list":
        os = f"  os:\n    <<: [{{image: {value}}}, {{upgrader: kairos}}]{after}\n"
    else:
        os = f"  os:\n    upgrader: kairos\n    <<:\n      image: {value}{after}\n"
    text = TARGET + os
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target())
def test_pinning_any_target_changes_only_the_image(text: str) -> None:
    from gitedge.core.delivery.pinning import check_spliced

    image = "reg.example/edge/os:1.5.0"
    fleet = load_fleet({"t.yaml": text.encode()})
    (ref,) = references(fleet, upgrade_image="rancher/k3s-upgrade")
    new = splice(text, [pin_edit(text, ref, B)])
    check_spliced(text, new, path="t.yaml", images={image: f"{image}@{B}"}, releases={})
    expected = yaml.safe_load(text)
    expected["spec"]["os"]["image"] = f"{image}@{B}"
    assert yaml.safe_load(new) == expected


# -- hostile registry answers (a scripted server on 127.0.0.1) ------------------------------

_INDEX = "application/vnd.oci.image.index.v1+json"


def _pin_against(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answer: object, *, catalog: bool = False
) -> tuple[int, str, str, str]:
    """``gitedge pin`` of a target (or a catalog) naming an image on the scripted server:
    exit code, output, the file before and after."""
    with hostile_server(answer) as reg:  # type: ignore[arg-type]
        if catalog:
            text = CATALOG + "  releases:\n    - {version: v1.30.6+k3s1}\n"
            (tmp_path / "r.yaml").write_text(text)
            (tmp_path / "t.yaml").write_text(
                TARGET + f"  k3s: {{version: v1.30.6+k3s1, upgradeImage: {reg.host}/k3s-up}}\n"
            )
            path = tmp_path / "r.yaml"
        else:
            text = TARGET + f"  os: {{image: {reg.host}/edge/os:1.5.0, upgrader: kairos}}\n"
            path = tmp_path / "t.yaml"
            path.write_text(text)
        code = main(["pin", str(tmp_path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err, text, path.read_text()


def _image_manifest(pad: int = 0) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": _IMAGE, "config": _DESC, "layers": []}
    if pad:
        doc["annotations"] = {"pad": "x" * pad}
    return json.dumps(doc).encode()


def test_a_digest_header_that_is_not_the_bytes_is_refused_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = _image_manifest()
    lie = "sha256:" + hashlib.sha256(b"other bytes").hexdigest()
    code, out, before, after = _pin_against(
        tmp_path, capsys, lambda req: Answer(200, _headers(body, lie), body)
    )
    assert code == 1 and after == before, out
    assert "manifest bytes hash to sha256:" + hashlib.sha256(body).hexdigest() in out


def test_a_digest_header_with_a_newline_or_yaml_cannot_reach_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The header is folded onto a second line (``\\r\\n`` then a space: obs-fold) to carry
    YAML after a real digest; what is written is always the hash of the bytes, never the
    header, and a header that is not a bare digest is refused."""
    body = _image_manifest()
    real = "sha256:" + hashlib.sha256(body).hexdigest()
    evil = f"{real}\r\n x: [injected]"
    code, out, before, after = _pin_against(
        tmp_path, capsys, lambda req: Answer(200, _headers(body, evil), body)
    )
    assert code == 1 and after == before, out
    assert "injected" not in after and "Traceback" not in out


def test_an_oversized_manifest_is_refused_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = _image_manifest(pad=5 << 20)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    code, out, before, after = _pin_against(
        tmp_path, capsys, lambda req: Answer(200, _headers(body, digest), body)
    )
    assert code == 1 and after == before, out
    assert "too large" in out or "larger" in out, out


def test_a_sha512_digest_is_written_as_the_sha256_of_the_same_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Attack: the registry announces (correctly) a sha512 digest. The catalog's ``digest``
    takes sha256 only: pin wrote ``sha512:...`` there and the repo no longer loaded. The bytes
    were verified against the sha512; their sha256 is what gets written."""
    body = json.dumps({"schemaVersion": 2, "mediaType": _INDEX, "manifests": []}).encode()
    d512 = "sha512:" + hashlib.sha512(body).hexdigest()
    headers = (("Content-Type", _INDEX), ("Content-Length", str(len(body))),
               ("Docker-Content-Digest", d512))  # fmt: skip
    code, out, before, after = _pin_against(
        tmp_path, capsys, lambda req: Answer(200, headers, body), catalog=True
    )
    assert code == 0, out
    assert after == before.replace(
        "v1.30.6+k3s1}", f"v1.30.6+k3s1, digest: sha256:{hashlib.sha256(body).hexdigest()}}}"
    )
    load_fleet({"r.yaml": after.encode()})


def test_an_image_also_spelled_inside_its_own_tag_is_replaced_where_the_value_is() -> None:
    """Attack: a verbatim core tag holds the image's text (``!<tag:yaml.org,2002:str>
    2002:str``): the first match in the scalar's span was inside the tag, and the splice broke
    the tag (the check before writing refused the file). The value comes last in the span."""
    text = TARGET + "  os: {image: !<tag:yaml.org,2002:str> 2002:str, upgrader: kairos}\n"
    out = pinned({"t.yaml": text}, "t.yaml", {"2002:str": B})
    assert out == text.replace("> 2002:str,", f"> 2002:str@{B},")


@pytest.mark.parametrize("brk", ["\u2028", "\u2029", "\x85"])
def test_a_unicode_line_break_ends_the_entry_line(brk: str) -> None:
    """Attack: YAML 1.1 also breaks lines at NEL, LS and PS: the digest line of the first entry
    went after the second (a newline search saw one line)."""
    text = CATALOG + f"  releases:\n    - version: v1.30.6+k3s1{brk}    - version: v1.31.2+k3s1\n"
    fleet = load_fleet({"r.yaml": text.encode()})
    first = references(fleet, upgrade_image="rancher/k3s-upgrade")[0]
    out = splice(text, [pin_edit(text, first, B)])
    assert yaml.safe_load(out)["spec"]["releases"] == [
        {"version": "v1.30.6+k3s1", "digest": B},
        {"version": "v1.31.2+k3s1"},
    ]


def test_a_splice_that_would_change_more_is_not_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last word before writing: an edit that changes more than the reference (as the
    block-scalar splice once did) leaves the file as it was, exit 1, the file named."""
    import gitedge.cli.pin as cli_pin
    from gitedge.core.delivery.pinning import Edit

    def more_than_the_digest(text: str, ref: object, digest: str) -> Edit:
        at = text.index("v1.30.6+k3s1") + len("v1.30.6+k3s1")
        return Edit("r.yaml", at, at, f", released: '2024-10', digest: {digest}")

    monkeypatch.setattr(cli_pin, "pin_edit", more_than_the_digest)
    body = json.dumps({"schemaVersion": 2, "mediaType": _INDEX, "manifests": []}).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    headers = (("Content-Type", _INDEX), ("Content-Length", str(len(body))),
               ("Docker-Content-Digest", digest))  # fmt: skip
    code, out, before, after = _pin_against(
        tmp_path, capsys, lambda req: Answer(200, headers, body), catalog=True
    )
    assert code == 1 and after == before, out
    assert "r.yaml: not written: " in out and "more than the references" in out, out
    assert "Traceback" not in out


def test_check_sees_an_image_behind_a_merge_key_on_a_real_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end against docker-registry: a target whose OS image is written behind ``<<``.
    ``pin --check`` called it pinned (exit 0) while the agent would pull it by tag; now
    --check fails, pin pins it in place, --check passes."""
    from tests.agentkit import push_image
    from tests.registryserver import docker_registry

    with docker_registry(tmp_path / "reg") as reg:
        digest = push_image(tmp_path, f"{reg.host}/edge/os:1.5.0", sizes=(2_000,)).digest
        repo = tmp_path / "fleet"
        repo.mkdir()
        target = (
            TARGET + f"  os:\n    <<: {{image: {reg.host}/edge/os:1.5.0}}\n    upgrader: kairos\n"
        )
        (repo / "t.yaml").write_text(target)
        assert main(["pin", "--check", str(repo)]) == 1
        assert "t.yaml:7: image " in capsys.readouterr().out
        assert main(["pin", str(repo)]) == 0, capsys.readouterr()
        pinned_text = target.replace("os:1.5.0}", f"os:1.5.0@{digest}}}")
        assert (repo / "t.yaml").read_text() == pinned_text
        assert main(["pin", "--check", str(repo)]) == 0, capsys.readouterr()
