"""What digest a registry serves for a tag now: the manifest (or index) read and hashed.

``gitedge pin`` asks this for every tag the fleet names. The manifest bytes are read whole and
hashed (client.py checks them against the ``Docker-Content-Digest`` the registry announces), so
the digest written into the fleet repo is the one of the bytes served. Credentials and TLS are an
AgentConfig's ``registry`` section (:class:`Hosts`), as for mirroring.
"""

from __future__ import annotations

from gitedge.adapters.registry.client import RegistryClient
from gitedge.adapters.registry.hosts import Hosts, RetryPolicy
from gitedge.core.images.manifests import digest_of
from gitedge.core.images.refs import DOCKER_HUB, ImageRef

__all__ = ["TagResolver"]


class TagResolver:
    """One client per registry host, closed with the resolver."""

    def __init__(self, *, hosts: Hosts | None = None, retry: RetryPolicy | None = None) -> None:
        self.hosts = hosts or Hosts()
        self.retry = retry or RetryPolicy()
        self._clients: dict[str, RegistryClient] = {}

    def __enter__(self) -> TagResolver:
        return self

    def __exit__(self, *exc: object) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()

    def digest(self, ref: ImageRef, *, sha256: bool = False) -> str:
        """The digest of ``ref``'s tag; ImageNotFound, RegistryUnavailable, ... as mirroring.
        ``sha256``: that algorithm's, whatever the registry announced (the bytes were checked
        against its digest first): a K3s catalog entry's ``digest`` takes sha256 only."""
        assert ref.tag is not None
        host = ref.registry
        api_host = "registry-1.docker.io" if host == DOCKER_HUB else host
        client = self._clients.get(api_host)
        if client is None:
            client = RegistryClient(host=api_host, config=self.hosts.get(host), retry=self.retry)
            self._clients[api_host] = client
        what = f"{ref.name}:{ref.tag}"
        manifest = client.get_manifest(ref.repository, ref.tag, what=what)
        if sha256 and not manifest.digest.startswith("sha256:"):
            return digest_of(manifest.data)
        return manifest.digest
