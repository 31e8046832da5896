"""Mirroring against real registries: Debian's docker-registry on 127.0.0.1, skopeo as reference.

Covers: a two-arch OCI index copied registry -> registry with every digest equal to what
``skopeo inspect --raw`` reads at the destination (index and each child, bytes identical to the
source's); a Docker manifest list the same way; a tag pinned to the digest of the bytes read and
a pinned ``@digest`` source; ``--platform`` keeping the chosen manifests' digests (the cut index
is new bytes, the other platform is not copied) and refusing a platform the index lacks; blobs
the destination has skipped (HEAD), blobs mounted across repositories of the cache; a no-op
re-mirror and a tag-only update; parallel blob transfers bounded by ``jobs`` (a front that holds
blob GETs until enough arrive together); OCI layouts as source and destination, read back by
skopeo; htpasswd (basic) and bearer-token auth with credentials from files, and a static token
file (wrong or missing credentials: clear errors without the secret, in messages and logs); TLS
with a CA made in the test (wrong CA, no CA); plain HTTP only for loopback and insecure hosts; the ``gitedge mirror`` command (digest on stdout, ``-o json``, quiet
lines off a terminal, a progress bar on one, usage errors, ``--config``).
"""

from __future__ import annotations

import json
import logging
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from gitedge.adapters.images.mirroring import Mirror, MirrorResult
from gitedge.adapters.registry.client import RegistryClient
from gitedge.adapters.registry.hosts import HostConfig, Hosts, RetryPolicy
from gitedge.core.images.manifests import Platform
from gitedge.errors import InvalidImage, RegistryAuthError, RegistryRefused, RegistryUnavailable
from tests.gitserver import make_tls_files
from tests.registryserver import (
    LayoutImage,
    RegistryServer,
    docker_registry,
    http_front,
    make_layout,
    module_registry,
    served,
    sha256,
    skopeo,
    skopeo_push,
    skopeo_raw,
    token_service,
)

pytestmark = pytest.mark.timeout(90)

FAST = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05, read_timeout_s=20)
USER, PASSWORD = "site-agent", "pw-Zq8v-not-in-any-message"


src = module_registry("src")  # shared by the tests of this file; repos keep them apart
dst = module_registry("dst")


@pytest.fixture(scope="module")
def image(src: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> LayoutImage:
    """A two-arch OCI index (three blobs a platform, one layer shared) in ``src`` as os:1.0."""
    img = make_layout(tmp_path_factory.mktemp("img") / "layout", shared_layer=50_000)
    skopeo_push(img, f"{src.host}/edge/os:1.0")
    return img


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    (tmp_path / "user").write_text(USER + "\n")
    (tmp_path / "password").write_text(PASSWORD + "\n")
    (tmp_path / "wrong").write_text("not-the-password\n")
    return tmp_path


def assert_same_as_skopeo(r: MirrorResult, img: LayoutImage, ref: str, *flags: str) -> None:
    """The destination serves the index and every child with the source's digests."""
    assert r.digest == img.digest
    assert sha256(skopeo_raw(ref, *flags)) == img.digest
    name = ref.rsplit(":", 1)[0]
    for digest in img.manifests.values():
        assert sha256(skopeo_raw(f"{name}@{digest}", *flags)) == digest


# ---------------------------------------------------------------------------- round trips


def test_index_round_trip_keeps_every_digest(
    src: RegistryServer, dst: RegistryServer, image: LayoutImage
) -> None:
    with Mirror(retry=FAST) as m:
        r = m.mirror(f"{src.host}/edge/os:1.0", f"{dst.host}/rt/os:1.0")
    assert_same_as_skopeo(r, image, f"{dst.host}/rt/os:1.0")
    assert skopeo_raw(f"{dst.host}/rt/os:1.0") == skopeo_raw(f"{src.host}/edge/os:1.0")
    assert r.source_digest == r.digest and not r.up_to_date
    assert dict((p, d) for d, p in r.manifests if p) == image.manifests
    assert r.stats.blobs_copied == r.stats.blobs_total == len(image.blobs)
    assert r.stats.bytes_copied == r.stats.bytes_total == image.total_bytes
    assert r.stats.manifests_written == 3


def test_docker_manifest_list_round_trip(
    src: RegistryServer, dst: RegistryServer, tmp_path: Path
) -> None:
    img = make_layout(tmp_path / "docker", docker_types=True, layer_sizes=(20_000,))
    with Mirror(retry=FAST) as m:
        first = m.mirror(f"oci:{img.path}:1.0", f"{src.host}/docker/os:1.0")
        r = m.mirror(f"{src.host}/docker/os:1.0", f"{dst.host}/docker/os:2.0")
    assert first.digest == r.digest == img.digest
    assert json.loads(skopeo_raw(f"{dst.host}/docker/os:2.0"))["mediaType"] == (
        "application/vnd.docker.distribution.manifest.list.v2+json"
    )
    assert_same_as_skopeo(r, img, f"{dst.host}/docker/os:2.0")


def test_tag_is_pinned_and_a_pinned_digest_is_copied(
    src: RegistryServer, dst: RegistryServer, image: LayoutImage
) -> None:
    arm = image.manifests["linux/arm64"]
    with Mirror(retry=FAST) as m:
        by_tag = m.mirror(f"{src.host}/edge/os:1.0", f"{dst.host}/pin/os:1.0")
        by_digest = m.mirror(f"{src.host}/edge/os@{arm}", f"{dst.host}/pin/os:arm")
    assert by_tag.source_digest == sha256(skopeo_raw(f"{src.host}/edge/os:1.0"))
    assert by_digest.digest == by_digest.source_digest == arm
    assert sha256(skopeo_raw(f"{dst.host}/pin/os:arm")) == arm
    assert by_digest.stats.blobs_present == by_digest.stats.blobs_total  # all came with by_tag


def test_platform_selection_keeps_the_chosen_manifest_digests(
    src: RegistryServer, dst: RegistryServer, image: LayoutImage
) -> None:
    arm, amd = image.manifests["linux/arm64"], image.manifests["linux/amd64"]
    with Mirror(retry=FAST) as m:
        r = m.mirror(
            f"{src.host}/edge/os:1.0", f"{dst.host}/plat/os:1.0",
            platforms=[Platform.parse("linux/arm64")],
        )  # fmt: skip
    index = json.loads(skopeo_raw(f"{dst.host}/plat/os:1.0"))
    assert [c["digest"] for c in index["manifests"]] == [arm]
    assert sha256(skopeo_raw(f"{dst.host}/plat/os:1.0")) == r.digest != image.digest
    assert r.source_digest == image.digest
    assert sha256(skopeo_raw(f"{dst.host}/plat/os@{arm}")) == arm
    assert served(dst.host, "plat/os", amd) is None  # the other platform stayed out
    assert r.manifests == ((arm, "linux/arm64"), (r.digest, None))


def test_a_platform_the_index_lacks_is_refused_before_any_write(
    src: RegistryServer, dst: RegistryServer, image: LayoutImage
) -> None:
    with Mirror(retry=FAST) as m, pytest.raises(InvalidImage) as e:
        m.mirror(
            f"{src.host}/edge/os:1.0", f"{dst.host}/noplat/os:1.0",
            platforms=[Platform.parse("linux/riscv64")],
        )  # fmt: skip
    assert f"{src.host}/edge/os:1.0" in str(e.value)
    assert "linux/riscv64" in str(e.value) and "linux/amd64, linux/arm64" in str(e.value)
    assert served(dst.host, "noplat/os", "1.0") is None


def test_single_image_of_another_platform_is_refused(
    src: RegistryServer, dst: RegistryServer, tmp_path: Path
) -> None:
    img = make_layout(tmp_path / "single", single=True, platforms=("linux/arm64",))
    with Mirror(retry=FAST) as m:
        m.mirror(f"oci:{img.path}:1.0", f"{src.host}/single/os:1.0")
        ok = m.mirror(
            f"{src.host}/single/os:1.0", f"{dst.host}/single/os:1.0",
            platforms=[Platform.parse("linux/arm64")],
        )  # fmt: skip
        assert ok.digest == img.digest
        with pytest.raises(InvalidImage, match=r"is linux/arm64 only; asked for linux/amd64"):
            m.mirror(
                f"{src.host}/single/os:1.0", f"{dst.host}/single/os:2.0",
                platforms=[Platform.parse("linux/amd64")],
            )  # fmt: skip


# ---------------------------------------------------------------------------- shortcuts


def test_present_blobs_are_skipped_and_other_repos_blobs_mounted(
    src: RegistryServer, dst: RegistryServer, image: LayoutImage
) -> None:
    arm_only = [Platform.parse("linux/arm64")]
    per_platform = (len(image.blobs) - 1) // 2  # config and layer of each, plus a shared layer
    with Mirror(retry=FAST) as m:
        first = m.mirror(f"{src.host}/edge/os:1.0", f"{dst.host}/skip/os:1.0", platforms=arm_only)
        full = m.mirror(f"{src.host}/edge/os:1.0", f"{dst.host}/skip/os:1.0")
        other = m.mirror(f"{src.host}/edge/os:1.0", f"{dst.host}/skip/other:1.0")
    assert first.stats.blobs_copied == per_platform + 1
    assert full.stats.blobs_present == per_platform + 1  # HEAD found them: not sent again
    assert full.stats.blobs_copied == per_platform
    assert full.digest == image.digest
    assert other.stats.blobs_mounted == len(image.blobs)  # cross-repository mount in the cache
    assert other.stats.bytes_copied == 0 and other.stats.bytes_received == 0
    assert sha256(skopeo_raw(f"{dst.host}/skip/other:1.0")) == image.digest
    # A fresh Mirror copying within one registry mounts from the source repository.
    with Mirror(retry=FAST) as m:
        inside = m.mirror(f"{dst.host}/skip/other:1.0", f"{dst.host}/skip/third:1.0")
    assert inside.stats.blobs_mounted == len(image.blobs) and inside.stats.bytes_received == 0


def test_remirror_is_a_noop_and_a_new_tag_only_writes_the_tag(
    src: RegistryServer, dst: RegistryServer, image: LayoutImage
) -> None:
    with Mirror(retry=FAST) as m:
        m.mirror(f"{src.host}/edge/os:1.0", f"{dst.host}/noop/os:1.0")
        again = m.mirror(f"{src.host}/edge/os:1.0", f"{dst.host}/noop/os:1.0")
        retag = m.mirror(f"{src.host}/edge/os:1.0", f"{dst.host}/noop/os:stable")
    assert again.up_to_date and again.digest == image.digest
    assert again.stats.manifests_written == 0 and again.stats.bytes_received == 0
    assert not retag.up_to_date and retag.stats.manifests_written == 1
    assert retag.stats.bytes_received == 0
    assert sha256(skopeo_raw(f"{dst.host}/noop/os:stable")) == image.digest


def test_blob_transfers_run_in_parallel_bounded_by_jobs(
    src: RegistryServer, dst: RegistryServer, image: LayoutImage
) -> None:
    # The front holds each blob GET until three are in flight together: a serial copy could
    # never get there (max stays 1); more than ``jobs`` at once would show as a higher max.
    with http_front(src.port, gate=3) as front, Mirror(retry=FAST, jobs=3) as m:
        r = m.mirror(f"{front.host}/edge/os:1.0", f"{dst.host}/par/os:1.0")
    assert r.digest == image.digest and r.stats.blobs_copied == len(image.blobs) > 3
    assert front.max_blob_gets_in_flight == 3


# ---------------------------------------------------------------------------- OCI layouts


def test_oci_layouts_as_source_and_destination(
    src: RegistryServer, dst: RegistryServer, image: LayoutImage, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with Mirror(retry=FAST) as m:
        to_layout = m.mirror(f"{src.host}/edge/os:1.0", f"oci:{out}:site")
        again = m.mirror(f"{src.host}/edge/os:1.0", f"oci:{out}:site")
        back = m.mirror(f"oci:{out}:site", f"{dst.host}/fromlayout/os:1.0")
        copy = m.mirror(f"oci:{image.path}:1.0", f"oci:{tmp_path / 'copy'}")
    assert to_layout.digest == back.digest == copy.digest == image.digest
    assert again.up_to_date
    # skopeo reads our layout: same index, same children, and copies it on byte for byte.
    assert sha256(skopeo("inspect", "--raw", f"oci:{out}:site")) == image.digest
    skopeo(
        "copy", "--all", "--preserve-digests", "--quiet", "--dest-tls-verify=false",
        f"oci:{out}:site", f"docker://{dst.host}/skopeo-read/os:1.0",
    )  # fmt: skip
    assert sha256(skopeo_raw(f"{dst.host}/skopeo-read/os:1.0")) == image.digest
    assert_same_as_skopeo(back, image, f"{dst.host}/fromlayout/os:1.0")
    for path in (out / "blobs" / "sha256").iterdir():  # every file is named by its content
        assert sha256(path.read_bytes()) == f"sha256:{path.name}"
    assert not list(out.rglob(".partial-*"))
    tags = [m["annotations"] for m in json.loads((out / "index.json").read_text())["manifests"]]
    assert tags == [{"org.opencontainers.image.ref.name": "site"}]


# ---------------------------------------------------------------------------- auth and TLS


def test_htpasswd_registry_with_credentials_from_files(
    src: RegistryServer, image: LayoutImage, secrets_dir: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    with docker_registry(tmp_path / "auth", htpasswd=(USER, PASSWORD)) as reg:
        good = HostConfig(
            username_file=secrets_dir / "user", password_file=secrets_dir / "password"
        )
        with Mirror(hosts=Hosts({reg.host: good}), retry=FAST) as m:
            r = m.mirror(f"{src.host}/edge/os:1.0", f"{reg.host}/site/os:1.0")
            out = m.mirror(f"{reg.host}/site/os:1.0", f"oci:{tmp_path / 'out'}:1.0")
        creds = ("--tls-verify=false", f"--creds={USER}:{PASSWORD}")
        assert_same_as_skopeo(r, image, f"{reg.host}/site/os:1.0", *creds)
        assert out.digest == image.digest
        bad = HostConfig(username_file=secrets_dir / "user", password_file=secrets_dir / "wrong")
        with (
            Mirror(hosts=Hosts({reg.host: bad}), retry=FAST) as m,
            pytest.raises(RegistryAuthError, match="refused our credentials") as wrong,
        ):
            m.mirror(f"{src.host}/edge/os:1.0", f"{reg.host}/site/os:2.0")
        with Mirror(retry=FAST) as m, pytest.raises(RegistryAuthError) as missing:
            m.mirror(f"{reg.host}/site/os:1.0", f"oci:{tmp_path / 'never'}:1.0")
    assert f"{reg.host}/site/os:2.0" in str(wrong.value)
    assert "wants credentials" in str(missing.value) and "usernameFile" in str(missing.value)
    assert f"{reg.host}/site/os:1.0" in str(missing.value)
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    for text in (str(wrong.value), str(missing.value), logged):
        assert PASSWORD not in text and "not-the-password" not in text


def test_bearer_token_registry(
    src: RegistryServer, image: LayoutImage, secrets_dir: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    with (
        token_service(tmp_path / "tokens", user=USER, password=PASSWORD) as svc,
        docker_registry(tmp_path / "reg", token=svc) as reg,
    ):
        good = HostConfig(
            username_file=secrets_dir / "user", password_file=secrets_dir / "password"
        )
        with Mirror(hosts=Hosts({reg.host: good}), retry=FAST) as m:
            r = m.mirror(f"{src.host}/edge/os:1.0", f"{reg.host}/site/os:1.0")
            mounted = m.mirror(f"{reg.host}/site/os:1.0", f"{reg.host}/other/os:1.0")
        assert r.digest == image.digest
        assert mounted.stats.blobs_mounted == len(image.blobs)
        assert any("repository:site/os:pull,push" in s for s in svc.scopes_asked)
        assert any("repository:other/os:pull,push" in s for s in svc.scopes_asked)
        bad = HostConfig(username_file=secrets_dir / "user", password_file=secrets_dir / "wrong")
        with (
            Mirror(hosts=Hosts({reg.host: bad}), retry=FAST) as m,
            pytest.raises(
                RegistryAuthError, match="refused to issue a token for our credentials"
            ) as e,
        ):
            m.mirror(f"{src.host}/edge/os:1.0", f"{reg.host}/site/os:2.0")
        assert svc.refused >= 1
        # A static bearer token from a file (tokenFile), as CI systems hand them out.
        token = requests.get(
            f"{svc.url}/token", auth=(USER, PASSWORD), timeout=10,
            params={"service": svc.service, "scope": "repository:static/os:pull,push"},
        ).json()["token"]  # fmt: skip
        (secrets_dir / "token").write_text(token + "\n")
        static = Hosts({reg.host: HostConfig(token_file=secrets_dir / "token")})
        asked = len(svc.scopes_asked)
        with Mirror(hosts=static, retry=FAST) as m:
            by_token = m.mirror(f"{src.host}/edge/os:1.0", f"{reg.host}/static/os:1.0")
        assert by_token.digest == image.digest
        assert len(svc.scopes_asked) == asked  # the file's token was used as it is
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert f"{reg.host}/site/os:2.0" in str(e.value)
    for text in (str(e.value), logged):
        assert PASSWORD not in text and "not-the-password" not in text


def test_tls_registry_with_a_ca_made_in_the_test(
    src: RegistryServer, image: LayoutImage, tmp_path: Path
) -> None:
    tls = make_tls_files(tmp_path / "tls")
    other_ca = make_tls_files(tmp_path / "other")
    certs = tmp_path / "certs.d"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(tls.ca_file.read_bytes())
    with docker_registry(tmp_path / "reg", tls=tls) as reg:
        with Mirror(hosts=Hosts({reg.host: HostConfig(ca_file=tls.ca_file)}), retry=FAST) as m:
            r = m.mirror(f"{src.host}/edge/os:1.0", f"{reg.host}/site/os:1.0")
        assert_same_as_skopeo(r, image, f"{reg.host}/site/os:1.0", f"--cert-dir={certs}")
        wrong = Hosts({reg.host: HostConfig(ca_file=other_ca.ca_file)})
        with Mirror(hosts=wrong, retry=FAST) as m, pytest.raises(RegistryUnavailable) as bad_ca:
            m.mirror(f"{src.host}/edge/os:1.0", f"{reg.host}/site/os:2.0")
        with Mirror(retry=FAST) as m, pytest.raises(RegistryRefused) as no_ca:
            m.mirror(f"{src.host}/edge/os:1.0", f"{reg.host}/site/os:2.0")
    assert "TLS" in str(bad_ca.value) and "caFile" in str(bad_ca.value)
    assert "refused plain HTTP" in str(no_ca.value) and "caFile" in str(no_ca.value)
    assert f"{reg.host}/site/os:2.0" in str(no_ca.value)


def test_plain_http_only_for_loopback_and_insecure_hosts(tmp_path: Path) -> None:
    ca = make_tls_files(tmp_path / "tls").ca_file

    def url(host: str, config: HostConfig | None = None) -> str:
        client = RegistryClient(host=host, config=config)
        client.close()
        return client.base_url

    assert url("registry.example.com") == "https://registry.example.com"
    assert url("cache.site:5000", HostConfig(insecure=True)) == "http://cache.site:5000"
    assert url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert url("localhost:5000") == "http://localhost:5000"
    assert url("[::1]:5000") == "http://[::1]:5000"
    assert url("127.0.0.1:5000", HostConfig(ca_file=ca)) == "https://127.0.0.1:5000"
    assert url("127.0.0.1:5000", HostConfig(scheme="https")) == "https://127.0.0.1:5000"


# ---------------------------------------------------------------------------- the command


def gitedge(*args: str, tty: bool = False) -> tuple[int, str, str]:
    """Run ``gitedge`` as a process; with ``tty`` its stderr is a pseudo-terminal."""
    cmd = [sys.executable, "-m", "gitedge", *args]
    if not tty:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        out, _ = proc.communicate(timeout=60)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


def test_cli_prints_the_digest_and_quiet_lines_off_a_terminal(
    src: RegistryServer, dst: RegistryServer, image: LayoutImage
) -> None:
    code, out, err = gitedge("mirror", f"{src.host}/edge/os:1.0", f"{dst.host}/cli/os:1.0")
    assert code == 0, err
    assert out == image.digest + "\n"
    assert sha256(skopeo_raw(f"{dst.host}/cli/os:1.0")) == image.digest
    lines = err.splitlines()
    assert sum(1 for line in lines if line.startswith("blob sha256:")) == len(image.blobs)
    assert "\r" not in err and "ETA" not in err
    assert f"{len(image.blobs)} blob(s) copied" in lines[-1]


def test_cli_json_and_platform(
    src: RegistryServer, dst: RegistryServer, image: LayoutImage
) -> None:
    code, out, err = gitedge(
        "mirror", f"{src.host}/edge/os:1.0", f"{dst.host}/clijson/os:1.0",
        "--platform", "linux/amd64", "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["sourceDigest"] == image.digest
    assert doc["digest"] == sha256(skopeo_raw(f"{dst.host}/clijson/os:1.0"))
    assert doc["manifests"][0] == {
        "digest": image.manifests["linux/amd64"],
        "platform": "linux/amd64",
    }
    assert doc["upToDate"] is False and doc["bytes"]["resent"] == 0
    code, out, _ = gitedge(
        "mirror", f"{src.host}/edge/os:1.0", f"{dst.host}/clijson/os:1.0",
        "--platform", "linux/amd64", "-o", "json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["upToDate"] is True


def test_cli_progress_bar_on_a_terminal(
    src: RegistryServer, dst: RegistryServer, image: LayoutImage
) -> None:
    code, out, err = gitedge(
        "mirror", f"{src.host}/edge/os:1.0", f"{dst.host}/tty/os:1.0", tty=True
    )
    assert code == 0, err
    assert out.strip() == image.digest
    assert "\r[" in err and "100%" in err and "MiB/s" in err and "ETA" in err
    assert f"({len(image.blobs)}/{len(image.blobs)} blobs)" in err


def test_cli_errors_and_usage(src: RegistryServer, dst: RegistryServer, tmp_path: Path) -> None:
    code, out, err = gitedge("mirror", f"{src.host}/edge/absent:1.0", f"{dst.host}/x/y:1.0")
    assert code == 1 and out == ""
    assert f"image {src.host}/edge/absent:1.0 not found" in err
    code, _, err = gitedge("mirror", "Bad Ref", f"{dst.host}/x/y:1.0")
    assert code == 2 and "invalid image reference" in err
    code, _, err = gitedge("mirror", f"{src.host}/a:1", f"{dst.host}/x:1", "--platform", "amd64")
    assert code == 2 and "expected os/arch" in err
    code, _, err = gitedge("mirror", f"{src.host}/a:1", f"{dst.host}/x@sha256:{'0' * 64}")
    assert code == 2 and "give a tag, not a digest" in err


def agent_config(path: Path, host: str, secrets_dir: Path) -> Path:
    """An AgentConfig at ``path`` whose cache is ``host``, with credentials from files."""
    path.write_text(
        "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
        "cluster: {name: site-1}\nsource: {url: 'https://git.example/fleet.git'}\n"
        "trust: {bootstrap: /etc/gitedge/trust.yaml}\n"
        f"registry:\n  cache: {{url: 'http://{host}'}}\n  upstreamAuth:\n"
        f"    '{host}':\n      usernameFile: {secrets_dir / 'user'}\n"
        f"      passwordFile: {secrets_dir / 'password'}\n"
    )
    return path


def test_cli_reads_credentials_from_an_agent_config(
    src: RegistryServer, image: LayoutImage, secrets_dir: Path, tmp_path: Path
) -> None:
    with docker_registry(tmp_path / "auth", htpasswd=(USER, PASSWORD)) as reg:
        config = agent_config(tmp_path / "agent.yaml", reg.host, secrets_dir)
        code, out, err = gitedge(
            "mirror", f"{src.host}/edge/os:1.0", f"{reg.host}/site/os:1.0", "--config", str(config)
        )
        assert code == 0, err
        assert out.strip() == image.digest
        code, out, err = gitedge("mirror", f"{src.host}/edge/os:1.0", f"{reg.host}/site/os:1.0")
    assert code == 1 and "wants credentials" in err and PASSWORD not in err


def test_cli_gets_a_bearer_token_in_a_process_of_its_own(
    src: RegistryServer, image: LayoutImage, secrets_dir: Path, tmp_path: Path
) -> None:
    """The command's process loads requests itself (without charset detection, adapters/registry/client.py):
    our token request and its JSON answer work there as they do in the test process."""
    with (
        token_service(tmp_path / "tokens", user=USER, password=PASSWORD) as svc,
        docker_registry(tmp_path / "reg", token=svc) as reg,
    ):
        config = agent_config(tmp_path / "agent.yaml", reg.host, secrets_dir)
        code, out, err = gitedge(
            "mirror", f"{src.host}/edge/os:1.0", f"{reg.host}/site/os:1.0", "--config", str(config)
        )
        assert code == 0, err
        assert out.strip() == image.digest
        assert any("repository:site/os:pull,push" in s for s in svc.scopes_asked)
        code, _, err = gitedge("mirror", f"{src.host}/edge/os:1.0", f"{reg.host}/site/os:2.0")
    assert code == 1 and "refused to issue a token (no credentials set)" in err


HEAVY = {"oras", "charset_normalizer", "pydantic", "yaml", "pygit2", "kubernetes",
         "cryptography", "jsonschema", "apscheduler", "pysequoia",
         "concurrent"}  # fmt: skip  # concurrent.futures: the copy's thread pool only


def test_cli_noop_loads_only_what_its_requests_need(
    src: RegistryServer, dst: RegistryServer, image: LayoutImage
) -> None:
    """A no-op re-mirror between anonymous registries, in a fresh process, loads no oras (auth
    waits for a 401 challenge), no charset_normalizer, and none of the config, git, signature or
    Kubernetes stacks; ``import gitedge.cli`` alone loads no HTTP client (start-up is most of a
    no-op's 0.2 s budget, bench/mirror.py)."""
    code, _, err = gitedge("mirror", f"{src.host}/edge/os:1.0", f"{dst.host}/light/os:1.0")
    assert code == 0, err
    probe = (
        "import json, sys\n"
        "from gitedge.cli import main\n"
        "cli = sorted({m.split('.')[0] for m in sys.modules})\n"
        f"rc = main(['mirror', '{src.host}/edge/os:1.0', '{dst.host}/light/os:1.0', '-o', 'json'])\n"
        "print(json.dumps({'rc': rc, 'cli': cli, 'all': sorted({m.split('.')[0] for m in sys.modules})}))\n"
    )  # fmt: skip
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    *mirrored, loaded = p.stdout.strip().splitlines()
    assert json.loads("\n".join(mirrored))["upToDate"] is True
    modules = json.loads(loaded)
    assert modules["rc"] == 0
    assert not {"requests", "urllib3", "http"} & set(modules["cli"])
    assert "requests" in modules["all"]  # the probe saw the HTTP stack load
    assert not HEAVY & set(modules["all"]), HEAVY & set(modules["all"])


def test_cli_mirror_ends_at_once_once_its_output_is_flushed(
    src: RegistryServer, dst: RegistryServer, image: LayoutImage, tmp_path: Path
) -> None:
    """``gitedge mirror`` run as the program ends with ``os._exit`` once stdout and stderr are
    flushed (``cli.EXIT_AT_ONCE``: Python's finalization of ~400 modules was ~30 ms CPU of a
    no-op's ~180): output and exit code whole, ``atexit`` work skipped; other commands, and
    ``main`` called by code, end as before."""
    mark = tmp_path / "atexit-ran"
    probe = (
        "import atexit, pathlib, sys\n"
        f"atexit.register(pathlib.Path({str(mark)!r}).write_text, 'x')\n"
        "from gitedge.cli import main\n"
        "how = sys.argv.pop(1)\n"
        "raise SystemExit(main(None if how == 'program' else sys.argv[1:]))\n"
    )

    def run(how: str, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-c", probe, how, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    ref, to = f"{src.host}/edge/os:1.0", f"{dst.host}/fin/os:1.0"
    p = run("program", "mirror", ref, to, "-o", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["digest"] == image.digest  # the whole document arrived
    p = run("program", "mirror", ref, to)  # the no-op
    assert (p.returncode, p.stdout.strip()) == (0, image.digest), p.stderr
    assert "up to date" in p.stderr
    p = run("program", "mirror", f"{src.host}/edge/none:1.0", to)
    assert p.returncode == 1 and "edge/none:1.0" in p.stderr
    assert not mark.exists()
    p = run("code", "mirror", ref, to, "-q")
    assert (p.returncode, p.stdout.strip()) == (0, image.digest) and mark.read_text() == "x"
    mark.unlink()
    p = run("program", "--version")
    assert p.returncode == 0 and mark.exists()
