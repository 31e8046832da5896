"""The fleet page: ``gitedge fleet status -o html``, one self-contained HTML file. Pure.

Sites by state and by version, the stale sites, each K3s target's rollout (how many sites stand
at each step of its path), the unreadable reports and the sites themselves, all narrowed by
label filters and a name search. Nothing is loaded from anywhere: the style and the script are
inline, the data is a JSON block in the page.

Everything in a report was written by a site, so it is hostile input. It reaches the page only
as JSON inside ``<script type="application/json">`` (``<``, ``>``, ``&`` escaped as ``\\u003c``...,
so no ``</script>`` can end the block) and is put into the document by the script with
``textContent`` and DOM properties, never parsed as HTML. A Content-Security-Policy allows only
the page's own script and style (by their sha256) and no other source of any kind: should markup
ever slip through, it could neither run nor load anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from gitedge.core.fleet.versions import K3sVersion
from gitedge.core.status.sitereport import Row
from gitedge.core.timefmt import iso_z
from gitedge.errors import VersionError

__all__ = ["page_site", "render_page"]

#: The sites table and the stale list show at most this many rows (the filters narrow them).
SHOWN = 500


def page_site(row: Row) -> dict[str, Any]:
    """One site as the page's script reads it (short keys: 10,000 of them are embedded)."""
    r = row.report
    ready = r.ready()
    return {
        "c": r.cluster,
        "s": row.state,
        "st": row.stale,
        "a": int(row.age.total_seconds()),
        "k": [r.k3s.applied, r.k3s.desired, r.k3s.target, list(r.k3s.path)],
        "o": [r.os.applied, r.os.desired, r.os.target],
        "v": (r.last_verified or "")[:12],
        "l": dict(r.labels),
        "m": ready.message[:300] if ready is not None else "",
    }


def _version_key(text: str) -> tuple[int, tuple[int, ...], str]:
    try:
        return (1, K3sVersion.parse(text).key, text)
    except (VersionError, ValueError):
        return (0, (), text)


def rollout_steps(sites: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Each K3s target's steps, oldest first: every version its sites run or still have to
    apply. A report without a target name (an older agent) counts under ``k3s <desired>``."""
    steps: dict[str, set[str]] = {}
    for s in sites:
        applied, desired, target, path = s["k"]
        if desired is None:
            continue
        name = target or f"k3s {desired}"
        seen = steps.setdefault(name, set())
        seen.update(v for v in (applied, desired, *path) if v)
    return {t: sorted(v, key=_version_key) for t, v in sorted(steps.items())}


def _json_for_script(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _attr(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


def render_page(
    *,
    registry: str,
    now: datetime,
    stale_after: timedelta,
    sites: Sequence[dict[str, Any]],
    unreadable: Sequence[tuple[str, str]],
) -> str:
    """The whole page. ``sites`` are :func:`page_site` entries sorted by cluster name;
    ``unreadable`` are (tag, why) pairs."""
    data = {
        "registry": registry,
        "time": iso_z(now),
        "staleAfter": int(stale_after.total_seconds()),
        "shown": SHOWN,
        "sites": list(sites),
        "unreadable": [list(u) for u in unreadable],
        "rollouts": rollout_steps(sites),
    }
    csp = (
        f"default-src 'none'; script-src {_csp_hash(SCRIPT)}; style-src {_csp_hash(STYLE)}; "
        "img-src 'none'; base-uri 'none'; form-action 'none'"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_attr(csp)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>gitedge fleet</title>\n"
        f"<style>{STYLE}</style></head>\n<body>\n{BODY}\n"
        f'<script type="application/json" id="fleet-data">{_json_for_script(data)}</script>\n'
        f"<script>{SCRIPT}</script>\n</body></html>\n"
    )


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f4f6f9}
header{background:#1d2b45;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c5d0e6}
main{padding:16px 24px;display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));
gap:16px}
section{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 3px #0002}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 8px}
#filters{display:flex;flex-wrap:wrap;gap:10px;align-items:center}
#filters label{font-size:13px}select,input{font:inherit;padding:2px 4px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{flex:1;min-width:110px;border-radius:6px;padding:8px 12px;background:#eef2f8}
.card b{display:block;font-size:24px}
.card.ok{background:#e3f5e8}.card.bad{background:#fdecea}.card.stale{background:#fff4dc}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #e6e9ef;vertical-align:top}
th{font-size:12px;color:#5a6478;text-transform:uppercase}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.barcell{width:45%}
.bar{height:10px;background:#3c78d8;border-radius:2px;min-width:1px}
.bar.done{background:#2e9d57}
.state-ready{color:#2e7d46}.state-stale{color:#b26a00}.state-other{color:#c0392b}
.note{color:#5a6478;font-size:12px}
.path{display:flex;gap:4px;margin:6px 0 12px}
.step{flex:1;border-radius:4px;padding:6px;background:#eef2f8;text-align:center;font-size:12px}
.step b{display:block;font-size:18px}.step.goal{background:#e3f5e8}
code{font-size:12px}
"""

BODY = """<header><h1>gitedge fleet</h1><p id="subtitle"></p></header>
<main>
<section class="wide"><div id="filters"><strong>Filter</strong>
<span id="label-filters"></span>
<label>cluster <input id="name-filter" type="search" placeholder="name contains"></label>
<button id="clear" type="button">clear</button><span id="matching" class="note"></span></div>
</section>
<section class="wide"><div class="cards" id="cards"></div></section>
<section><h2>Sites by state</h2><table id="by-state"></table></section>
<section><h2>Sites by K3s version</h2><table id="by-k3s"></table></section>
<section><h2>Sites by OS image</h2><table id="by-os"></table></section>
<section class="wide"><h2>Rollouts</h2><div id="rollouts"></div></section>
<section class="wide"><h2>Stale sites</h2><table id="stale"></table></section>
<section class="wide"><h2>Unreadable reports</h2><table id="unreadable"></table></section>
<section class="wide"><h2>Sites</h2><table id="sites"></table></section>
</main>
<noscript><p>This page draws itself with its inline script;
<code>gitedge fleet status -o json</code> gives the same data.</p></noscript>"""

SCRIPT = """
"use strict";
const D = JSON.parse(document.getElementById("fleet-data").textContent);
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function age(s) {
  if (s < 120) return s + "s";
  if (s < 7200) return Math.floor(s / 60) + "m";
  if (s < 172800) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}
function stateClass(s) {
  return s === "ready" ? "state-ready" : s === "stale" ? "state-stale" : "state-other";
}
function table(t, head, rows) {
  t.replaceChildren();
  const tr = el("tr");
  head.forEach((h) => tr.appendChild(el("th", h)));
  t.appendChild(tr);
  rows.forEach((cells) => {
    const r = el("tr");
    cells.forEach((c) => r.appendChild(c instanceof Node ? c : el("td", c)));
    t.appendChild(r);
  });
}
function countTable(t, what, counts, total) {
  const rows = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  table(t, [what, "sites", ""], rows.map(([k, n]) => {
    const bar = el("td", null, "barcell"); const b = el("div", null, "bar");
    b.style.width = (100 * n / Math.max(total, 1)).toFixed(1) + "%"; bar.appendChild(b);
    const name = el("td", k); if (what === "state") name.className = stateClass(k);
    return [name, el("td", n, "n"), bar];
  }));
}
const keys = new Map();
D.sites.forEach((s) => Object.entries(s.l).forEach(([k, v]) => {
  if (!keys.has(k)) keys.set(k, new Map());
  keys.get(k).set(v, (keys.get(k).get(v) || 0) + 1);
}));
const selects = new Map();
let drawn = false;
[...keys.keys()].sort().forEach((k) => {
  const label = el("label", k + " ");
  const sel = el("select"); sel.dataset.key = k;
  sel.appendChild(Object.assign(el("option", "any"), {value: ""}));
  [...keys.get(k).entries()].sort().forEach(([v, n]) =>
    sel.appendChild(Object.assign(el("option", v + " (" + n + ")"), {value: v})));
  sel.addEventListener("change", draw);
  label.appendChild(sel); $("label-filters").appendChild(label); selects.set(k, sel);
});
$("name-filter").addEventListener("input", draw);
$("clear").addEventListener("click", () => {
  selects.forEach((s) => { s.value = ""; }); $("name-filter").value = ""; draw();
});
function chosen() {
  const want = [...selects.entries()].filter(([, s]) => s.value !== "");
  const name = $("name-filter").value.trim();
  return D.sites.filter((s) => want.every(([k, sel]) => s.l[k] === sel.value) &&
    (!name || s.c.includes(name)));
}
function draw() {
  if (drawn) toHash();
  drawn = true;
  const sites = chosen();
  $("matching").textContent = sites.length + " of " + D.sites.length + " sites";
  const n = (f) => sites.filter(f).length;
  const cards = [["sites", sites.length, ""], ["ready", n((s) => s.s === "ready"), "ok"],
    ["not ready", n((s) => s.s !== "ready" && !s.st), "bad"], ["stale", n((s) => s.st), "stale"],
    ["unreadable", D.unreadable.length, D.unreadable.length ? "bad" : ""]];
  $("cards").replaceChildren(...cards.map(([t, v, c]) => {
    const d = el("div", null, "card " + c); d.id = "card-" + t.replace(" ", "-");
    d.appendChild(el("b", v)); d.appendChild(el("span", t)); return d;
  }));
  const by = (f) => { const m = new Map(); sites.forEach((s) => {
    const k = f(s); m.set(k, (m.get(k) || 0) + 1); }); return m; };
  countTable($("by-state"), "state", by((s) => s.s), sites.length);
  countTable($("by-k3s"), "k3s", by((s) => s.k[0] || "unknown"), sites.length);
  countTable($("by-os"), "os image", by((s) => s.o[0] || "unknown"), sites.length);
  const ro = $("rollouts"); ro.replaceChildren();
  Object.entries(D.rollouts).forEach(([target, steps]) => {
    const mine = sites.filter((s) => s.k[1] !== null && (s.k[2] || "k3s " + s.k[1]) === target);
    if (!mine.length) return;
    const goal = mine[0].k[1];
    const done = mine.filter((s) => s.k[0] === goal).length;
    const box = el("div", null, "rollout"); box.id = "rollout-" + target;
    box.appendChild(el("h3", target + ": " + done + "/" + mine.length + " sites at " + goal));
    const path = el("div", null, "path");
    steps.forEach((v, i) => {
      const at = mine.filter((s) => s.k[0] === v).length;
      const st = el("div", null, "step" + (v === goal ? " goal" : ""));
      st.id = "step-" + target + "-" + i; st.dataset.version = v;
      st.appendChild(el("b", at)); st.appendChild(el("span", v));
      path.appendChild(st);
    });
    const other = mine.filter((s) => !steps.includes(s.k[0])).length;
    if (other) {
      const st = el("div", null, "step"); st.id = "step-" + target + "-unknown";
      st.dataset.version = "";
      st.appendChild(el("b", other)); st.appendChild(el("span", "unknown")); path.appendChild(st);
    }
    box.appendChild(path); ro.appendChild(box);
  });
  if (!ro.children.length) ro.appendChild(el("p", "no site has a K3s target", "note"));
  const stale = sites.filter((s) => s.st).sort((a, b) => b.a - a.a);
  table($("stale"), ["cluster", "last heard", "k3s", "labels"], stale.slice(0, D.shown).map(
    (s) => [s.c, age(s.a) + " ago", s.k[0] || "-", labelText(s.l)]));
  note($("stale"), stale.length);
  table($("unreadable"), ["tag", "why"], D.unreadable.map(([t, why]) => [t, why]));
  if (!D.unreadable.length) $("unreadable").appendChild(el("caption", "none", "note"));
  table($("sites"), ["cluster", "state", "k3s", "os", "commit", "age", "labels"],
    sites.slice(0, D.shown).map((s) => [s.c, Object.assign(el("td", s.s, stateClass(s.s)),
      {title: s.m}), pair(s.k), pair(s.o), s.v || "-", age(s.a), labelText(s.l)]));
  note($("sites"), sites.length);
}
function note(t, total) {
  if (total > D.shown) t.insertBefore(el("caption",
    "first " + D.shown + " of " + total + "; narrow with the filters", "note"), t.firstChild);
}
function pair(v) {
  if (v[0] === null && v[1] === null) return "-";
  if (v[1] === null || v[0] === v[1]) return v[0] || "-";
  return (v[0] || "?") + " -> " + v[1];
}
function labelText(l) {
  return Object.entries(l).map(([k, v]) => k + "=" + v).join(", ");
}
// The filters live in the address's #fragment (#ring=canary&name=eu): a view can be linked.
function fromHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  selects.forEach((s, k) => { s.value = h.get(k) || ""; if (s.selectedIndex < 0) s.value = ""; });
  $("name-filter").value = h.get("name") || "";
}
function toHash() {
  const h = new URLSearchParams();
  selects.forEach((s, k) => { if (s.value !== "") h.set(k, s.value); });
  if ($("name-filter").value) h.set("name", $("name-filter").value);
  try { history.replaceState(null, "", "#" + h.toString()); } catch (e) { /* opaque origin */ }
}
window.addEventListener("hashchange", () => { fromHash(); draw(); });
fromHash();
$("subtitle").textContent = D.registry + " at " + D.time + "; silent for more than " +
  age(D.staleAfter) + " = stale";
draw();
"""
