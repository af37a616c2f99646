// llm_async live dashboard: polls the JSON endpoint and redraws. No dependencies.
(function () {
  "use strict";
  const SVG = "http://www.w3.org/2000/svg";
  const body = document.body;
  const dataUrl = body.dataset.dataUrl;
  const params = new URLSearchParams(window.location.search);
  const interval = Math.max(100, Number(params.get("interval")) || Number(body.dataset.interval) || 2000);

  const $ = (id) => document.getElementById(id);
  const dash = "\u2013";
  const fmtInt = (n) => (n == null ? dash : Math.round(n).toLocaleString("en-US"));
  const fmtMs = (v) => (v == null ? dash : (v < 10 ? v.toFixed(2) : v < 1000 ? v.toFixed(1) : v.toFixed(0)) + " ms");
  const fmtPct = (r) => (r == null ? dash : (r * 100).toFixed(1) + "%");
  const fmtCost = (v) => (v == null ? dash : "$" + (v !== 0 && Math.abs(v) < 0.01 ? v.toFixed(6) : v.toFixed(4)));
  const fmtRate = (v) => (v == null ? dash : v.toFixed(2));

  function setText(id, text) {
    const el = $(id);
    if (el && el.textContent !== text) el.textContent = text;
  }

  function el(tag, attrs, text) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text != null) node.textContent = text;
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  // A round tick step so that four steps cover v: 1, 2, 2.5 or 5 times a power of ten.
  function niceStep(v) {
    const rough = v > 0 ? v / 4 : 0.25;
    const p = Math.pow(10, Math.floor(Math.log10(rough)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= rough) return m * p;
    return 10 * p;
  }

  const tick = (v) => String(Number(v.toFixed(3)));

  function frame(svg, step) {
    clear(svg);
    const W = 600, H = 200, left = 44, bottom = 18, top = 6;
    for (let i = 0; i <= 4; i++) {
      const y = top + (H - top - bottom) * (1 - i / 4);
      svg.appendChild(el("svg:line", { x1: left, x2: W, y1: y, y2: y, class: "grid" }));
      svg.appendChild(el("svg:text", { x: left - 4, y: y + 3, "text-anchor": "end", class: "axis" }, tick(step * i)));
    }
    return { W, H, left, bottom, top };
  }

  function timeLabels(svg, f, series) {
    if (!series.length) return;
    const fmt = (t) => new Date(t * 1000).toLocaleTimeString("en-GB", { hour12: false });
    svg.appendChild(el("svg:text", { x: f.left, y: f.H - 4, class: "axis" }, fmt(series[0].t)));
    svg.appendChild(el("svg:text", { x: f.W, y: f.H - 4, "text-anchor": "end", class: "axis" }, fmt(series[series.length - 1].t)));
  }

  function latencyChart(series) {
    const svg = $("latency-chart");
    let max = 0;
    for (const p of series) max = Math.max(max, p.avg_duration_ms || 0, p.p95_duration_ms || 0);
    const step = niceStep(max * 1.05);
    max = step * 4;
    const f = frame(svg, step);
    const n = Math.max(series.length - 1, 1);
    const x = (i) => f.left + (f.W - f.left) * i / n;
    const y = (v) => f.top + (f.H - f.top - f.bottom) * (1 - v / max);
    for (const [key, cls] of [["p95_duration_ms", "p95"], ["avg_duration_ms", "avg"]]) {
      let d = "", pen = false;
      series.forEach((p, i) => {
        const v = p[key];
        if (v == null) { pen = false; return; }
        d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1) + " ";
        pen = true;
      });
      if (d) svg.appendChild(el("svg:path", { d: d.trim(), class: cls }));
    }
    series.forEach((p, i) => {
      if (p.avg_duration_ms != null) {
        svg.appendChild(el("svg:circle", { cx: x(i).toFixed(1), cy: y(p.avg_duration_ms).toFixed(1), r: 2.5, class: "dot" }));
      }
    });
    timeLabels(svg, f, series);
  }

  function throughputChart(series, resolution) {
    const svg = $("throughput-chart");
    let max = 0;
    for (const p of series) max = Math.max(max, p.requests_per_second || 0);
    const step = niceStep(max * 1.05);
    max = step * 4;
    const f = frame(svg, step);
    const slot = (f.W - f.left) / Math.max(series.length, 1);
    const h = (v) => (f.H - f.top - f.bottom) * (v / max);
    series.forEach((p, i) => {
      const x = f.left + slot * i + slot * 0.1, w = slot * 0.8, base = f.H - f.bottom;
      const ok = h(p.requests_per_second || 0), bad = h((p.errors || 0) / resolution);
      if (ok > 0) svg.appendChild(el("svg:rect", { x, y: base - ok, width: w, height: ok, class: "ok" }));
      if (bad > 0) svg.appendChild(el("svg:rect", { x, y: base - bad, width: w, height: bad, class: "err" }));
    });
    timeLabels(svg, f, series);
  }

  function costBars(byModel) {
    const box = $("cost-by-model");
    clear(box);
    const rows = Object.entries(byModel).map(([m, s]) => [m, s.total_cost || 0]).sort((a, b) => b[1] - a[1]);
    if (!rows.length) { box.appendChild(el("p", { class: "muted" }, "no calls yet")); return; }
    const max = Math.max(...rows.map((r) => r[1])) || 1;
    for (const [model, cost] of rows) {
      const row = el("div", { class: "row", "data-model": model });
      row.appendChild(el("span", { class: "name", title: model }, model));
      const track = el("div", { class: "track" });
      const fill = el("div", { class: "fill" });
      fill.style.width = (100 * cost / max).toFixed(1) + "%";
      track.appendChild(fill);
      row.appendChild(track);
      row.appendChild(el("span", { class: "amount" }, fmtCost(cost)));
      box.appendChild(row);
    }
  }

  function statsTable(id, groups) {
    const tbody = $(id).tBodies[0];
    clear(tbody);
    for (const [name, s] of Object.entries(groups)) {
      const tr = el("tr", { "data-name": name });
      const cells = [name, fmtInt(s.total_requests), fmtInt(s.failed_requests), fmtPct(s.error_rate),
        fmtMs(s.avg_duration_ms), fmtMs(s.p95_duration_ms), fmtMs(s.avg_time_to_first_chunk_ms),
        fmtInt(s.total_tokens), fmtCost(s.total_cost), fmtInt(s.cache_hits), fmtInt(s.retries)];
      for (const c of cells) tr.appendChild(el("td", {}, c));
      tbody.appendChild(tr);
    }
  }

  function breakers(data) {
    const tbody = $("breakers-table").tBodies[0];
    clear(tbody);
    const entries = Object.entries(data || {});
    $("no-breakers").style.display = entries.length ? "none" : "";
    for (const [name, b] of entries) {
      const tr = el("tr", { "data-name": name });
      tr.appendChild(el("td", {}, name));
      tr.appendChild(el("td", { class: "state-" + (b.state || "") }, b.state || dash));
      for (const k of ["total", "failed", "rejected"]) tr.appendChild(el("td", {}, fmtInt(b[k])));
      tbody.appendChild(tr);
    }
  }

  function errors(byType) {
    const tbody = $("errors-table").tBodies[0];
    clear(tbody);
    for (const [type, count] of Object.entries(byType || {})) {
      const tr = el("tr", { "data-name": type });
      tr.appendChild(el("td", {}, type));
      tr.appendChild(el("td", {}, fmtInt(count)));
      tbody.appendChild(tr);
    }
  }

  function render(d) {
    setText("total-requests", fmtInt(d.total_requests));
    setText("rps", fmtRate(d.requests_per_second));
    setText("active", fmtInt(d.active_operations));
    setText("error-rate", fmtPct(d.error_rate));
    setText("failed-requests", fmtInt(d.failed_requests));
    setText("cancelled-requests", fmtInt(d.cancelled_requests));
    setText("avg-latency", fmtMs(d.avg_duration_ms));
    setText("p50-latency", fmtMs(d.p50_duration_ms));
    setText("p95-latency", fmtMs(d.p95_duration_ms));
    setText("p99-latency", fmtMs(d.p99_duration_ms));
    setText("ttft", fmtMs(d.avg_time_to_first_chunk_ms));
    setText("p95-ttft", fmtMs(d.p95_time_to_first_chunk_ms));
    setText("streams", fmtInt(d.streams));
    setText("total-tokens", fmtInt(d.total_tokens));
    setText("input-tokens", fmtInt(d.input_tokens));
    setText("output-tokens", fmtInt(d.output_tokens));
    setText("total-cost", fmtCost(d.total_cost));
    setText("cache-hit-rate", fmtPct(d.cache_hit_rate));
    setText("cache-hits", fmtInt(d.cache_hits));
    setText("dedup-joins", fmtInt(d.dedup_joins));
    setText("retries", fmtInt(d.retries));
    setText("fallbacks", fmtInt(d.fallbacks));
    setText("rejections", fmtInt(d.circuit_rejections));
    setText("window", String(d.window_seconds));
    setText("interval", (interval / 1000).toString());
    latencyChart(d.series || []);
    throughputChart(d.series || [], d.resolution_seconds || 1);
    costBars(d.by_model || {});
    statsTable("models-table", d.by_model || {});
    statsTable("providers-table", d.by_provider || {});
    breakers(d.circuit_breakers);
    errors(d.errors_by_type);
    setText("updated", "updated " + new Date((d.generated_at || 0) * 1000).toLocaleTimeString("en-GB", { hour12: false }));
    body.dataset.refreshes = String(Number(body.dataset.refreshes || 0) + 1);
  }

  function status(ok, text) {
    const pill = $("status");
    pill.textContent = text;
    pill.className = "pill " + (ok ? "ok" : "err");
  }

  async function poll() {
    try {
      const resp = await fetch(dataUrl, { cache: "no-store", headers: { Accept: "application/json" } });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      render(await resp.json());
      status(true, "live");
    } catch (err) {
      status(false, "disconnected");
      console.warn("llm_async dashboard: refresh failed:", err);
    } finally {
      window.setTimeout(poll, interval);
    }
  }

  poll();
})();
