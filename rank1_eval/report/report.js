// rank1_eval report: sort, filter and page the query index; open a query's pairs on demand.
// Self-contained (no network, no library). Each query's pairs are a gzip+base64 JSON blob in a
// <script type="application/octet-stream" data-qid> element, inflated with the browser's DecompressionStream
// only when the query is opened, so a page of 10,000+ pairs paints as fast as one of 100.
// Model output is only ever inserted as text (textContent), never as HTML.
(() => {
  "use strict";
  const $ = (s, r = document) => r.querySelector(s);
  const $$ = (s, r = document) => Array.from(r.querySelectorAll(s));
  const MODE = document.body.dataset.mode; // "single" or "pair"

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k === "cls") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  const fmt = (v, d = 4) => (v === null || v === undefined ? "—" : Number(v).toFixed(d));
  const signed = (v, d = 4) => (v === null || v === undefined ? "—" : (v > 0 ? "+" : "") + Number(v).toFixed(d));

  // ---- data blobs ------------------------------------------------------------------------------------
  const blobs = new Map($$("script[data-qid]").map((s) => [s.dataset.qid, s]));
  const cache = new Map();
  async function load(qid) {
    if (cache.has(qid)) return cache.get(qid);
    const node = blobs.get(qid);
    if (!node) throw new Error("no data for query " + qid);
    const bin = atob(node.textContent.trim());
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    const data = JSON.parse(await new Response(stream).text());
    cache.set(qid, data);
    return data;
  }

  // ---- sortable tables ---------------------------------------------------------------------------------
  function cellValue(td) {
    const s = td.dataset.s !== undefined ? td.dataset.s : td.textContent.trim();
    if (s === "" || s === "—") return null;
    const n = Number(s);
    return Number.isFinite(n) ? n : s.toLowerCase();
  }
  function compare(a, b, dir) {
    if (a === null && b === null) return 0;
    if (a === null) return 1; // missing values last whatever the direction
    if (b === null) return -1;
    if (typeof a === typeof b) return (a < b ? -1 : a > b ? 1 : 0) * dir;
    return (typeof a === "number" ? -1 : 1) * dir;
  }
  function makeSortable(table, onSorted) {
    const heads = $$("thead th", table);
    heads.forEach((th, col) => {
      if (!th.hasAttribute("data-sort")) return;
      th.addEventListener("click", () => {
        const dir = th.classList.contains("sorted-desc") ? 1 : th.classList.contains("sorted-asc") ? -1 : Number(th.dataset.sort) || -1;
        heads.forEach((h) => h.classList.remove("sorted-asc", "sorted-desc"));
        th.classList.add(dir > 0 ? "sorted-asc" : "sorted-desc");
        const body = table.tBodies[0];
        // a row of class "sub" (the reasoning chains under a pair) moves with the row above it
        const groups = [];
        for (const r of Array.from(body.rows)) {
          if (r.classList.contains("sub") && groups.length) groups[groups.length - 1].push(r);
          else groups.push([r]);
        }
        const keyed = groups.map((g, i) => [cellValue(g[0].cells[col]), i, g]);
        keyed.sort((x, y) => compare(x[0], y[0], dir) || x[1] - y[1]);
        keyed.forEach(([, , g]) => body.append(...g));
        if (onSorted) onSorted();
      });
    });
  }

  // ---- query index: filter + pages ---------------------------------------------------------------------
  const index = $("table.index");
  let order = []; // qids of the rows that pass the filters, in table order
  if (index) {
    const size = Number(index.dataset.page) || 100;
    let page = 0;
    const ctl = (id) => document.getElementById(id);
    const apply = () => {
      const q = (ctl("f-search")?.value || "").trim().toLowerCase();
      const delta = ctl("f-delta")?.value || "all";
      const path = ctl("f-path")?.value || "all";
      const label = ctl("f-label")?.value || "all";
      const maxMetric = ctl("f-metric")?.value;
      const limit = maxMetric === "" || maxMetric === undefined ? null : Number(maxMetric);
      const rows = Array.from(index.tBodies[0].rows);
      const pass = rows.filter((r) => {
        const d = r.dataset;
        if (q && !r.textContent.toLowerCase().includes(q)) return false;
        const dv = d.delta === "" ? null : Number(d.delta);
        if (delta === "gain" && !(dv > 1e-9)) return false;
        if (delta === "loss" && !(dv < -1e-9)) return false;
        if (delta === "tie" && !(dv !== null && Math.abs(dv) <= 1e-9)) return false;
        if (path !== "all" && !(Number(d[path]) > 0)) return false;
        if (label === "rel" && !(Number(d.rel) > 0)) return false;
        if (label === "norel" && Number(d.rel) > 0) return false;
        if (limit !== null && Number.isFinite(limit) && !(d.metric !== "" && Number(d.metric) <= limit)) return false;
        return true;
      });
      const pages = Math.max(1, Math.ceil(pass.length / size));
      page = Math.min(page, pages - 1);
      const shown = new Set(pass.slice(page * size, (page + 1) * size));
      rows.forEach((r) => (r.hidden = !shown.has(r)));
      order = pass.map((r) => r.dataset.qid);
      const info = ctl("pager-info");
      if (info) {
        const a = pass.length ? page * size + 1 : 0;
        info.textContent = `queries ${a}–${Math.min(pass.length, (page + 1) * size)} of ${pass.length}` + (pass.length < rows.length ? ` (filtered from ${rows.length})` : "");
      }
      if (ctl("pager-prev")) ctl("pager-prev").disabled = page === 0;
      if (ctl("pager-next")) ctl("pager-next").disabled = page >= pages - 1;
    };
    makeSortable(index, () => { page = 0; apply(); });
    for (const id of ["f-search", "f-delta", "f-path", "f-label", "f-metric"]) {
      const c = ctl(id);
      if (c) c.addEventListener("input", () => { page = 0; apply(); });
    }
    ctl("pager-prev")?.addEventListener("click", () => { page -= 1; apply(); });
    ctl("pager-next")?.addEventListener("click", () => { page += 1; apply(); });
    apply();
  }

  // ---- one query's pairs ---------------------------------------------------------------------------------
  const detail = $("#detail");
  const labelCell = (l) => el("td", { cls: "label" + (l === null || l === undefined ? " unjudged" : ""), "data-s": l ?? "" }, l === null || l === undefined ? "unjudged" : String(l));
  function docCell(p) {
    const td = el("td", { cls: "doc", "data-s": p.d }, el("code", { text: p.d }));
    if (p.x) {
      const short = p.x.length > 220 ? p.x.slice(0, 220) + "…" : p.x;
      td.append(el("div", { cls: "snip", text: short }));
      if (p.x.length > 220 || p.xn) {
        const det = el("details", {}, el("summary", { text: "full text" + (p.xn ? ` (cut at ${p.x.length} of ${p.xn} chars)` : "") }));
        det.addEventListener("toggle", () => { if (det.open && det.children.length === 1) det.append(el("pre", { text: p.x })); }, { once: false });
        td.append(det);
      }
    }
    return td;
  }
  function reasoningBlock(summaryText, text, forced, error) {
    const preview = (text || "").replace(/\s+/g, " ").trim();
    const det = el("details", {}, el("summary", { text: summaryText }));
    det.addEventListener("toggle", () => {
      if (!det.open || det.querySelector("pre")) return;
      det.append(el("pre", { cls: "reasoning", text: text || "(no reasoning text)" }));
      if (forced !== null && forced !== undefined) det.append(el("div", { cls: "meta", text: "pass 2 forced the answer after:" }), el("pre", { text: forced }));
      if (error) det.append(el("div", { cls: "path-failed", text: "error: " + error }));
    });
    const snip = preview ? el("div", { cls: "snip preview", text: preview.length > 160 ? preview.slice(0, 160) + "…" : preview }) : null;
    return el("div", {}, snip, det);
  }
  function move(first, now) {
    if (first === null || first === undefined) return el("span", { cls: "same", text: "new" });
    if (first > now) return el("span", { cls: "up", text: "▲" + (first - now) });
    if (first < now) return el("span", { cls: "down", text: "▼" + (now - first) });
    return el("span", { cls: "same", text: "=" });
  }
  const th = (text, sort, title) => el("th", { "data-sort": sort, title }, text);

  function pairFilter(table, withCalls = true) {
    const choices = ["all pairs", "relevant", "not relevant", "unjudged", "pass2", "failed", "truncated"].concat(withCalls ? ["wrong call"] : []);
    const sel = el("select", { "aria-label": "show pairs" }, choices.map((v) => el("option", { value: v, text: v })));
    sel.addEventListener("input", () => {
      let shown = true;
      for (const r of table.tBodies[0].rows) {
        if (r.classList.contains("sub")) { r.hidden = !shown; continue; }
        const d = r.dataset;
        const v = sel.value;
        shown = v === "all pairs" || d.group === v || (d.path || "").split(" ").includes(v) || (v === "truncated" && d.trunc === "1") || (v === "wrong call" && d.correct === "0");
        r.hidden = !shown;
      }
    });
    return el("span", { cls: "controls" }, "show ", sel);
  }

  function renderSingle(q) {
    const table = el("table", { cls: "pairs sortable" },
      el("thead", {}, el("tr", {},
        th("new", "1", "rank after reranking (the evaluator's order: score, ties by doc id descending)"),
        th("first stage", "1"), th("move", "-1"), th("passage", "1"), th("P(true)", "-1"), th("label", "-1", "qrels grade"),
        th("path", "1"), th("tokens", "-1", "output tokens"), el("th", {}, "reasoning"))),
      el("tbody", {}, q.pairs.map((p) => {
        const group = p.l === null || p.l === undefined ? "unjudged" : p.l > 0 ? "relevant" : "not relevant";
        const correct = (p.s >= 0.5) === (p.l > 0);
        return el("tr", { cls: "pair" + (p.l > 0 ? " rel-pos" : ""), "data-docid": p.d, "data-group": group, "data-path": p.p, "data-trunc": p.tr ? "1" : "0", "data-correct": correct ? "1" : "0" },
          el("td", { cls: "num", text: p.r }),
          el("td", { cls: "num", "data-s": p.f ?? "", text: p.f ?? "—" }),
          el("td", { "data-s": p.f === null || p.f === undefined ? "" : p.f - p.r }, move(p.f, p.r)),
          docCell(p),
          el("td", { cls: "num", "data-s": p.s }, fmt(p.s), el("span", { cls: "bar", style: `width:${Math.round(p.s * 40)}px` })),
          labelCell(p.l),
          el("td", { cls: "path-" + p.p, text: p.p + (p.tr ? " ✂" : ""), title: p.tr ? "passage truncated to fit the context" : null }),
          el("td", { cls: "num", text: p.t ?? "—" }),
          el("td", {}, reasoningBlock(`reasoning (${p.st || "?"})`, p.re, p.fr, p.e)));
      })));
    makeSortable(table);
    const out = [pairFilter(table), table];
    if (q.missed && q.missed.length) {
      out.push(el("h3", { text: `Relevant passages the first stage did not retrieve (${q.missed.length})` }));
      out.push(el("table", { cls: "pairs" }, el("tbody", {}, q.missed.map((m) => el("tr", {}, labelCell(m.l), docCell(m))))));
    }
    return out;
  }

  function renderPair(q) {
    const cols = 9;
    const table = el("table", { cls: "pairs sortable" },
      el("thead", {}, el("tr", {},
        th("|Δ rank|", "-1", "how far apart the two runs rank this passage"), th("passage", "1"), th("label", "-1"),
        th("rank A", "1"), th("rank B", "1"), th("P(true) A", "-1"),
        th(q.pairs.some((p) => Object.prototype.hasOwnProperty.call(p, "reb")) ? "P(true) B" : "score B", "-1"), th("path A / B", "1"),
        th("tokens A / B", "-1"))),
      el("tbody", {}, q.pairs.flatMap((p) => {
        const group = p.l === null || p.l === undefined ? "unjudged" : p.l > 0 ? "relevant" : "not relevant";
        const row = el("tr", { cls: "pair" + (p.l > 0 ? " rel-pos" : ""), "data-docid": p.d, "data-group": group, "data-path": [p.pa, p.pb].filter(Boolean).join(" "), "data-trunc": p.tra || p.trb ? "1" : "0" },
          el("td", { cls: "num", "data-s": p.dr ?? "", text: p.dr ?? "—" }),
          docCell(p), labelCell(p.l),
          el("td", { cls: "num", "data-s": p.ra ?? "", text: p.ra ?? "—" }),
          el("td", { cls: "num", "data-s": p.rb ?? "", text: p.rb ?? "—" }),
          el("td", { cls: "num", "data-s": p.sa ?? "", text: fmt(p.sa) }),
          el("td", { cls: "num", "data-s": p.sb ?? "", text: fmt(p.sb) }),
          el("td", { text: `${p.pa || "—"} / ${p.pb || "—"}` }),
          el("td", { cls: "num", "data-s": p.ta ?? "", text: `${p.ta ?? "—"} / ${p.tb ?? "—"}` }));
        const bHas = Object.prototype.hasOwnProperty.call(p, "reb");
        const both = el("details", { cls: "chains" }, el("summary", { text: bHas ? "both reasoning chains, side by side" : "A's reasoning (B is a ranking without reasoning)" }));
        both.addEventListener("toggle", () => {
          if (!both.open || both.querySelector(".two")) return;
          const side = (name, text, forced, err, has) => el("div", {}, el("h4", { text: name }),
            el("pre", { cls: "reasoning", text: has ? (text || "(empty)") : "(no reasoning: not a rank1 run)" }),
            forced !== null && forced !== undefined ? el("pre", { text: "pass 2 forced the answer after: " + forced }) : null,
            err ? el("div", { cls: "path-failed", text: "error: " + err }) : null);
          both.append(el("div", { cls: "two" },
            side(`A (${p.pa || "not ranked"}, ${p.ta ?? "—"} tokens, P(true) ${fmt(p.sa)})`, p.rea, p.fra, p.ea, p.sa !== null),
            side(`B (${p.pb || "not ranked"}, ${p.tb ?? "—"} tokens, score ${fmt(p.sb)})`, p.reb, p.frb, p.eb, bHas && p.sb !== null)));
        });
        return [row, el("tr", { cls: "sub" }, el("td", { colspan: cols }, both))];
      })));
    makeSortable(table);
    return [pairFilter(table, false), table];
  }

  function highlight(qid) {
    $$("table.index tr.current").forEach((r) => r.classList.remove("current"));
    const row = index && Array.from(index.tBodies[0].rows).find((r) => r.dataset.qid === qid);
    if (row) row.classList.add("current");
  }

  async function show(qid) {
    if (!detail) return;
    let q;
    try {
      q = await load(qid);
    } catch (err) {
      detail.replaceChildren(el("p", { cls: "warn", text: `Query ${qid}: ${err.message}` + (typeof DecompressionStream === "undefined" ? " (this browser has no DecompressionStream: use a current Chromium, Firefox or Safari)" : "") }));
      return;
    }
    const pos = order.indexOf(qid);
    const go = (i) => () => { location.hash = "#q=" + encodeURIComponent(order[i]); };
    const nav = el("div", { cls: "pager" },
      el("button", { id: "q-prev", disabled: pos <= 0, onclick: go(pos - 1), title: "previous query in the index's order (key p)" }, "◀ previous"),
      el("button", { id: "q-next", disabled: pos < 0 || pos >= order.length - 1, onclick: go(pos + 1), title: "next query in the index's order (key n)" }, "next ▶"),
      el("span", { cls: "meta", text: pos >= 0 ? `query ${pos + 1} of ${order.length} in the index's order` : "" }));
    const head = [el("h2", { id: "detail-title" }, "Query ", el("code", { text: qid }))];
    if (q.query) head.push(el("p", { cls: "qtext", text: q.query }));
    if (q.instruction) head.push(el("p", { cls: "instr", text: "instruction: " + q.instruction }));
    head.push(el("p", { cls: "meta", text: q.summary }));
    const body = MODE === "pair" ? renderPair(q) : renderSingle(q);
    detail.replaceChildren(nav, ...head, ...body);
    detail.dataset.qid = qid;
    highlight(qid);
    detail.scrollIntoView({ block: "start" });
  }

  function route() {
    const m = location.hash.match(/^#q=(.+)$/);
    if (m) show(decodeURIComponent(m[1]));
  }
  window.addEventListener("hashchange", route);
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input,select,textarea") || !detail || !detail.dataset.qid) return;
    const pos = order.indexOf(detail.dataset.qid);
    if (e.key === "n" && pos >= 0 && pos < order.length - 1) location.hash = "#q=" + encodeURIComponent(order[pos + 1]);
    if (e.key === "p" && pos > 0) location.hash = "#q=" + encodeURIComponent(order[pos - 1]);
  });
  route();
  document.body.dataset.ready = "1";
})();
