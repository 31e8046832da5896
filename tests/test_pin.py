"""``gitedge pin`` against a real ``docker-registry`` on 127.0.0.1.

examples/fleet-repo is copied, its registry host rewritten to the local registry and its digests
stripped; ``gitedge pin`` must give back the same bytes with only the references changed (the
local registry's digests in place of the example's). ``--check`` and ``--update`` exit codes,
a tag moved upstream, an unreachable registry, a missing tag, a version with no place for a
digest, and credentials from an AgentConfig are each checked. The splicing itself (block and
flow mappings, quoting, comments, CRLF) is also checked without a registry.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitedge.cli import main
from gitedge.core.delivery.pinning import pin_edit, references, splice
from gitedge.core.fleet.model import load_fleet
from tests.agentkit import push_image
from tests.registryserver import RegistryServer, docker_registry, module_registry

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fleet-repo"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
VERSIONS = [
    "v1.27.16+k3s1", "v1.28.14+k3s1", "v1.28.15+k3s1", "v1.29.10+k3s1",
    "v1.30.5+k3s1", "v1.30.6+k3s1", "v1.31.2+k3s1",
]  # fmt: skip
OS_TAGS = [
    "edge/os:1.4.2", "edge/os:1.5.0", "edge/farm-os:2.1.0",
    "kairos/ubuntu:24.04-standard-amd64-generic-v3.2.4-k3sv1.31.2-k3s1",
    "kairos/ubuntu:24.04-standard-amd64-generic-v3.2.4-k3sv1.30.6-k3s1",
]  # fmt: skip

registry = module_registry("pin-registry")


@pytest.fixture(scope="module")
def pushed(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every image the example names, pushed to the local registry: ``repo:tag`` -> digest."""
    tmp = tmp_path_factory.mktemp("images")
    out = {}
    for repo_tag in [*OS_TAGS, *(f"rancher/k3s-upgrade:{v.replace('+', '-')}" for v in VERSIONS)]:
        out[repo_tag] = push_image(tmp, f"{registry.host}/{repo_tag}", sizes=(2_000,)).digest
    return out


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def prepared(tmp: Path, host: str) -> Path:
    """The example, its images on ``host`` (the K3s targets name the upgrade image there)."""
    work = tmp / "fleet"
    shutil.copytree(EXAMPLE, work)
    for p in work.rglob("*.yaml"):
        text = p.read_text().replace("registry.example.com", host)
        text = text.replace(
            "  k3s:\n    version: ",
            f"  k3s:\n    upgradeImage: {host}/rancher/k3s-upgrade\n    version: ",
        )
        p.write_text(text)
    return work


def strip_digests(root: Path) -> None:
    for p in root.rglob("*.yaml"):
        text = re.sub(r"@sha256:[0-9a-f]{64}", "", p.read_text())
        p.write_text(re.sub(r", digest: sha256:[0-9a-f]{64}", "", text))


def pinned_as(root: Path, host: str, digests: dict[str, str]) -> dict[str, bytes]:
    """``root``'s files with every digest replaced by the one ``digests`` gives its image."""
    out = {}
    for name, data in files(root).items():
        text = data.decode()
        text = re.sub(
            rf"({re.escape(host)}/((?:edge|kairos)/[a-z-]+:[\w.-]+))@sha256:[0-9a-f]{{64}}",
            lambda m: f"{m[1]}@{digests[m[2]]}",
            text,
        )
        text = re.sub(
            r"\{version: (v[^,]+), digest: sha256:[0-9a-f]{64}\}",
            lambda m: (
                f"{{version: {m[1]}, digest: {digests['rancher/k3s-upgrade:' + m[1].replace('+', '-')]}}}"
            ),
            text,
        )
        out[name] = text.encode()
    return out


def pin(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["pin", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def example(registry: RegistryServer, pushed: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    yield prepared(tmp_path, registry.host)


def test_pin_on_the_example_changes_only_the_references(
    example: Path, registry: RegistryServer, pushed: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    expected = pinned_as(example, registry.host, pushed)
    assert len(DIGEST.findall(b"".join(expected.values()).decode())) == len(OS_TAGS) + len(VERSIONS)
    strip_digests(example)
    unpinned = files(example)
    assert not DIGEST.search(b"".join(unpinned.values()).decode())

    code, out = pin(capsys, str(example), "--check")  # writes nothing, says what is unpinned
    assert code == 1 and files(example) == unpinned
    assert f"targets/stores.yaml:38: image {registry.host}/edge/os:1.5.0 is not pinned" in out

    code, out = pin(capsys, str(example))
    assert code == 0, out
    assert files(example) == expected  # byte for byte: comments, order, quoting all kept
    assert out.count(": pinned ") == len(OS_TAGS) + len(VERSIONS)
    assert pin(capsys, str(example), "--check")[0] == 0


def test_a_moved_tag_fails_check_and_only_update_takes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with docker_registry(tmp_path / "reg") as reg:  # its own: the tag is moved here
        first = push_image(tmp_path / "first", f"{reg.host}/edge/farm-os:2.1.0", sizes=(2_000,))
        k3s = push_image(tmp_path / "k3s", f"{reg.host}/k3s-upgrade:v1.30.6-k3s1", sizes=(2_000,))
        root = tmp_path / "fleet"
        root.mkdir()
        (root / "t.yaml").write_text(
            "apiVersion: gitedge.io/v1alpha1\nkind: UpgradeTarget\nmetadata: {name: t}\nspec:\n"
            f"  clusterSelector: {{}}\n  os:\n    image: {reg.host}/edge/farm-os:2.1.0  # farm\n"
            f"  k3s: {{version: v1.30.6+k3s1, upgradeImage: {reg.host}/k3s-upgrade}}\n"
        )
        (root / "r.yaml").write_text(
            "apiVersion: gitedge.io/v1alpha1\nkind: K3sReleases\nmetadata: {name: k}\nspec:\n"
            "  releases:\n    - version: v1.30.6+k3s1\n"
        )
        assert pin(capsys, str(root))[0] == 0
        before = files(root)
        assert f"farm-os:2.1.0@{first.digest}  # farm\n" in before["t.yaml"].decode()
        assert (
            before["r.yaml"]
            .decode()
            .endswith(f"    - version: v1.30.6+k3s1\n      digest: {k3s.digest}\n")
        )
        moved = push_image(tmp_path / "moved", f"{reg.host}/edge/farm-os:2.1.0", sizes=(3_000,))
        code, out = pin(capsys, str(root), "--check")
        assert code == 1 and files(root) == before
        assert f"t.yaml:7: image {reg.host}/edge/farm-os:2.1.0@{first.digest}: the tag moved" in out
        assert moved.digest in out and "--update" in out
        assert pin(capsys, str(root))[0] == 0  # without --update a pin stays
        assert files(root) == before
        code, out = pin(capsys, str(root), "--update")
        assert code == 0, out
        after = files(root)
        assert after["t.yaml"] == before["t.yaml"].replace(
            first.digest.encode(), moved.digest.encode()
        )
        assert after["r.yaml"] == before["r.yaml"]
        assert pin(capsys, str(root), "--check")[0] == 0


def test_unreachable_registry_missing_tag_and_versions_list_are_named(
    registry: RegistryServer, pushed: dict[str, str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    root = tmp_path / "fleet"
    root.mkdir()
    target = (
        "apiVersion: gitedge.io/v1alpha1\nkind: UpgradeTarget\nmetadata: {{name: {name}}}\n"
        "spec:\n  clusterSelector: {{}}\n  os:\n    image: {image}\n"
    )
    (root / "a.yaml").write_text(target.format(name="a", image="127.0.0.1:1/edge/os:1.0"))
    (root / "b.yaml").write_text(target.format(name="b", image=f"{registry.host}/edge/os:9.9"))
    (root / "c.yaml").write_text(target.format(name="c", image=f"{registry.host}/edge/os:1.5.0"))
    (root / "r.yaml").write_text(
        "apiVersion: gitedge.io/v1alpha1\nkind: K3sReleases\nmetadata: {name: k}\nspec:\n"
        "  versions: [v1.30.6+k3s1]\n"
    )
    code, out = pin(capsys, str(root))
    assert code == 1
    assert f"{root}/a.yaml:7: image 127.0.0.1:1/edge/os:1.0: " in out
    assert f"{root}/b.yaml:7: image {registry.host}/edge/os:9.9: " in out and "not found" in out
    assert f"{root}/r.yaml:5: K3s v1.30.6+k3s1: listed under spec.versions" in out
    assert "move it to spec.releases as `- {version: v1.30.6+k3s1}`" in out
    assert "3 image(s) left unpinned" in out
    # what could be pinned was, and nothing else changed
    assert (root / "c.yaml").read_text() == target.format(
        name="c", image=f"{registry.host}/edge/os:1.5.0@{pushed['edge/os:1.5.0']}"
    )
    assert (root / "a.yaml").read_text() == target.format(name="a", image="127.0.0.1:1/edge/os:1.0")
    assert "Traceback" not in out


def test_credentials_come_from_the_agent_config(
    registry: RegistryServer, pushed: dict[str, str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    user, password = "fleet-ci", "s3cret-pin-password"
    with docker_registry(tmp_path / "auth", htpasswd=(user, password)) as reg:
        from gitedge.adapters.images.mirroring import Mirror
        from gitedge.adapters.registry.hosts import HostConfig, Hosts

        (tmp_path / "user").write_text(user + "\n")
        (tmp_path / "password").write_text(password + "\n")
        hosts = Hosts(
            {
                reg.host: HostConfig(
                    username_file=tmp_path / "user", password_file=tmp_path / "password"
                )
            }
        )
        with Mirror(hosts=hosts) as m:
            m.mirror(f"{registry.host}/edge/os:1.5.0", f"{reg.host}/edge/os:1.5.0")
        root = tmp_path / "fleet"
        root.mkdir()
        (root / "t.yaml").write_text(
            "apiVersion: gitedge.io/v1alpha1\nkind: UpgradeTarget\nmetadata: {name: t}\nspec:\n"
            f'  clusterSelector: {{}}\n  os: {{image: "{reg.host}/edge/os:1.5.0"}}\n'
        )
        code, out = pin(capsys, str(root))
        assert code == 1 and "usernameFile" in out  # no credentials: refused, said why
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(
            "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\ncluster: {name: ci}\n"
            "source: {url: 'git://127.0.0.1:1/fleet.git'}\n"
            f"trust: {{bootstrap: {tmp_path / 'allowed'}}}\n"
            f"registry:\n  upstreamAuth:\n    '{reg.host}':\n"
            f"      usernameFile: {tmp_path / 'user'}\n      passwordFile: {tmp_path / 'password'}\n"
            f"state: {{dir: {tmp_path / 'state'}}}\n"
        )
        code, out = pin(capsys, str(root), "--config", str(cfg))
        assert code == 0, out
        assert password not in out
    assert (
        f'os: {{image: "{reg.host}/edge/os:1.5.0@{pushed["edge/os:1.5.0"]}"}}'
        in (root / "t.yaml").read_text()
    )


def test_splices_keep_block_flow_quoting_comments_and_crlf() -> None:
    text = (
        "# catalog\r\napiVersion: gitedge.io/v1alpha1\r\nkind: K3sReleases\r\n"
        "metadata: {name: k}\r\nspec:\r\n  releases:\r\n"
        "    - version: v1.30.6+k3s1   # the one\r\n      released: 2024-10  # built\r\n"
        "    # between\r\n    - {version: 'v1.31.2+k3s1' , released: \"2024-11\"}\r\n"
        "    - version: v1.29.10+k3s1\r\n      digest: sha256:" + "a" * 64 + "  # old\r\n"
    )
    target = (
        "apiVersion: gitedge.io/v1alpha1\nkind: UpgradeTarget\nmetadata: {name: t}\nspec:\n"
        '  clusterSelector: {}\n  os:\n    image: "registry.example.com/edge/os:1.5.0" # os\n'
    )
    fleet = load_fleet({"r.yaml": text.encode(), "t.yaml": target.encode()})
    refs = references(fleet, upgrade_image="rancher/k3s-upgrade")
    assert [(r.kind, r.path, r.line, r.digest is not None) for r in refs] == [
        ("release", "r.yaml", 7, False),
        ("release", "r.yaml", 10, False),
        ("release", "r.yaml", 11, True),
        ("image", "t.yaml", 7, False),
    ]
    b, c, d = "sha256:" + "b" * 64, "sha256:" + "c" * 64, "sha256:" + "d" * 64
    new = splice(
        text, [pin_edit(text, refs[0], b), pin_edit(text, refs[1], c), pin_edit(text, refs[2], d)]
    )
    assert new == text.replace(
        "released: 2024-10  # built\r\n", f"released: 2024-10  # built\r\n      digest: {b}\r\n"
    ).replace('released: "2024-11"}', f'released: "2024-11", digest: {c}}}').replace(
        "a" * 64, "d" * 64
    )
    assert load_fleet({"r.yaml": new.encode()}).k3s_release_details()
    pinned = splice(target, [pin_edit(target, refs[3], b)])
    assert pinned == target.replace('os:1.5.0"', f'os:1.5.0@{b}"')


def test_splices_flow_plain_images_and_null_or_empty_digests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    b = "sha256:" + "b" * 64
    target = (
        "apiVersion: gitedge.io/v1alpha1\nkind: UpgradeTarget\nmetadata: {name: t}\nspec:\n"
        "  clusterSelector: {}\n  os: {image: registry.example.com/edge/os:1.5.0, upgrader: kairos}\n"
    )
    releases = (
        "apiVersion: gitedge.io/v1alpha1\nkind: K3sReleases\nmetadata: {name: k}\nspec:\n"
        "  releases:\n    - {version: v1.30.6+k3s1, digest: null}\n"
        "    - version: v1.31.2+k3s1\n      digest:\n"
    )
    fleet = load_fleet({"t.yaml": target.encode(), "r.yaml": releases.encode()})
    null, empty, image = references(fleet, upgrade_image="rancher/k3s-upgrade")
    pinned = splice(target, [pin_edit(target, image, b)])
    assert pinned == target.replace("os:1.5.0,", f"os:1.5.0@{b},")
    os = load_fleet({"t.yaml": pinned.encode()}).targets["t"].spec.os
    assert os is not None and os.image == f"registry.example.com/edge/os:1.5.0@{b}"
    assert splice(releases, [pin_edit(releases, null, b)]) == releases.replace("null", b)
    from gitedge.errors import InvalidFleetRepo

    with pytest.raises(InvalidFleetRepo, match="r.yaml:8: cannot find"):
        pin_edit(releases, empty, b)
