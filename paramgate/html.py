"""A self-contained HTML page for an :class:`~paramgate.AuditReport`.

``render_html(report)`` returns one page with inline CSS and a small inline
script, no external resource: it works offline and can be attached to a CI run.
The page shows the model's module tree (built from the parameter names, split
on ``.`` and ``/``), each node coloured by role (trainable, frozen, state, or
mixed) with its element count and size, and the findings beside it; clicking a
finding highlights its parameter in the tree.

The report data is embedded as JSON in ``<script type="application/json"
id="paramgate-data">`` and the script builds the page from it with
``textContent`` only, so no name is ever parsed as HTML.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field

from paramgate.records import ParamRecord
from paramgate.report import AuditReport, dtype_itemsize, human_bytes

__all__ = ["render_html"]

_ROLES = ("trainable", "frozen", "state")
_SPLIT = re.compile(r"[./]")
_MARKER = re.compile(r"@TITLE@|@DATA@")


@dataclass
class _Node:
    name: str
    path: str
    children: dict[str, _Node] = field(default_factory=dict)
    param: ParamRecord | None = None


def _param_bytes(p: ParamRecord) -> int | None:
    itemsize = dtype_itemsize(p.dtype)
    return None if itemsize is None else p.numel * itemsize


def _build_tree(params: tuple[ParamRecord, ...]) -> _Node:
    root = _Node("", "")
    for p in params:
        node = root
        parts = _SPLIT.split(p.name) if p.name else [p.name]
        consumed = 0
        for i, part in enumerate(parts):
            consumed += len(part) + (1 if i else 0)
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node(part, p.name[:consumed])
            node = child
        if node.param is None:
            node.param = p
        else:  # two parameters with one name (PG008): keep both, side by side
            key = f"{node.name} #{len(node.children) + 2}"
            node.children[key] = _Node(key, p.name, param=p)
    return root


def _node_data(node: _Node) -> dict[str, object]:
    roles = dict.fromkeys(_ROLES, 0)
    numel = 0
    nbytes: int | None = 0
    leaf: dict[str, object] | None = None
    if node.param is not None:
        p = node.param
        roles[p.role] += p.numel
        numel += p.numel
        nbytes = _param_bytes(p)
        leaf = {
            "name": p.name,
            "shape": list(p.shape),
            "dtype": p.dtype,
            "role": p.role,
            "kind": p.kind,
            "trainable": p.trainable,
            "in_optimizer": p.in_optimizer,
            "group": p.group,
            "aliases": list(p.aliases),
            "note": p.note,
        }
    children = [_node_data(c) for c in node.children.values()]
    for c in children:
        for role in _ROLES:
            roles[role] += c["roles"][role]  # type: ignore[index]
        numel += c["numel"]  # type: ignore[operator]
        cb = c["bytes"]
        nbytes = None if nbytes is None or cb is None else nbytes + cb  # type: ignore[operator]
    present: set[str] = set() if node.param is None else {node.param.role}
    mixed = False
    for c in children:
        if c["role"] == "mixed":
            mixed = True
        elif c["role"] != "empty":
            present.add(str(c["role"]))
    role = "mixed" if mixed or len(present) > 1 else (present.pop() if present else "empty")
    return {
        "name": node.name,
        "path": node.path,
        "numel": numel,
        "bytes": nbytes,
        "size": "?" if nbytes is None else human_bytes(nbytes),
        "roles": roles,
        "role": role,
        "param": leaf,
        "children": children,
    }


def _data(report: AuditReport) -> dict[str, object]:
    totals = report.totals
    return {
        "framework": report.framework,
        "optimizer": report.optimizer,
        "ok": report.ok,
        "totals": totals.to_dict(),
        "groups": None if report.groups is None else [g.to_dict() for g in report.groups],
        "findings": [f.to_dict() for f in report.findings],
        "tree": _node_data(_build_tree(report.params)),
    }


def render_html(report: AuditReport) -> str:
    """The report as one self-contained HTML page (inline CSS and script, no external resource)."""
    # Inside <script> only "</script" and "<!--" could end or confuse the element: escape every <, > and &
    # as JSON \u escapes (stricter than "</" -> "<\/"), which JSON.parse turns back into the characters.
    data = json.dumps(_data(report), ensure_ascii=False, sort_keys=True)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        data = data.replace(char, escaped)
    status = "OK" if report.ok else "errors found"
    title = html.escape(f"paramgate audit: {report.framework} ({status})")
    return _MARKER.sub(lambda m: title if m.group(0) == "@TITLE@" else data, _TEMPLATE)


_CSS = """
:root { --trainable: #2e9d4a; --frozen: #3867c9; --state: #9b4dca; --mixed: #8a8f98; --empty: #c8ccd2;
  --error: #c62828; --warning: #b7791f; --info: #2b7a99; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2330;
  background: #f6f7f9; }
header { padding: 12px 20px; background: #1d2330; color: #fff; }
header h1 { font-size: 18px; margin: 0 0 4px; }
header .totals span { margin-right: 16px; }
.legend span { display: inline-block; margin-right: 14px; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 4px;
  vertical-align: -1px; }
main { display: flex; gap: 16px; padding: 16px 20px; align-items: flex-start; }
#tree-panel { flex: 3; min-width: 0; background: #fff; border-radius: 6px; padding: 10px 14px; }
#findings-panel { flex: 2; min-width: 280px; background: #fff; border-radius: 6px; padding: 10px 14px;
  position: sticky; top: 10px; max-height: calc(100vh - 20px); overflow: auto; }
h2 { font-size: 15px; margin: 4px 0 8px; }
ul.tree { list-style: none; margin: 0; padding-left: 18px; }
#tree > ul.tree { padding-left: 0; }
li.node > .row { display: flex; align-items: center; gap: 8px; padding: 2px 4px; border-radius: 4px;
  border-left: 4px solid var(--c); cursor: default; }
li.node.has-children > .row { cursor: pointer; }
li.node > .row:hover { background: #eef1f5; }
li.node.collapsed > ul.tree { display: none; }
.toggle { width: 12px; color: #777; font-size: 10px; }
.name { font-family: ui-monospace, Menlo, Consolas, monospace; font-weight: 600; }
.meta { color: #555; font-size: 12px; }
.size { margin-left: auto; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { font-size: 11px; padding: 0 6px; border-radius: 8px; color: #fff; background: var(--c); }
.bar { display: inline-flex; width: 90px; height: 8px; border-radius: 4px; overflow: hidden; background: #eee; }
.bar i { display: block; height: 100%; }
.role-trainable { --c: var(--trainable); } .role-frozen { --c: var(--frozen); } .role-state { --c: var(--state); }
.role-mixed { --c: var(--mixed); } .role-empty { --c: var(--empty); }
li.node.highlight > .row { background: #fff3c4; outline: 2px solid #e0b000; }
li.node.flagged > .row .name::after { content: " \\26A0"; color: var(--error); }
ol#findings { list-style: none; padding: 0; margin: 0; }
li.finding { border-left: 4px solid var(--s); padding: 6px 8px; margin-bottom: 8px; background: #fafbfc;
  border-radius: 4px; cursor: pointer; }
li.finding:hover { background: #eef1f5; }
.sev-error { --s: var(--error); } .sev-warning { --s: var(--warning); } .sev-info { --s: var(--info); }
.sev { font-weight: 700; color: var(--s); text-transform: uppercase; font-size: 11px; }
.code { font-weight: 700; margin: 0 6px; }
.fname { font-family: ui-monospace, Menlo, Consolas, monospace; }
.message { margin-top: 3px; white-space: pre-wrap; }
.none { color: var(--trainable); font-weight: 600; }
"""

_JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("paramgate-data").textContent);
  var ROLES = ["trainable", "frozen", "state"];
  var byPath = {};
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(n) { return Number(n).toLocaleString("en-US"); }
  function bar(roles, total) {
    var b = el("span", "bar");
    ROLES.forEach(function (r) {
      if (!roles[r] || !total) return;
      var i = el("i", "role-" + r);
      i.style.width = (100 * roles[r] / total) + "%";
      i.style.background = "var(--" + r + ")";
      i.title = r + ": " + fmt(roles[r]);
      b.appendChild(i);
    });
    return b;
  }
  function node(n) {
    var li = el("li", "node role-" + n.role);
    li.setAttribute("data-path", n.path);
    li.setAttribute("data-role", n.role);
    var row = el("div", "row");
    var hasKids = n.children.length > 0;
    if (hasKids) li.className += " has-children";
    row.appendChild(el("span", "toggle", hasKids ? "\u25BE" : ""));
    row.appendChild(el("span", "name", n.name === "" ? "(unnamed)" : n.name));
    row.appendChild(el("span", "badge", n.role));
    var meta;
    if (n.param) {
      var p = n.param;
      var bits = ["[" + p.shape.join(", ") + "]", p.dtype, p.kind,
        p.in_optimizer ? "group " + (p.group === null ? "?" : p.group) : "not in optimizer"];
      if (p.aliases.length) bits.push("aliases: " + p.aliases.join(", "));
      if (p.note) bits.push(p.note);
      meta = el("span", "meta", bits.join(" \u00B7 "));
      li.className += " leaf";
    } else {
      var parts = [];
      ROLES.forEach(function (r) { if (n.roles[r]) parts.push(r + " " + fmt(n.roles[r])); });
      meta = el("span", "meta", parts.join(" \u00B7 "));
      if (n.role === "mixed") row.appendChild(bar(n.roles, n.numel));
    }
    row.appendChild(meta);
    row.appendChild(el("span", "size", fmt(n.numel) + " el \u00B7 " + n.size));
    li.appendChild(row);
    if (n.param) byPath[n.param.name] = byPath[n.param.name] || li;
    else if (!(n.path in byPath)) byPath[n.path] = li;
    if (hasKids) {
      var ul = el("ul", "tree");
      n.children.forEach(function (c) { ul.appendChild(node(c)); });
      li.appendChild(ul);
      row.addEventListener("click", function () { li.classList.toggle("collapsed"); });
    }
    return li;
  }
  var t = data.totals;
  var totals = document.getElementById("totals");
  [["framework", data.framework], ["optimizer", data.optimizer || "none given"],
   ["trainable", fmt(t.trainable) + " (" + Number(t.trainable_pct).toFixed(2) + "%)"],
   ["frozen", fmt(t.frozen)], ["state", fmt(t.state)], ["all", fmt(t.all)]].forEach(function (kv) {
    totals.appendChild(el("span", "total", kv[0] + ": " + kv[1]));
  });
  var tree = document.getElementById("tree");
  var rootUl = el("ul", "tree");
  data.tree.children.forEach(function (c) { rootUl.appendChild(node(c)); });
  if (data.tree.param) rootUl.appendChild(node(data.tree));
  tree.appendChild(rootUl);
  var list = document.getElementById("findings");
  document.getElementById("findings-count").textContent = String(data.findings.length);
  if (!data.findings.length) list.appendChild(el("li", "none", "No findings."));
  data.findings.forEach(function (f) {
    var li = el("li", "finding sev-" + f.severity);
    li.setAttribute("data-code", f.code);
    if (f.name !== null) li.setAttribute("data-name", f.name);
    var head = el("div", "head");
    head.appendChild(el("span", "sev", f.severity));
    head.appendChild(el("span", "code", f.code));
    head.appendChild(el("span", "title", f.title));
    li.appendChild(head);
    if (f.name !== null) li.appendChild(el("div", "fname", f.name));
    li.appendChild(el("div", "message", f.message));
    var target = f.name !== null ? byPath[f.name] : undefined;
    if (target) target.classList.add("flagged");
    li.addEventListener("click", function () {
      var old = document.querySelectorAll("li.node.highlight");
      for (var i = 0; i < old.length; i++) old[i].classList.remove("highlight");
      if (!target) return;
      for (var a = target.parentElement; a; a = a.parentElement) {
        if (a.classList && a.classList.contains("node")) a.classList.remove("collapsed");
      }
      target.classList.add("highlight");
      target.scrollIntoView({block: "center"});
    });
    list.appendChild(li);
  });
  document.body.setAttribute("data-rendered", "true");
})();
"""

_TEMPLATE = (
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>"""
    + _CSS
    + """</style>
</head>
<body>
<header>
<h1>@TITLE@</h1>
<div class="totals" id="totals"></div>
<div class="legend"><span><i class="swatch" style="background:var(--trainable)"></i>trainable</span>"""
    """<span><i class="swatch" style="background:var(--frozen)"></i>frozen</span>"""
    """<span><i class="swatch" style="background:var(--state)"></i>state (statistics)</span>"""
    """<span><i class="swatch" style="background:var(--mixed)"></i>mixed</span></div>
</header>
<noscript><p>This page needs JavaScript to draw the tree;
the data is in the paramgate-data script element.</p></noscript>
<main>
<section id="tree-panel"><h2>Module tree</h2><div id="tree"></div></section>
<aside id="findings-panel"><h2>Findings (<span id="findings-count">0</span>)</h2><ol id="findings"></ol></aside>
</main>
<script type="application/json" id="paramgate-data">@DATA@</script>
<script>"""
    + _JS
    + """</script>
</body>
</html>
"""
)
