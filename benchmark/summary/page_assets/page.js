/* medfusion-bench leaderboard page: vanilla JS, no dependency, reads the embedded JSON payload. */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("leaderboard-data").textContent);
  var COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"];
  var state = {ds: 0, sec: 0, scen: "test", colour: "bayes", method: null, rate: 0, hidden: {},
               sortKey: null, sortDir: 1, open: null};
  var tip = document.getElementById("tip");

  function el(tag, attrs) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "on") for (var ev in attrs.on) node.addEventListener(ev, attrs.on[ev]);
      else node.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }
  function svg(tag, attrs) {
    var node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    return node;
  }
  function fix(x, d) { return x === null || x === undefined ? "\u2014" : x.toFixed(d === undefined ? 3 : d); }
  function sgn(x, d) { return x === null || x === undefined ? "\u2014" : (x >= 0 ? "+" : "") + x.toFixed(d === undefined ? 3 : d); }
  function ptext(p) { return p === null || p === undefined ? "n/a" : (p < 0.001 ? "p<0.001" : "p=" + p.toFixed(3)); }
  function ci(c) { return c && c.lo !== null ? "[" + fix(c.lo) + ", " + fix(c.hi) + "]" : ""; }
  function count(c) { return "n=" + c.n + (c.n < c.of ? " of " + c.of + (c.why ? "; " + c.why : "") : ""); }
  function full(c) {
    if (!c || c.n === 0) return "\u2014 (" + (c ? count(c) : "no cell") + ")";
    return fix(c.m) + (c.sd !== null ? " \u00b1 " + fix(c.sd) : "") + " " + ci(c) + " (" + count(c) + "; interval: " +
      c.noise + ")" + (c.leak ? " \u26a0 " + c.leak + " seed(s) above Bayes + 3 SE" : "");
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function ds() { return DATA.datasets[state.ds]; }
  function sec() { return ds().sections[state.sec]; }
  function rowById(s, id) { for (var i = 0; i < s.rows.length; i++) if (s.rows[i].id === id) return s.rows[i]; return null; }
  function bayesRow(s) { for (var i = 0; i < s.rows.length; i++) if (s.rows[i].ref) return s.rows[i]; return null; }
  function lab(r) { return r.label + (r.setting !== "default" && !r.ref ? " (" + r.setting + ")" : ""); }
  function methodRows(s) { return s.rows.filter(function (r) { return !r.ref; }); }
  function colourOf(s, id) { var i = s.rows.map(function (r) { return r.id; }).indexOf(id); return COLOURS[i % COLOURS.length]; }
  function status(s, j, id) {
    var v = s.verdicts[j];
    if (!v) return "";
    if (v.best === id) return "best";
    if (v.ties.indexOf(id) >= 0) return "tie";
    if (v.worse.indexOf(id) >= 0) return "worse";
    return v.untested.indexOf(id) >= 0 ? "untested" : "";
  }
  function showTip(ev, text) {
    tip.textContent = text; tip.style.display = "block";
    tip.style.left = Math.min(ev.clientX + 12, window.innerWidth - tip.offsetWidth - 8) + "px";
    tip.style.top = (ev.clientY + 14) + "px";
  }
  function hideTip() { tip.style.display = "none"; }
  function option(value, text, selected) {
    var o = el("option", {value: value, text: text});
    if (selected) o.selected = true;
    return o;
  }

  /* ------------------------------------------------------------------ header and headline */
  function renderHeader() {
    var pick = clear(document.getElementById("pick-section"));
    ds().sections.forEach(function (s, i) { pick.appendChild(option(i, s.pattern + " / " + s.protocol, i === state.sec)); });
    var p = ds().provenance.map(function (l) { return l.replace(/\*\*/g, "").replace(/`/g, ""); });
    document.getElementById("meta").textContent = p.slice(0, 2).join("  ");
    var prov = clear(document.getElementById("provenance"));
    p.forEach(function (l) { prov.appendChild(el("li", {text: l})); });
  }
  function renderRanking() {
    var s = sec(), body = clear(document.querySelector("#ranking tbody"));
    var best = s.ranking.length && s.ranking[0].avg.m !== null ? s.ranking[0].avg.m : 1, low = best;
    s.ranking.forEach(function (r) { if (r.avg.m !== null) low = Math.min(low, r.avg.m); });
    if (s.bayes && s.bayes.m !== null) best = Math.max(best, s.bayes.m);
    var base = low - 0.05 * Math.max(best - low, 0.01);
    function line(i, row, avg, gap) {
      var w = avg.m === null ? 0 : Math.max(2, 110 * (avg.m - base) / Math.max(best - base, 1e-6));
      var tr = el("tr", {"class": row.ref ? "ref" : "data", "data-row": row.id},
        el("td", {text: i}), el("td", {"class": "l", text: lab(row)}),
        el("td", {text: fix(avg.m) + (avg.n < avg.of ? " (n=" + avg.n + " of " + avg.of + ")" : "")}),
        el("td", {"class": "l", text: ci(avg)}), el("td", {text: row.ref ? "reference" : sgn(gap)}),
        el("td", {"class": "l"}, el("span", {"class": "bar", style: "width:" + w.toFixed(1) + "px"})));
      if (!row.ref) tr.addEventListener("click", function () { selectMethod(row.id); });
      body.appendChild(tr);
    }
    s.ranking.forEach(function (r, i) { line(String(i + 1), rowById(s, r.row), r.avg, r.gap); });
    var b = bayesRow(s);
    if (b && s.bayes) line("\u2014", b, s.bayes, 0);
  }
  function chip(s, id, kind, extra) {
    var r = rowById(s, id);
    return el("span", {"class": "chip " + kind, title: extra || "", on: {click: function () { selectMethod(id); }}},
      lab(r) + (extra ? " " + extra : ""));
  }
  function renderVerdicts() {
    var s = sec(), list = clear(document.getElementById("verdicts"));
    s.verdicts.forEach(function (v, j) {
      var li = el("li", {"data-rate": s.rate_labels[j]}, el("b", {"class": "rate", text: "rate " + s.rate_labels[j]}));
      if (!v.best) { li.appendChild(document.createTextNode("no method has a value")); list.appendChild(li); return; }
      var bc = s.cells.test[v.best].rates[j];
      li.appendChild(chip(s, v.best, "best", fix(bc.m) + " " + ci(bc)));
      li.appendChild(document.createTextNode(v.ties.length ? " indistinguishable: " : " all others significantly worse"));
      v.ties.forEach(function (id) { var p = s.paired[id][j]; li.appendChild(chip(s, id, "tie", "\u0394 " + sgn(p.d))); });
      if (v.ties.length && v.worse.length) li.appendChild(document.createTextNode(" worse: "));
      if (v.ties.length) v.worse.forEach(function (id) { li.appendChild(chip(s, id, "worse")); });
      v.untested.forEach(function (id) { li.appendChild(chip(s, id, "untested", "not compared")); });
      list.appendChild(li);
    });
  }

  /* ------------------------------------------------------------------ heatmap */
  function refMeans(s, scen) {
    if (state.colour === "bayes") {
      var b = bayesRow(s);
      return b ? s.cells[scen][b.id].rates.map(function (c) { return c.m; }) : null;
    }
    if (state.colour === "best") {
      return s.rates.map(function (_, j) {
        var m = null;
        methodRows(s).forEach(function (r) { var x = s.cells[scen][r.id].rates[j].m; if (x !== null && (m === null || x > m)) m = x; });
        return m;
      });
    }
    var rr = rowById(s, state.colour);
    return rr ? s.cells[scen][rr.id].rates.map(function (c) { return c.m; }) : null;
  }
  function heatColour(d, scale) {
    if (d === null) return "#eeeeee";
    var t = Math.max(-1, Math.min(1, d / scale));
    var hue = state.colour === "bayes" || state.colour === "best" ? 120 * (1 + t) : 60 + 60 * t;
    return "hsl(" + hue.toFixed(0) + ",62%," + (82 - 10 * Math.abs(t)).toFixed(0) + "%)";
  }
  function renderHeatmap() {
    var s = sec(), scen = state.scen;
    var cs = clear(document.getElementById("pick-colour"));
    if (bayesRow(s)) cs.appendChild(option("bayes", "gap to Bayes", state.colour === "bayes"));
    cs.appendChild(option("best", "\u0394 vs best at the rate", state.colour === "best"));
    methodRows(s).forEach(function (r) { cs.appendChild(option(r.id, "\u0394 vs " + lab(r), state.colour === r.id)); });
    if (!bayesRow(s) && state.colour === "bayes") state.colour = "best";
    cs.value = state.colour;
    var ref = refMeans(s, scen), table = clear(document.getElementById("heatmap"));
    var head = el("tr", {}, el("th", {"class": "l", text: "method"}));
    s.rate_labels.forEach(function (r) { head.appendChild(el("th", {text: "rate " + r})); });
    head.appendChild(el("th", {text: "AVG"}));
    table.appendChild(el("thead", {}, head));
    var deltas = [], body = el("tbody");
    s.rows.forEach(function (r) {
      s.cells[scen][r.id].rates.forEach(function (c, j) {
        if (ref && c.m !== null && ref[j] !== null && !r.ref) deltas.push(Math.abs(c.m - ref[j]));
      });
    });
    var scale = Math.max.apply(null, deltas.concat([0.005]));
    s.rows.forEach(function (r) {
      var tr = el("tr", {"class": r.ref ? "ref" : ""}, el("td", {"class": "l", text: lab(r)}));
      s.cells[scen][r.id].rates.forEach(function (c, j) {
        var d = ref && c.m !== null && ref[j] !== null ? c.m - ref[j] : null;
        var st = scen === "test" && !r.ref ? status(s, j, r.id) : "";
        var td = el("td", {"class": "hc " + st, "data-row": r.id, "data-rate": s.rate_labels[j],
          style: "background:" + (r.ref ? "#f6f8fa" : heatColour(d, scale)), text: fix(c.m)});
        var text = lab(r) + " @ " + s.rate_labels[j] + ": " + full(c) + (d !== null && !r.ref ? "; \u0394 " + sgn(d) : "") +
          (st ? "; " + (st === "tie" ? "indistinguishable from best" : st) : "");
        td.addEventListener("mousemove", function (ev) { showTip(ev, text); });
        td.addEventListener("mouseleave", hideTip);
        if (!r.ref) td.addEventListener("click", function () { state.rate = j; selectMethod(r.id); });
        tr.appendChild(td);
      });
      var avg = s.cells[scen][r.id].avg;
      tr.appendChild(el("td", {title: full(avg), text: fix(avg.m)}));
      body.appendChild(tr);
    });
    table.appendChild(body);
  }

  /* ------------------------------------------------------------------ SVG line plot */
  function linePlot(opts) {
    var W = opts.width || 560, H = opts.height || 300, L = 48, R = 12, T = 10, B = 36;
    var root = svg("svg", {"class": "plot", viewBox: "0 0 " + W + " " + H, role: "img"});
    var xs = [], ys = [];
    opts.series.forEach(function (se) {
      if (se.hidden) return;
      se.points.forEach(function (p) { if (p[1] !== null) { xs.push(p[0]); ys.push(p[1]); if (p[2] !== null && p[2] !== undefined) { ys.push(p[2]); ys.push(p[3]); } } });
    });
    if (!xs.length) { var t = svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}); t.textContent = "no data"; root.appendChild(t); return root; }
    var x0 = opts.xmin !== undefined ? opts.xmin : Math.min.apply(null, xs), x1 = opts.xmax !== undefined ? opts.xmax : Math.max.apply(null, xs);
    var y0 = opts.ymin !== undefined ? opts.ymin : Math.min.apply(null, ys), y1 = opts.ymax !== undefined ? opts.ymax : Math.max.apply(null, ys);
    if (opts.cap !== undefined) { y1 = Math.min(y1, opts.cap); y0 = Math.min(y0, y1 - 0.01); }
    if (x1 === x0) { x1 += 0.5; x0 -= 0.5; }
    if (y1 === y0) { y1 += 0.01; y0 -= 0.01; }
    var pad = opts.ymin === undefined ? (y1 - y0) * 0.06 : 0; y0 -= pad; y1 += pad;
    function X(v) { return L + (W - L - R) * (v - x0) / (x1 - x0); }
    function Y(v) { v = Math.max(y0, Math.min(y1, v)); return T + (H - T - B) * (1 - (v - y0) / (y1 - y0)); }
    for (var k = 0; k <= 4; k++) {
      var yv = y0 + (y1 - y0) * k / 4;
      root.appendChild(svg("line", {x1: L, x2: W - R, y1: Y(yv), y2: Y(yv), stroke: "#e4e8ec"}));
      var lab = svg("text", {x: L - 4, y: Y(yv) + 4, "text-anchor": "end"}); lab.textContent = yv.toFixed(3); root.appendChild(lab);
    }
    (opts.xticks || []).forEach(function (tk) {
      var lab = svg("text", {x: X(tk[0]), y: H - B + 14, "text-anchor": "middle"}); lab.textContent = tk[1]; root.appendChild(lab);
    });
    var xl = svg("text", {x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle"}); xl.textContent = opts.xlabel || ""; root.appendChild(xl);
    var yl = svg("text", {x: 10, y: T + (H - T - B) / 2, transform: "rotate(-90 10 " + (T + (H - T - B) / 2) + ")", "text-anchor": "middle"});
    yl.textContent = opts.ylabel || ""; root.appendChild(yl);
    opts.series.forEach(function (se) {
      if (se.hidden) return;
      var pts = se.points.filter(function (p) { return p[1] !== null; });
      if (se.band) {
        var band = pts.filter(function (p) { return p[2] !== null && p[2] !== undefined; });
        if (band.length > 1) {
          var d = band.map(function (p, i) { return (i ? "L" : "M") + X(p[0]).toFixed(1) + "," + Y(p[3]).toFixed(1); }).join("") +
            band.slice().reverse().map(function (p) { return "L" + X(p[0]).toFixed(1) + "," + Y(p[2]).toFixed(1); }).join("") + "Z";
          root.appendChild(svg("path", {d: d, fill: se.color, opacity: 0.08}));
        }
      }
      if (pts.length > 1) {
        root.appendChild(svg("path", {d: pts.map(function (p, i) { return (i ? "L" : "M") + X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1); }).join(""),
          fill: "none", stroke: se.color, "stroke-width": se.width || 1.8, "stroke-dasharray": se.dash || "none"}));
      }
      pts.forEach(function (p) {
        if (!se.band && p[2] !== null && p[2] !== undefined) {
          root.appendChild(svg("line", {x1: X(p[0]), x2: X(p[0]), y1: Y(p[2]), y2: Y(p[3]), stroke: se.color, "stroke-width": 1.2}));
        }
        if (se.markers === false) return;
        var dot = svg("circle", {cx: X(p[0]), cy: Y(p[1]), r: 3.5, fill: se.color, "class": "pt"});
        var text = se.label + ": " + (p[4] || (fix(p[1]) + (p[2] !== null && p[2] !== undefined ? " [" + fix(p[2]) + ", " + fix(p[3]) + "]" : "")));
        dot.addEventListener("mousemove", function (ev) { showTip(ev, text); });
        dot.addEventListener("mouseleave", hideTip);
        root.appendChild(dot);
      });
    });
    return root;
  }
  function legend(node, series, onToggle) {
    clear(node);
    series.forEach(function (se) {
      var item = el("span", {"class": se.hidden ? "off" : "", "data-series": se.key || se.label},
        el("i", {style: "background:" + se.color + (se.dash ? ";height:0;border-top:2px dashed " + se.color : "")}), se.label);
      if (onToggle) item.addEventListener("click", function () { onToggle(se); });
      node.appendChild(item);
    });
  }

  /* ------------------------------------------------------------------ robustness plot */
  function renderPlot() {
    var s = sec(), scen = state.scen, series = [];
    s.rows.forEach(function (r) {
      var pts = s.cells[scen][r.id].rates.map(function (c, j) { return [s.rates[j], c.m, c.lo, c.hi, full(c)]; });
      series.push({key: r.id, label: lab(r), color: r.ref ? "#000000" : colourOf(s, r.id), points: pts, dash: r.ref ? "6 4" : null,
                   band: r.ref, hidden: !!state.hidden[r.id]});
    });
    var ev = s.evidence ? s.evidence[scen] : null;  /* the independent-evidence ceiling of this scenario */
    if (ev) {
      series.push({key: "evidence", label: "independent-evidence ceiling", color: "#555555", dash: "2 3", markers: false,
                   points: ev.map(function (p) { return [p.rate, p.m, null, null]; }), hidden: !!state.hidden.evidence});
    }
    var box = clear(document.getElementById("plot"));
    box.appendChild(linePlot({series: series, xticks: s.rates.map(function (r, j) { return [r, s.rate_labels[j]]; }),
      xlabel: "missing rate (" + s.pattern + ", " + s.protocol + ")", ylabel: "AUC (" + scenLabel(scen) + ")", height: 290, cap: 1}));
    legend(document.getElementById("plot-legend"), series, function (se) { state.hidden[se.key] = !state.hidden[se.key]; renderPlot(); });
  }
  function scenLabel(key) { var l = ds().scenarios.filter(function (x) { return x[0] === key; }); return l.length ? l[0][1] : key; }

  /* ------------------------------------------------------------------ the long table */
  var COLUMNS = [["method", "l"], ["training", "l"], ["pattern", "l"], ["protocol", "l"], ["scenario", "l"], ["rate", ""],
                 ["AUC", ""], ["95% interval", "l"], ["gap to Bayes", ""], ["\u0394 vs best", ""], ["verdict", "l"], ["n", ""]];
  function tableRows() {
    var out = [];
    ds().sections.forEach(function (s) {
      var b = bayesRow(s);
      ds().scenarios.forEach(function (sc) {
        s.rows.forEach(function (r) {
          s.cells[sc[0]][r.id].rates.forEach(function (c, j) {
            var bm = b ? s.cells[sc[0]][b.id].rates[j].m : null;
            var p = sc[0] === "test" && s.paired[r.id] ? s.paired[r.id][j] : null;
            var st = sc[0] === "test" && !r.ref ? status(s, j, r.id) : "";
            out.push({s: s, r: r, c: c, p: p, key: s.id + "|" + sc[0] + "|" + r.id + "|" + j,
              v: [r.label, r.ref ? "\u2014" : r.setting, s.pattern, s.protocol, sc[1], s.rates[j], c.m, ci(c),
                  r.ref || c.m === null || bm === null ? null : c.m - bm, p ? p.d : (st === "best" ? 0 : null),
                  st === "best" ? "best" : (p ? (p.v === "sig" ? "sig. worse" : "n.s. (tied)") : (r.ref ? "reference" : "")), c.n],
              scen: sc[0]});
          });
        });
      });
    });
    return out;
  }
  function renderFilters() {
    var f = document.getElementById("filters");
    if (f.dataset.ready === String(state.ds)) return;
    f.dataset.ready = String(state.ds);
    var rows = tableRows();
    [["f-pattern", 2], ["f-protocol", 3], ["f-scenario", 4], ["f-rate", 5], ["f-training", 1]].forEach(function (spec) {
      var sel = clear(document.getElementById(spec[0])), seen = {};
      sel.appendChild(option("", "all"));
      rows.forEach(function (x) { var v = String(x.v[spec[1]]); if (!seen[v]) { seen[v] = 1; sel.appendChild(option(v, v)); } });
    });
    document.getElementById("f-scenario").value = scenLabel("test");
  }
  function renderTable() {
    renderFilters();
    var table = document.getElementById("cells"), head = clear(table.querySelector("thead")), body = clear(table.querySelector("tbody"));
    var tr = el("tr");
    COLUMNS.forEach(function (c, i) {
      var th = el("th", {"class": c[1], "data-col": String(i), text: c[0]});
      if (state.sortKey === i) th.setAttribute("aria-sort", state.sortDir > 0 ? "ascending" : "descending");
      th.addEventListener("click", function () {
        state.sortDir = state.sortKey === i ? -state.sortDir : (c[1] === "l" ? 1 : -1); state.sortKey = i; renderTable();
      });
      tr.appendChild(th);
    });
    head.appendChild(tr);
    var text = document.getElementById("f-text").value.toLowerCase();
    var want = [["f-pattern", 2], ["f-protocol", 3], ["f-scenario", 4], ["f-rate", 5], ["f-training", 1]].map(function (x) {
      return [document.getElementById(x[0]).value, x[1]]; });
    var rows = tableRows().filter(function (x) {
      if (text && x.v[0].toLowerCase().indexOf(text) < 0) return false;
      return want.every(function (w) { return !w[0] || String(x.v[w[1]]) === w[0]; });
    });
    if (state.sortKey !== null) {
      var k = state.sortKey, d = state.sortDir;
      rows.sort(function (a, b) {
        var x = a.v[k], y = b.v[k];
        if (x === null || x === "") return 1;
        if (y === null || y === "") return -1;
        return (typeof x === "number" ? x - y : String(x).localeCompare(String(y))) * d;
      });
    }
    rows.forEach(function (x) {
      var cls = "data" + (x.r.ref ? " ref" : "");
      var row = el("tr", {"class": cls, "data-key": x.key});
      x.v.forEach(function (v, i) {
        var shown = typeof v === "number" ? (i === 5 ? x.s.rate_labels[x.s.rates.indexOf(v)] : (i === 11 ? String(v) + (x.c.n < x.c.of ? " of " + x.c.of : "")
          : (i >= 8 ? sgn(v) : fix(v)))) : (v === null ? "\u2014" : String(v));
        var td = el("td", {"class": COLUMNS[i][1] + (i === 10 ? (v === "sig. worse" ? " sig" : " ns") : "") +
          (i === 11 && x.c.n < x.c.of ? " missing" : ""), text: shown});
        if (i === 6 && v !== null) td.setAttribute("data-value", String(v));
        row.appendChild(td);
      });
      row.addEventListener("click", function () { state.open = state.open === x.key ? null : x.key; renderTable(); });
      body.appendChild(row);
      if (state.open === x.key) {
        var p = x.p, lines = ["AUC: " + full(x.c)];
        if (p) lines.push("vs best (" + lab(rowById(x.s, p.ref)) + "): \u0394 " + sgn(p.d) + " [" + sgn(p.lo) + ", " + sgn(p.hi) +
          "], paired t " + ptext(p.pt) + ", DeLong " + (p.pd === null ? (p.note || "n/a") : ptext(p.pd)) + ", n=" + p.n + " seeds: " +
          (p.v === "sig" ? "significantly worse" : "not significant (indistinguishable)"));
        var link = el("a", {href: "#method", text: "per-method view \u2192", on: {click: function () {
          state.sec = ds().sections.indexOf(x.s); state.rate = x.s.rates.indexOf(x.v[5]); selectMethod(x.r.id); }}});
        body.appendChild(el("tr", {"class": "detail"}, el("td", {colspan: String(COLUMNS.length)}, lines.join("  \u00b7  "), " ", x.r.ref ? null : link)));
      }
    });
    document.getElementById("cells-count").textContent = rows.length + " rows";
  }

  /* ------------------------------------------------------------------ per-method view */
  function selectMethod(id) {
    state.method = id;
    renderMethod();
    document.getElementById("method").scrollIntoView({block: "start"});
  }
  function runLink(entry) {
    if (!entry.run) return el("span", {"class": "missing", text: entry.status});
    var label = entry.run.slice(0, 8);
    if (DATA.ui) return el("a", {href: DATA.ui + "/#/experiments/" + entry.exp + "/runs/" + entry.run, target: "_blank", title: entry.run, text: label});
    return el("code", {title: entry.run, text: label});
  }
  function renderMethod() {
    var s = sec(), rows = methodRows(s);
    if (!state.method || !rowById(s, state.method)) state.method = rows.length ? rows[0].id : null;
    var pm = clear(document.getElementById("pick-method")), pr = clear(document.getElementById("pick-rate"));
    rows.forEach(function (r) { pm.appendChild(option(r.id, lab(r), r.id === state.method)); });
    s.rate_labels.forEach(function (l, j) { pr.appendChild(option(j, "rate " + l, j === state.rate)); });
    if (state.rate >= s.rates.length) state.rate = 0;
    var box = clear(document.getElementById("method-body"));
    if (!state.method) { box.appendChild(el("p", {text: "no method rows"})); return; }
    var r = rowById(s, state.method), rank = s.ranking.filter(function (x) { return x.row === r.id; })[0];
    var places = s.verdicts.map(function (v, j) { var st = status(s, j, r.id); return st === "best" || st === "tie" ? s.rate_labels[j] + (st === "best" ? " (best)" : "") : null; })
      .filter(function (x) { return x; });
    box.appendChild(el("div", {"class": "kv"}, el("span", {text: "AVG AUC " + full(rank.avg)}), el("span", {text: "gap to Bayes " + sgn(rank.gap)}),
      el("span", {text: "best or indistinguishable at rate: " + (places.join(", ") || "none")}), el("span", {text: "config " + r.cfg})));
    var t = el("table", {id: "seeds"}), hr = el("tr", {}, el("th", {"class": "l", text: "rate"}), el("th", {text: "AUC (mean, 95% interval)"}));
    s.seeds.forEach(function (sd) { hr.appendChild(el("th", {text: "seed " + sd + ": AUC \u00b7 stop epoch \u00b7 run"})); });
    hr.appendChild(el("th", {text: "ECE"}));
    t.appendChild(el("thead", {}, hr));
    var tb = el("tbody");
    s.runs[r.id].forEach(function (seeds, j) {
      var c = s.cells.test[r.id].rates[j], tr = el("tr", {}, el("td", {"class": "l", text: s.rate_labels[j]}), el("td", {text: fix(c.m) + " " + ci(c)}));
      seeds.forEach(function (e) {
        tr.appendChild(el("td", {}, e.auc !== undefined && e.auc !== null ? fix(e.auc) : el("span", {"class": "missing", text: e.status}),
          " \u00b7 ", e.epoch !== undefined && e.epoch !== null ? String(e.epoch) : "\u2014", " \u00b7 ", runLink(e)));
      });
      var cal = s.calibration[r.id][j];
      tr.appendChild(el("td", {text: cal ? fix(cal.ece) : "\u2014"}));
      tb.appendChild(tr);
    });
    t.appendChild(tb);
    box.appendChild(el("div", {"class": "scroll"}, t));
    var grid = el("div", {"class": "grid3"}), seeds = s.runs[r.id][state.rate] || [];
    ["val_auc", "train_loss"].forEach(function (key) {
      var series = seeds.filter(function (e) { return e.run && s.curves[e.run]; }).map(function (e, i) {
        return {label: "seed " + e.seed + (e.epoch !== null && e.epoch !== undefined ? " (stopped at epoch " + e.epoch + ")" : ""),
                color: COLOURS[i % COLOURS.length], points: s.curves[e.run][key].map(function (p) { return [p[0], p[1], null, null]; })};
      });
      var cell = el("div", {}, el("b", {text: key + " by epoch (rate " + s.rate_labels[state.rate] + ")"}));
      cell.appendChild(linePlot({series: series, xlabel: "epoch", ylabel: key, height: 220, width: 420,
        xticks: (series[0] ? series[0].points : []).map(function (p) { return [p[0], String(p[0])]; })}));
      var lg = el("div", {"class": "legend"}); legend(lg, series, null); cell.appendChild(lg);
      grid.appendChild(cell);
    });
    var cal = s.calibration[r.id][state.rate], cc = el("div", {}, el("b", {text: "calibration (rate " + s.rate_labels[state.rate] + ", seeds pooled)"}));
    if (cal) {
      cc.appendChild(linePlot({width: 420, height: 220, xmin: 0, xmax: 1, ymin: 0, ymax: 1, xlabel: "mean predicted P(class 1)", ylabel: "observed frequency",
        xticks: [[0, "0"], [0.5, "0.5"], [1, "1"]], series: [
          {label: "perfect", color: "#999999", dash: "4 3", markers: false, points: [[0, 0, null, null], [1, 1, null, null]]},
          {label: "reliability", color: colourOf(s, r.id), points: cal.bins.map(function (b) { return [b[0], b[1], null, null, "predicted " + fix(b[0]) + ", observed " + fix(b[1]) + " (" + b[2] + " samples)"]; })}]}));
      cc.appendChild(el("p", {"class": "note", text: "ECE " + fix(cal.ece) + " over " + cal.n + " test predictions, 10 equal-width bins."}));
    } else cc.appendChild(el("p", {"class": "note", text: "no binary test predictions logged"}));
    grid.appendChild(cc);
    box.appendChild(grid);
  }

  /* ------------------------------------------------------------------ wiring */
  function renderAll() { renderHeader(); renderRanking(); renderVerdicts(); renderHeatmap(); renderPlot(); renderTable(); renderMethod(); }
  var pickDs = document.getElementById("pick-dataset");
  DATA.datasets.forEach(function (d, i) { pickDs.appendChild(option(i, d.name, i === 0)); });
  pickDs.addEventListener("change", function () { state.ds = +pickDs.value; state.sec = 0; state.method = null; renderAll(); });
  document.getElementById("pick-section").addEventListener("change", function (ev) { state.sec = +ev.target.value; state.method = null; renderAll(); });
  document.getElementById("pick-scenario").addEventListener("change", function (ev) { state.scen = ev.target.value; renderHeatmap(); renderPlot(); });
  document.getElementById("pick-colour").addEventListener("change", function (ev) { state.colour = ev.target.value; renderHeatmap(); });
  document.getElementById("pick-method").addEventListener("change", function (ev) { state.method = ev.target.value; renderMethod(); });
  document.getElementById("pick-rate").addEventListener("change", function (ev) { state.rate = +ev.target.value; renderMethod(); });
  ["f-pattern", "f-protocol", "f-scenario", "f-rate", "f-training"].forEach(function (id) { document.getElementById(id).addEventListener("change", renderTable); });
  document.getElementById("f-text").addEventListener("input", renderTable);
  var ps = document.getElementById("pick-scenario");
  DATA.datasets[0].scenarios.forEach(function (sc) { ps.appendChild(option(sc[0], sc[1], sc[0] === "test")); });
  if (DATA.datasets.length && DATA.datasets[0].sections.length) renderAll();
  document.body.setAttribute("data-ready", "1");
})();
