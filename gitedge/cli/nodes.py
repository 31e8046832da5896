"""``node-config``: the files each node of a site needs to pull from the site's registry cache.

The rendering is :mod:`gitedge.core.delivery.nodeconfig`; this reads the AgentConfig, the cache's CA
file and the fleet repo (``--repo`` a working tree, or a git repo with ``--rev``; else the agent's
own mirror at its last verified commit), and prints or writes the files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from gitedge.adapters.fleetload import load_files
from gitedge.adapters.git.repo import GitRepo, read_commit_tree
from gitedge.adapters.git.worktree import read_tree
from gitedge.adapters.state import STATUS, State
from gitedge.adapters.yamlworkers import fleet_files
from gitedge.cli.common import read_file, structured
from gitedge.cli.siteconfig import agent_config, last_verified
from gitedge.core.delivery import nodeconfig as nc
from gitedge.core.images.refs import ImageRef
from gitedge.errors import UsageError

__all__ = ["cmd_node_config"]


def _fleet(args: argparse.Namespace, config: Any) -> Any:
    subdir = config.source.path
    if args.repo and args.rev:
        snapshot = read_commit_tree(repo=args.repo, rev=args.rev, subdir=subdir)
        origin = f"{args.repo}@{args.rev}"
    elif args.repo:
        snapshot, origin = read_tree(args.repo), args.repo.rstrip("/")
    else:
        state_dir = Path(config.state.dir)
        if not (state_dir / "fleet.git" / "HEAD").exists():
            raise UsageError(
                f"{state_dir}: the agent has fetched no fleet repo here; give --repo PATH "
                "(a checkout of the fleet repo)"
            )
        last = last_verified(state_dir)
        if last is None:
            raise UsageError(
                f"{state_dir}: no verified commit yet; give --repo PATH (a checkout of the fleet "
                "repo)"
            )
        mirror = GitRepo(path=state_dir / "fleet.git")
        snapshot = mirror.tree_snapshot(last.commit, subdir=subdir)
        origin = f"{state_dir / 'fleet.git'}@{last.commit[:12]}"
    return load_files(fleet_files(snapshot, subdir=subdir, origin=origin))


def cmd_node_config(args: argparse.Namespace) -> int:
    if args.rev and not args.repo:
        raise UsageError("--rev needs --repo")
    config = agent_config(args.config)
    cache = config.registry.cache
    if cache is None:
        raise UsageError(
            f"--config {args.config}: registry.cache is not set; nodes pull from the cache "
            "only when there is one"
        )
    ca_pem = None
    if cache.ca_file:
        ca_pem = read_file(cache.ca_file, f"--config {args.config}: registry.cache.caFile").decode(
            "utf-8", "replace"
        )
        ca_pem = ca_pem if ca_pem.endswith("\n") else ca_pem + "\n"
    endpoint = nc.cache_endpoint(cache, ca_pem=ca_pem)
    try:
        upstreams = nc.upstream_registries(
            _fleet(args, config), cache=endpoint.host, extra=[*args.registry, *_suc(config)]
        )
    except ValueError as e:
        raise UsageError(f"--registry: {e}") from None
    cluster = config.cluster.name
    hub_cas = {}  # registry.endpoints: each hub's CA, as the agent reads it (upstreamAuth.caFile)
    for host, auth in config.registry.upstream_auth.items():
        if auth.ca_file and any(host in hs for hs in config.registry.endpoints.values()):
            pem = read_file(auth.ca_file, f"--config {args.config}: upstreamAuth.{host}.caFile")
            text = pem.decode("utf-8", "replace")
            hub_cas[host] = text if text.endswith("\n") else text + "\n"
    hubs = nc.hub_endpoints(config.registry, ca_pems=hub_cas)
    if args.check:
        return _check(args.check, endpoint, upstreams, hubs)
    files = nc.node_files(endpoint, upstreams, cluster=cluster, hubs=hubs)
    if args.out:
        _write(Path(args.out), files)
        for f in files:
            print(f"{Path(args.out)}{f.path}  ({f.reader}: {f.what})")
        return 0
    if args.output != "text":
        doc = {
            "cluster": cluster,
            "cache": {"host": endpoint.host, "url": endpoint.url},
            "upstreams": list(upstreams),
            "hubs": {r: [h.url for h in hubs.of(r)] for r in upstreams if hubs.of(r)},
            "hubsLeftOut": list(hubs.left_out),
            "files": [
                {
                    "path": f.path,
                    "mode": f.mode,
                    "for": f.reader,
                    "what": f.what,
                    "content": f.content,
                }
                for f in files
            ],
        }
        print(structured(doc, args.output))
        return 0
    print(
        f"# node config of cluster {cluster}: cache {endpoint.url}, mirroring "
        f"{', '.join(upstreams)}"
    )
    print(
        f"# once installed, record it in the AgentConfig (status warns when it goes stale):\n"
        f"#   registry: {{nodeMirrors: [{', '.join(upstreams)}]}}"
    )
    if endpoint.dns_name:
        print(f"# {endpoint.dns_name} must resolve in each node's host DNS, not the cluster's.")
    for f in files:
        print(f"\n==> {f.path} (mode {f.mode}; {f.reader}: {f.what}) <==")
        sys.stdout.write(f.content)
    return 0


def _suc(config: Any) -> list[str]:
    """The registry of the kubectl image SUC's Jobs run (pulled by its upstream name): from
    ``apply.kubectlImage``, and as the agent last read it from SUC (its status in ``state.dir``)."""
    images = [config.apply.kubectl_image]
    if (Path(config.state.dir) / "state.sqlite3").is_file():
        state = State(config.state.dir)
        try:
            doc = state.doc(STATUS)
        finally:
            state.close()
        suc = doc.get("suc") if isinstance(doc, dict) else None
        images.append(suc.get("kubectlImage") if isinstance(suc, dict) else None)
    out = []
    for image in images:
        try:
            out.append(ImageRef.parse(image).registry)
        except (ValueError, TypeError):
            continue  # unset, or a status document damaged: the fleet's registries still count
    return out


def _write(root: Path, files: list[Any]) -> None:
    """Each file under ``root`` at its node path (``root/etc/rancher/k3s/registries.yaml``...),
    so that ``cp -r root/etc /`` installs them."""
    for f in files:
        dest = root / f.path.lstrip("/")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(f.content)
            dest.chmod(int(f.mode, 8))
        except OSError as e:
            raise UsageError(f"--out {root}: cannot write {dest}: {e.strerror}") from None


def _check(path: str, endpoint: Any, upstreams: tuple[str, ...], hubs: Any) -> int:
    try:
        installed = yaml.safe_load(read_file(path, "--check"))
    except yaml.YAMLError as e:
        raise UsageError(f"--check {path}: not YAML: {e}") from None
    missing = nc.stale_registries(installed, cache=endpoint, upstreams=upstreams, hubs=hubs)
    if missing:
        print(
            f"{path}: stale: lacks {', '.join(missing)} (the cache is {endpoint.url}); "
            "install the output of `gitedge node-config` and restart K3s (docs/site-setup.md)"
        )
        return 1
    print(f"{path}: current ({len(upstreams) + 1} registries go to {endpoint.url})")
    return 0
