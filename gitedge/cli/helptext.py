"""The ``--help`` of every command: what it does, and an example."""

from __future__ import annotations

#: Each command's ``--help``: what it does, and an example (as kubectl and flux print them).
DOCS: dict[str, tuple[str, str]] = {
    "validate": (
        "Check a fleet repo's working tree: every file against its kind's schema, the "
        "references between documents, and, for the cluster identities given with "
        "--clusters, that targets resolve without conflict and every K3s path exists "
        "in the catalog. One 'path:line: message' per problem.",
        "gitedge validate . --clusters examples/clusters",
    ),
    "plan": (
        "What a cluster should run and when, from a fleet repo alone (pure: no cluster, "
        "no network): the winning targets, the K3s path through every minor, each "
        "component's window.",
        "gitedge plan --repo examples/fleet-repo --cluster examples/clusters/"
        "store-berlin-0042.yaml -o yaml",
    ),
    "verify": (
        "Verify the signatures of every commit in (--since, --rev] against a pinned "
        "trust file, following trust rotations inside the repo; names the first bad "
        "commit and why.",
        "gitedge verify --repo fleet.git --trust /etc/gitedge/trust.yaml --since "
        "3f1c2a9 --rev main",
    ),
    "schema": (
        "JSON Schemas of every kind, for editors and CI: one kind on stdout, or every "
        "kind's file with --write.",
        "gitedge schema --kind UpgradeTarget > upgradetarget.schema.json",
    ),
    "mirror": (
        "Copy an image or index between registries and OCI layouts, every digest kept "
        "and verified; resumes cut downloads. SRC and DST are host[:port]/repo[:tag]"
        "[@digest] (docker:// accepted) or oci:DIR[:tag].",
        "gitedge mirror registry.example.com/os/kairos:v3.1 127.0.0.1:5000/os/kairos:v3.1"
        " --platform linux/arm64",
    ),
    "run": (
        "The agent: each pass syncs, verifies, plans, mirrors, applies in windows and "
        "reports; serves /healthz, /readyz and /metrics on --listen.",
        "gitedge run --config /etc/gitedge/agent.yaml --listen 0.0.0.0:8080",
    ),
    "status": (
        "What the site's agent last verified, wants, mirrored and applied, with its "
        "conditions and windows (read from its state dir).",
        "gitedge status --config /etc/gitedge/agent.yaml -o json",
    ),
    "fleet": (
        "The fleet's view, from the status reports the agents push.",
        "gitedge fleet status --registry registry.example.com/fleet/reports",
    ),
    "fleet status": (
        "One row per site from the reports pushed to the registry: versions, "
        "commit, state; reports older than --stale-after are marked stale.",
        "gitedge fleet status --registry registry.example.com/fleet/reports "
        "-l 'env=prod' --stale-after 12h",
    ),
    "bundle": (
        "Offline bundles: one file with the commits and images a site without network needs.",
        "gitedge bundle create --repo fleet.git --all --out stick.tar",
    ),
    "bundle create": (
        "Write a bundle: the git bundle of the commits and an OCI layout of "
        "every image their plans need (for --cluster sites, or --all).",
        "gitedge bundle create --repo ssh://git@git.example/fleet.git --since "
        "3f1c2a9 --cluster sites/ --out /media/usb/fleet.tar",
    ),
    "bundle import": (
        "Verify a bundle exactly as a fetch would be verified, then fill the "
        "site's cache from it; nothing unverified is kept.",
        "gitedge bundle import /media/usb/fleet.tar --config /etc/gitedge/agent.yaml",
    ),
    "node-config": (
        "What each node needs to pull from the site's cache: K3s registries.yaml, "
        "a containers registries.conf.d drop-in, a Kairos cloud-config.",
        "gitedge node-config --config /etc/gitedge/agent.yaml --out /tmp/node",
    ),
    "accept-history": (
        "Accept the rewritten tip the agent fetched and refused (RollbackRefused): its whole "
        "history is verified from the root against the trust in force at the last verified "
        "commit (not trust.bootstrap alone); only if every commit passes does it become the last "
        "verified commit. Stop the agent first. To undo a change instead, commit a signed "
        "revert: no recovery is needed.",
        "gitedge accept-history --config /etc/gitedge/agent.yaml --commit <the full id "
        "RollbackRefused names>",
    ),
    "demo": (
        "The whole story on this machine with no services: a signed fleet repo, offline "
        "bundles, a cache and the real agent in print mode.",
        "gitedge demo --keep /tmp/gitedge-demo",
    ),
}
