"""Hostile input, second round (issue 13): shapes of git trees the per-object caps let through.

Every tree below is under the 4 MiB tree cap and the repos are a few hundred KB, made with
pygit2 in a real bare repo and read by ``GitRepo.tree_snapshot`` (what the agent's plan step,
``gitedge plan --rev`` and ``bundle create`` read):

- one tree naming another tree under many names: 400 x 400 empty files are 160,000 paths (a
  1,200 x 1,200 one took 58 s and 208 MiB, 20,000 x 20,000 would never end): refused past
  100,000 entries met, naming the directory;
- a tree nested 1,500 deep (a path of 3,000 bytes) raised RecursionError (a bug, not a problem
  of the fleet repo): now read; nested 5,000 deep its path is over 4,096 bytes and refused.
"""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest
from pygit2.enums import FileMode

from gitedge.adapters.gitobjects import MAX_WALK_ENTRIES
from gitedge.adapters.gitsource import GitRepo
from gitedge.errors import InvalidFleetRepo


def commit_of(repo: pygit2.Repository, tree: pygit2.Oid) -> str:
    who = pygit2.Signature("Intruder", "x@example.invalid", 1_700_000_000, 0)
    return str(repo.create_commit("refs/heads/main", who, who, "hostile\n", tree, []))


def square_tree(repo: pygit2.Repository, n: int) -> pygit2.Oid:
    """A root with ``junk/`` holding ``n`` names of one tree of ``n`` empty files."""
    empty = repo.create_blob(b"")
    files = repo.TreeBuilder()
    for i in range(n):
        files.insert(f"f{i}", empty, FileMode.BLOB)
    inner = files.write()
    dirs = repo.TreeBuilder()
    for i in range(n):
        dirs.insert(f"d{i}", inner, FileMode.TREE)
    root = repo.TreeBuilder()
    root.insert("junk", dirs.write(), FileMode.TREE)
    return root.write()


def test_a_tree_repeated_under_many_names_is_refused_by_the_entries_met(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "square.git"), bare=True)
    n = 400
    assert n * n > MAX_WALK_ENTRIES
    commit = commit_of(repo, square_tree(repo, n))
    with pytest.raises(InvalidFleetRepo) as e:
        GitRepo(path=tmp_path / "square.git").tree_snapshot(commit)
    (problem,) = e.value.problems
    assert problem.path == "."
    assert f"more than {MAX_WALK_ENTRIES:,} entries" in problem.message
    with pytest.raises(InvalidFleetRepo) as e:
        GitRepo(path=tmp_path / "square.git").tree_snapshot(commit, subdir="junk")
    assert e.value.problems[0].path == "junk"


def nested(repo: pygit2.Repository, depth: int) -> pygit2.Oid:
    """``d/d/.../d/x.yaml``, ``depth`` directories deep."""
    blob = repo.create_blob(b"a: 1\n")
    tb = repo.TreeBuilder()
    tb.insert("x.yaml", blob, FileMode.BLOB)
    tree = tb.write()
    for _ in range(depth):
        tb = repo.TreeBuilder()
        tb.insert("d", tree, FileMode.TREE)
        tree = tb.write()
    return tree


def test_a_deeply_nested_tree_is_read_without_recursion(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "deep.git"), bare=True)
    commit = commit_of(repo, nested(repo, 1_500))
    snap = GitRepo(path=tmp_path / "deep.git").tree_snapshot(commit)
    assert snap == {"d/" * 1_500 + "x.yaml": b"a: 1\n"}


def test_a_path_over_4096_bytes_is_refused(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "deeper.git"), bare=True)
    commit = commit_of(repo, nested(repo, 5_000))
    with pytest.raises(InvalidFleetRepo) as e:
        GitRepo(path=tmp_path / "deeper.git").tree_snapshot(commit)
    (problem,) = e.value.problems
    assert problem.path.startswith("d/d/d/") and "a path longer than 4096 bytes" in problem.message
