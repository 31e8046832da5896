"""The fleet page (issue 19): ``gitedge fleet status -o html`` over reports in a real
``docker-registry`` on 127.0.0.1, loaded in headless Chromium (Debian's ``chromium``): what the
page shows once its script ran (``--dump-dom``) is checked against counts the test makes from the
reports themselves, a filter given in the address is applied, a screenshot is saved, and a site
whose labels, name and messages carry markup and script gets them shown as text, never run.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gitedge.cli import main
from gitedge.core.status.conditions import Condition
from gitedge.core.status.sitereport import SiteReport, to_document
from tests.fleetkit import CANARY_PATH, PROD_PATH, example_fleet, push_reports
from tests.registryserver import docker_registry
from tests.test_fleet_status import put_artifact

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SITES = 60
CHROMIUM = "/usr/bin/chromium"
#: Each would change the title, add an element or run code if it were parsed as HTML.
XSS = {
    "region": "</script><script>document.title='pwned'</script>",
    "team": '"><img src=x onerror="document.title=\'pwned\'">',
    "note": "<u id=injected>underlined</u>&amp;",
}


@dataclass
class Page:
    html: str  # the file as written
    dom: str  # the document after its script ran (chromium --dump-dom)
    reports: list[SiteReport]


def chromium(tmp: Path, *args: str) -> str:
    """One headless Chromium run (no sandbox: the tests run as root in a container)."""
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=10000", *args],
        capture_output=True, text=True, timeout=120, check=True, env=chromium_env(tmp),
    )  # fmt: skip
    return out.stdout


def chromium_env(tmp: Path) -> dict[str, str]:
    """Chromium writes ~/.config/chromium and ~/.cache/dconf whatever --user-data-dir says: a
    home of its own under ``tmp``."""
    home = tmp / "chromium-home"
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache")}  # fmt: skip


class Elements(HTMLParser):
    """The text of each element with an id, and how many elements of each tag there are."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.text: dict[str, str] = {}
        self.data: dict[str, dict[str, str]] = {}  # id -> its data-* attributes
        self._open: list[tuple[str, str | None]] = []
        self.title = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        a = dict(attrs)
        ident = a.get("id")
        if ident:
            self.text.setdefault(ident, "")
            self.data[ident] = {k: v or "" for k, v in a.items() if k.startswith("data-")}
        if tag not in ("meta", "input", "br", "img", "link"):
            self._open.append((tag, ident))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            t, _ = self._open.pop()
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, ident in self._open:
            if ident:
                self.text[ident] += data + " "
        if self._open and self._open[-1][0] == "title":
            self.title += data


def parse(dom: str) -> Elements:
    e = Elements()
    e.feed(dom)
    return e


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    tmp = tmp_path_factory.mktemp("fleet-page")
    reports = list(example_fleet(SITES, now=NOW))
    hostile = replace(
        reports[1], cluster="<script>alert(1)</script>", labels={**reports[1].labels, **XSS},
        conditions=(Condition("Ready", "False", "StepRunning", "<img src=x onerror=alert(2)>",
                              NOW),),
    )  # fmt: skip
    reports.append(hostile)
    with docker_registry(tmp / "registry") as registry:
        push_reports(registry.host, "fleet/sites", reports, jobs=4)
        # a report of the hostile cluster under another tag: unreadable, its name in the reason
        put_artifact(registry, "fleet/sites", "impostor", to_document(hostile))
        out = tmp / "fleet.html"
        code = main(["fleet", "status", "--registry", f"{registry.host}/fleet/sites",
                     "--cache-dir", str(tmp / "cache"), "--now", NOW.isoformat(),
                     "-o", "html", "--out", str(out)])  # fmt: skip
    assert code == 1  # the impostor is unreadable; the page is written all the same
    dom = chromium(tmp, "--dump-dom", out.as_uri())
    yield Page(out.read_text(), dom, reports)


def test_the_page_is_one_self_contained_file(page: Page) -> None:
    # the page less its data block (site-written strings, inert JSON) loads nothing from anywhere
    data = re.compile(r'<script type="application/json" id="fleet-data">[^<]*</script>')
    assert len(data.findall(page.html)) == 1
    markup = data.sub("", page.html)
    assert not re.search(r"\b(src|href)\s*=|url\(|@import|<link|<iframe|<img", markup, re.I)
    assert page.html.count("<script") == 2  # the data block and the page's own script
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page.html)
    assert csp is not None and "default-src 'none'" in csp.group(1)


def test_the_page_shows_states_versions_stale_sites_and_rollouts(page: Page) -> None:
    dom = parse(page.dom)
    assert dom.title == "gitedge fleet"
    stale = [r for r in page.reports if NOW - r.time > timedelta(hours=24)]
    ready = [r for r in page.reports if r not in stale and (x := r.ready()) and x.status == "True"]
    assert stale and ready
    assert dom.text["card-sites"].split()[0] == str(len(page.reports))
    assert dom.text["card-stale"].split()[0] == str(len(stale))
    assert dom.text["card-ready"].split()[0] == str(len(ready))
    assert dom.text["card-unreadable"].split()[0] == "1"
    assert "impostor" in dom.text["unreadable"]
    # sites by K3s version: each applied version with its count
    by_k3s = Counter(r.k3s.applied for r in page.reports)
    for version, n in by_k3s.items():
        assert re.search(rf"{re.escape(str(version))} {n} ", dom.text["by-k3s"]), (version, n)
    # the stale list names every stale site
    assert all(r.cluster in dom.text["stale"] for r in stale)
    # rollouts: for each target, how many sites stand at each step of its path
    for target, path in (("k3s-stable", PROD_PATH), ("k3s-canary", CANARY_PATH)):
        mine = [r for r in page.reports if r.k3s.target == target]
        steps = {d["data-version"]: dom.text[i] for i, d in dom.data.items()
                 if i.startswith(f"step-{target}-")}  # fmt: skip
        assert list(steps) == list(path)
        for version, text in steps.items():
            assert text.split()[0] == str(sum(r.k3s.applied == version for r in mine))
        done = sum(r.k3s.applied == path[-1] for r in mine)
        assert f"{done}/{len(mine)} sites at {path[-1]}" in dom.text[f"rollout-{target}"]


def test_site_written_markup_is_text_never_html(page: Page) -> None:
    dom = parse(page.dom)
    assert dom.title == "gitedge fleet"  # no injected script ran
    assert dom.tags["img"] == 0 and dom.tags["u"] == 0 and "injected" not in dom.text
    assert dom.tags["script"] == 2
    # ... and each string is on the page, as text: in the sites table and the label filters
    for value in (*XSS.values(), "<script>alert(1)</script>"):
        assert value in dom.text["sites"] or value in dom.text["label-filters"], value
    assert "<script>alert(1)</script>" in dom.text["sites"]
    assert XSS["region"] in dom.text["label-filters"]
    assert "holds the report of cluster '<script>alert(1)</script>'" in dom.text["unreadable"]


def test_a_filter_in_the_address_narrows_every_section_and_a_screenshot_is_taken(
    page: Page, tmp_path: Path
) -> None:
    html = tmp_path / "fleet.html"
    html.write_text(page.html)
    dom = parse(chromium(tmp_path, "--dump-dom", html.as_uri() + "#ring=canary&region=eu-west"))
    mine = [r for r in page.reports if r.labels["ring"] == "canary"
            and r.labels["region"] == "eu-west"]  # fmt: skip
    assert mine and len(mine) < len(page.reports)
    assert dom.text["card-sites"].split()[0] == str(len(mine))
    assert dom.text["matching"].split()[:3] == [str(len(mine)), "of", str(len(page.reports))]
    assert "rollout-k3s-stable" not in dom.text  # no canary site follows the stable target
    assert all(r.cluster in dom.text["sites"] for r in mine)
    assert sum(r.cluster in dom.text["sites"] for r in page.reports) == len(mine)

    shot = tmp_path / "fleet.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1500", html.as_uri())
    data = shot.read_bytes()  # kept in pytest's tmp dir for a person to look at
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
