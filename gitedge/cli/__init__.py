"""The gitedge command line: parses arguments, calls the library, prints. Nothing else prints.

Each command's handler lives in a module named for it, which imports what it needs at its top:
``repo`` (validate, schema), ``plan``, ``verify``, ``accepthistory``, ``pin``, ``mirror``,
``verifyimage``, ``bundle`` (create, import), ``run``, ``status``, ``fleet`` (fleet status),
``nodes`` (node-config), ``demo``. ``main`` imports only the module of the command it runs, so
a command pays for no other command's libraries. Their ``--help`` texts are in ``helptext``.

Exit codes: 0 success, 1 the thing failed (invalid repo, bad commit, unreachable source), 2 usage.

No traceback reaches a user: errors of the tree (``gitedge/errors.py``) are printed as they are;
an OSError that escaped its command is printed with its file; anything else is a bug, printed on
one line with a request to report it (``GITEDGE_DEBUG=1`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, NoReturn, cast

from gitedge import __version__
from gitedge.cli.helptext import DOCS
from gitedge.errors import GitEdgeError, InvalidInput, UsageError, scrub

Handler = Callable[[argparse.Namespace], int]
#: ``-o`` of every command with structured output, as kubectl and flux spell it
OUTPUT: dict[str, Any] = {
    "choices": ["text", "json", "yaml"],
    "default": "text",
    "metavar": "text|json|yaml",
    "help": "output format (default text; json and yaml hold the same fields)",
}

__all__ = ["build_parser", "main"]


class _Skipped:
    """Stands for the parser of a command this run does not run: takes its set-up, builds
    nothing (argparse set-up of every command was ~1% of a no-op ``mirror``)."""

    def __getattr__(self, name: str) -> Callable[..., _Skipped]:
        return lambda *a, **kw: self


class _Documented:
    """Subcommands whose parsers get their description and example from :data:`DOCS`."""

    def __init__(self, sub: Any, prefix: str = "") -> None:
        self.sub, self.prefix = sub, prefix

    def add_parser(self, name: str, **kw: Any) -> argparse.ArgumentParser:
        doc = DOCS.get(self.prefix + name)
        if doc is not None:
            kw.setdefault("description", doc[0])
            kw.setdefault("epilog", f"example:\n  {doc[1]}")
            kw.setdefault("formatter_class", _HelpFormat)
        return cast(argparse.ArgumentParser, self.sub.add_parser(name, **kw))


class _HelpFormat(argparse.RawDescriptionHelpFormatter):
    """The description wrapped to the terminal, the example kept on its own lines."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example:"):
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


class _Only:
    """The subcommands, of which only ``command``'s parser is built; ``found`` says if it was."""

    def __init__(self, sub: Any, command: str) -> None:
        self.sub, self.command, self.found = sub, command, False

    def add_parser(self, name: str, **kw: Any) -> argparse.ArgumentParser:
        if name != self.command:
            return cast(argparse.ArgumentParser, _Skipped())
        self.found = True
        return cast(argparse.ArgumentParser, self.sub.add_parser(name, **kw))


def build_parser() -> argparse.ArgumentParser:
    parser = _build(None)
    assert parser is not None
    return parser


def _build(command: str | None) -> argparse.ArgumentParser | None:
    """The whole parser; with ``command``, only that command's (None if there is none)."""
    parser = argparse.ArgumentParser(
        prog="gitedge",
        description="GitOps agent for disconnected K3s edge sites: signed fleet repo, "
        "mirrored images, OS and K3s upgrades in maintenance windows.",
    )
    parser.add_argument("--version", action="version", version=f"gitedge {__version__}")
    sub: Any = _Documented(parser.add_subparsers(dest="command", metavar="COMMAND"))
    if command is not None:
        sub = _Only(sub, command)

    p = sub.add_parser("validate", help="check a fleet repo (schema, references, conflicts)")
    p.add_argument("dir", metavar="DIR", help="the fleet repo's working tree")
    p.add_argument("--clusters", metavar="PATH", help="a cluster file or a directory of them")
    p.set_defaults(handler="repo:cmd_validate")

    p = sub.add_parser("plan", help="what a cluster should run, and when (pure, no cluster needed)")
    p.add_argument(
        "--repo", required=True, metavar="PATH", help="fleet repo (a git repo with --rev)"
    )
    p.add_argument("--rev", metavar="REV", help="read the repo at this git revision")
    p.add_argument("--cluster", required=True, metavar="FILE", help="Cluster or AgentConfig file")
    p.add_argument("--now", metavar="ISO8601", help="plan at this instant (default: now)")
    p.add_argument("--current-k3s", metavar="V", help="override the cluster's running K3s version")
    p.add_argument("--current-os", metavar="REF", help="override the cluster's running OS image")
    p.add_argument("-o", "--output", **OUTPUT)
    p.set_defaults(handler="plan:cmd_plan")

    p = sub.add_parser("pin", help="name every image of the fleet repo by digest (in place)")
    p.add_argument("dir", metavar="DIR", nargs="?", default=".", help="fleet repo (default .)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if not all pinned")
    p.add_argument("--update", action="store_true", help="re-pin digests whose tag moved")
    p.add_argument("--config", metavar="FILE", help="AgentConfig: registry credentials, CA")
    p.set_defaults(handler="pin:cmd_pin")

    p = sub.add_parser("verify", help="verify the signatures of a range of fleet-repo commits")
    p.add_argument("--repo", required=True, metavar="GITDIR", help="a git repository (bare or not)")
    p.add_argument(
        "--trust",
        required=True,
        metavar="FILE",
        help="pinned trust: TrustPolicy YAML, allowed_signers, or armored OpenPGP keys",
    )
    p.add_argument("--since", metavar="REV", help="a commit already trusted (default: the root)")
    p.add_argument("--rev", default="HEAD", metavar="REV", help="newest commit (default HEAD)")
    p.add_argument("--cache", metavar="DIR", help="remember verified commit ids in DIR")
    p.add_argument("-o", "--output", **OUTPUT)
    p.set_defaults(handler="verify:cmd_verify")

    p = sub.add_parser("schema", help="JSON Schemas of every kind (stdout, or files with --write)")
    p.add_argument("--write", metavar="DIR", help="write every kind's schema into DIR")
    p.add_argument(
        "--kind",
        default="fleet",
        metavar="KIND",
        help="without --write: print this kind's schema (default fleet: any fleet "
        "kind; or UpgradeTarget, AgentConfig, ...)",
    )
    p.set_defaults(handler="repo:cmd_schema")
    p = sub.add_parser("mirror", help="copy an image or index, digests kept (registry or oci:DIR)")
    p.add_argument("src", metavar="SRC", help="host[:port]/repo[:tag][@digest] or oci:DIR[:tag]")
    p.add_argument("dst", metavar="DST", help="host[:port]/repo[:tag] or oci:DIR[:tag]")
    p.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="OS/ARCH",
        help="copy only this platform of an index (repeatable)",
    )
    p.add_argument("--config", metavar="FILE", help="AgentConfig: registry credentials, CA, cache")
    p.add_argument("--jobs", type=int, default=4, metavar="N", help="parallel blob transfers")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, only the digest")
    p.add_argument("-o", "--output", **OUTPUT)
    p.set_defaults(handler="mirror:cmd_mirror")
    p = sub.add_parser("verify-image", help="check one image's cosign signature by hand")
    p.add_argument("ref", metavar="REF", help="host[:port]/repo[:tag][@digest]")
    p.add_argument("--config", required=True, metavar="FILE", help="AgentConfig file")
    p.add_argument(
        "--trust",
        metavar="FILE",
        help="a TrustPolicy file (default: the one at the agent's last verified commit)",
    )
    p.add_argument(
        "--cache",
        action="store_true",
        help="read the image from the site's cache, offline, as the apply step does",
    )
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(handler="verifyimage:cmd_verify_image")
    p = sub.add_parser("run", help="the agent: sync, verify, mirror, apply in windows")
    p.add_argument("--config", required=True, metavar="FILE", help="AgentConfig file")
    p.add_argument("--once", action="store_true", help="one reconcile pass, then exit")
    p.add_argument("--now", metavar="ISO8601", help="with --once: run the pass at this instant")
    p.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="/healthz /readyz /metrics (0.0.0.0:8080 in a pod)",
    )
    p.add_argument("--log-format", choices=["json", "text"], help="default: text on a terminal")
    p.add_argument(
        "--stop-grace",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="on SIGTERM, how long a running pass may take to end before it is "
        "killed (default 20; the state survives either way)",
    )
    p.add_argument("--pass-fd", type=int, help=argparse.SUPPRESS)  # the pass's child process
    p.set_defaults(handler="run:cmd_run")
    p = sub.add_parser("status", help="what the agent last verified, mirrored and applied")
    p.add_argument("--config", required=True, metavar="FILE", help="AgentConfig file")
    p.add_argument("-o", "--output", **OUTPUT)
    p.set_defaults(handler="status:cmd_status")
    p = sub.add_parser("fleet", help="the fleet view, from the status reports sites push")
    fleet = _Documented(
        p.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND", required=True), "fleet "
    )
    p = fleet.add_parser("status", help="one row per site: versions, commit, state, stale ones")
    p.add_argument(
        "--registry",
        required=True,
        metavar="REPO",
        help="host[:port]/repository the agents push reports to (report.repository)",
    )
    p.add_argument(
        "-l",
        "--selector",
        metavar="SEL",
        help="only sites whose labels match, e.g. 'env=prod,region in (eu-west)'",
    )
    p.add_argument(
        "--stale-after",
        default="24h",
        metavar="DUR",
        help="a report older than this marks its site stale (default 24h)",
    )
    p.add_argument("--config", metavar="FILE", help="AgentConfig: registry credentials, CA")
    p.add_argument("--now", metavar="ISO8601", help="judge ages at this instant (default: now)")
    p.add_argument(
        "-o",
        "--output",
        choices=["text", "json", "yaml", "html"],
        default="text",
        metavar="text|json|yaml|html",
        help="output format (default text; json and yaml hold the same fields); "
        "html: one self-contained page of states, versions, rollouts",
    )
    p.add_argument("--out", metavar="FILE", help="write the output to FILE (default: stdout)")
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="reports kept by digest between runs, so only changed ones are fetched "
        "(default: $XDG_CACHE_HOME/gitedge/fleet-status/HOST/REPO)",
    )
    p.add_argument(
        "--jobs", type=int, default=16, metavar="N", help="reports read at once (default 16)"
    )
    p.set_defaults(handler="fleet:cmd_fleet_status")
    p = sub.add_parser("bundle", help="offline bundles: commits and images for a site, one file")
    bundle = _Documented(
        p.add_subparsers(dest="bundle_command", metavar="SUBCOMMAND", required=True), "bundle "
    )
    p = bundle.add_parser("create", help="write a bundle: git bundle + OCI layout + index")
    p.add_argument("--repo", required=True, metavar="URL_OR_DIR", help="the fleet repo")
    p.add_argument("--rev", metavar="REV", help="the commit to bring (default: HEAD)")
    p.add_argument("--since", metavar="REV", help="a commit the sites have: bring what follows")
    p.add_argument("--out", required=True, metavar="FILE", help="the bundle to write (a tar)")
    p.add_argument(
        "--cluster",
        action="append",
        default=[],
        metavar="FILE",
        help="a Cluster identity or AgentConfig (or a directory of them); repeatable: "
        "the images their plans need, whole K3s path included",
    )
    p.add_argument("--all", action="store_true", help="every image any target references")
    p.add_argument("--branch", help="the branch sites track (default: the AgentConfigs', or main)")
    p.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="OS/ARCH",
        help="only these platforms of indexes (repeatable; default all)",
    )
    p.add_argument(
        "--layouts",
        metavar="DIR",
        help="prefer OCI layouts DIR/<registry>/<repository> to registries",
    )
    p.add_argument("--config", metavar="FILE", help="AgentConfig: registry credentials, CA")
    p.add_argument("--jobs", type=int, default=4, metavar="N", help="parallel blob transfers")
    p.add_argument(
        "--kubectl-image",
        action="append",
        default=[],
        metavar="IMAGE",
        help="the kubectl image the sites' SUC runs (repeatable; default: each "
        "AgentConfig's apply.kubectlImage, else SUC's default)",
    )
    p.add_argument(
        "--suc",
        action="store_true",
        help="also SUC's controller and kubectl images "
        "(its pinned release), to bring up a new site's SUC offline",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(handler="bundle:cmd_bundle_create")
    p = bundle.add_parser("import", help="verify a bundle and fill the site's cache from it")
    p.add_argument("file", metavar="FILE", help="the bundle")
    p.add_argument("--config", required=True, metavar="FILE", help="the site's AgentConfig")
    p.add_argument(
        "--suc-manifests",
        metavar="DIR",
        help="also cache SUC's images from the "
        "bundle and write SUC's CRD and controller manifests into DIR",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(handler="bundle:cmd_bundle_import")
    p = sub.add_parser(
        "accept-history",
        help="recover a site whose fleet history was rewritten on purpose (after RollbackRefused)",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="the site's AgentConfig")
    p.add_argument(
        "--commit",
        required=True,
        metavar="ID",
        help="the full id of the rewritten tip RollbackRefused names",
    )
    p.add_argument("--now", metavar="ISO8601", help=argparse.SUPPRESS)
    p.set_defaults(handler="accepthistory:cmd_accept_history")
    p = sub.add_parser("node-config", help="what each node needs to pull from the site's cache")
    p.add_argument("--config", required=True, metavar="FILE", help="the site's AgentConfig")
    p.add_argument(
        "--repo",
        metavar="PATH",
        help="fleet repo checkout (default: the agent's state dir, last verified)",
    )
    p.add_argument("--rev", metavar="REV", help="with --repo: read this git revision")
    p.add_argument(
        "--registry",
        action="append",
        default=[],
        metavar="HOST",
        help="one more upstream registry to mirror (repeatable)",
    )
    p.add_argument("--out", metavar="DIR", help="write the files under DIR at their node paths")
    p.add_argument(
        "--check",
        metavar="REGISTRIES_YAML",
        help="exit 1 if this installed registries.yaml lacks a registry",
    )
    p.add_argument("-o", "--output", **OUTPUT)
    p.set_defaults(handler="nodes:cmd_node_config")
    p = sub.add_parser("demo", help="the whole story on this machine, no services needed")
    p.add_argument("--keep", metavar="DIR", help="build in DIR (kept) instead of a temp dir")
    p.set_defaults(handler="demo:cmd_demo")
    return parser if command is None or sub.found else None


@contextmanager
def _collector_off(one_shot: bool) -> Iterator[None]:
    """Keep Python's cyclic garbage collector off while a one-shot command runs.

    A command builds its objects once and exits; reference counting frees its garbage. With the
    collector on, the first collection after a large repo is loaded walks every object of it to
    free nothing (a tenth of ``plan``'s time on 10,000 targets). The long-running agent keeps it.
    """
    was_enabled = gc.isenabled()
    if one_shot:
        gc.disable()
    try:
        yield
    finally:
        if one_shot and was_enabled:
            gc.enable()


#: Commands whose process ends at once when run as the program (``gitedge ...``, not ``main``
#: called by other code): output flushed, then ``os._exit``, skipping Python's finalization of
#: ~400 modules, ~30 ms CPU of a no-op ``mirror``'s ~180 ms. Only for commands audited to leave
#: nothing to it: no file open for writing, no thread to wait for, no ``atexit`` work.
EXIT_AT_ONCE = frozenset({"mirror"})


def main(argv: Sequence[str] | None = None) -> int:
    code, command = _main(sys.argv[1:] if argv is None else list(argv))
    if argv is None and command in EXIT_AT_ONCE and "coverage" not in sys.modules:
        _exit_at_once(code)
    return code


def _exit_at_once(code: int) -> NoReturn:
    """End the process with ``code`` once stdout and stderr are flushed; 120 (as Python's own
    exit) if stdout could not be."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):
        code = code or 120
    with suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()
    os._exit(code)


def _main(argv: list[str]) -> tuple[int, str | None]:
    """The exit code, and the command run (None: none was)."""
    parser = (_build(argv[0]) if argv else None) or build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(e.code or 0), None
    spec: str | None = getattr(args, "handler", None)
    if spec is None:
        parser.print_help(sys.stderr)
        return 2, None
    module, _, name = spec.partition(":")
    # Lazy, for start-up: only the command's own module is imported (with what it imports at
    # its top), so `--help` loads no library and no command pays for another's.
    handler: Handler = getattr(importlib.import_module(f"gitedge.cli.{module}"), name)
    sub = getattr(args, "bundle_command", None) or getattr(args, "fleet_command", None)
    command = f"{args.command} {sub}" if sub else args.command
    try:
        with _collector_off(args.command != "run"):
            return handler(args), args.command
    except UsageError as e:
        print(f"gitedge {command}: {e}", file=sys.stderr)
        return 2, args.command
    except InvalidInput as e:
        for problem in e.problems:
            print(problem)
        print(f"gitedge {command}: {len(e.problems)} problem(s)", file=sys.stderr)
        return 1, args.command
    except GitEdgeError as e:
        print(f"gitedge {command}: {e}", file=sys.stderr)
        return 1, args.command
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130, args.command
    except Exception as e:  # the last line of defence: causes are fixed where they arise
        if os.environ.get("GITEDGE_DEBUG", "") not in ("", "0"):
            raise
        print(f"gitedge {command}: {_unexpected(e)}", file=sys.stderr)
        return 1, args.command


def _unexpected(e: Exception) -> str:
    """One line for an exception no command turned into an error of the tree."""
    if isinstance(e, BrokenPipeError):
        return "output closed early"
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return scrub(f"{where}{e.strerror}")
    text = scrub(" ".join(str(e).split()), limit=200)
    return (
        f"internal error ({type(e).__name__}{': ' + text if text else ''}); this is a bug in "
        "gitedge: please report it with the command that caused it (GITEDGE_DEBUG=1 shows "
        "the traceback)"
    )
