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
  // Cost of a group of calls: "unpriced" when none of them had a price, a dash when no cost
  // was known at all (cost tracking off, or only failures).
  const fmtSpend = (s) => {
    const priced = s.priced_requests || 0, unpriced = s.unpriced_requests || 0;
    if (!priced) return unpriced ? "unpriced" : dash;
    return fmtCost(s.total_cost) + (unpriced ? " + unpriced" : "");
  };
  const isUnpriced = (s) => !(s.priced_requests || 0) && (s.unpriced_requests || 0) > 0;
  const fmtTime = (t) => (t == null ? dash : new Date(t * 1000).toLocaleTimeString("en-GB", { hour12: false }));
  const fmtSeconds = (v) => (v == null ? dash : v < 1 ? v.toFixed(2) + " s" : v.toFixed(0) + " s");

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
    const rows = Object.entries(byModel).map(([m, s]) => [m, s.total_cost || 0, s])
      .sort((a, b) => (isUnpriced(a[2]) - isUnpriced(b[2])) || (b[1] - a[1]));
    if (!rows.length) { box.appendChild(el("p", { class: "muted" }, "no calls yet")); return; }
    const max = Math.max(...rows.map((r) => r[1])) || 1;
    for (const [model, cost, s] of rows) {
      const row = el("div", { class: "row", "data-model": model });
      row.appendChild(el("span", { class: "name", title: model }, model));
      const track = el("div", { class: "track" });
      const fill = el("div", { class: "fill" });
      fill.style.width = (100 * cost / max).toFixed(1) + "%";
      track.appendChild(fill);
      row.appendChild(track);
      row.appendChild(el("span", { class: "amount" + (isUnpriced(s) ? " unpriced" : "") }, fmtSpend(s)));
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
        fmtInt(s.total_tokens), fmtSpend(s), fmtInt(s.cache_hits), fmtInt(s.retries)];
      cells.forEach((c, i) => tr.appendChild(el("td", i === 8 && isUnpriced(s) ? { class: "unpriced" } : {}, c)));
      tbody.appendChild(tr);
    }
  }

  function breakers(data) {
    const tbody = $("breakers-table").tBodies[0];
    clear(tbody);
    const entries = Object.entries(data || {});
    $("no-breakers").style.display = entries.length ? "none" : "";
    for (const [name, b] of entries) {
      const tr = el("tr", { "data-name": name, "data-state": b.state || "" });
      tr.appendChild(el("td", {}, name));
      tr.appendChild(el("td", { class: "left" }, b.provider || dash));
      tr.appendChild(el("td", { class: "left" }, b.model || dash));
      tr.appendChild(el("td", { class: "left state-" + (b.state || "") }, b.state || dash));
      for (const k of ["total", "failed", "rejected"]) tr.appendChild(el("td", {}, fmtInt(b[k])));
      tr.appendChild(el("td", {}, b.state === "open" ? fmtSeconds(b.retry_after) : dash));
      const f = b.last_failure;
      const text = f ? f.type + (f.message ? ": " + f.message : "") + " (" + fmtTime(f.at) + ")" : dash;
      tr.appendChild(el("td", { class: "failure", title: text }, text));
      tbody.appendChild(tr);
    }
  }

  function budgets(data) {
    const tbody = $("budgets-table").tBodies[0];
    clear(tbody);
    const entries = Object.entries(data || {});
    $("no-budgets").style.display = entries.length ? "none" : "";
    for (const [name, b] of entries) {
      const state = b.exceeded ? "exceeded" : b.soft_limit_reached ? "soft" : "ok";
      const tr = el("tr", { "data-name": name });
      const forecast = b.forecast == null ? dash
        : fmtCost(b.forecast) + (b.forecast_percentage == null ? "" : " (" + b.forecast_percentage.toFixed(0) + "%)");
      const cells = [name, b.scope || dash, b.period || dash, fmtCost(b.spent), fmtCost(b.limit),
        b.percentage == null ? dash : b.percentage.toFixed(1) + "%", forecast];
      cells.forEach((c, i) => tr.appendChild(el("td", i < 3 ? { class: "left" } : {}, c)));
      tr.appendChild(el("td", { class: "budget-" + state }, state === "soft" ? "soft limit" : state));
      tbody.appendChild(tr);
    }
  }

  function spendTable(id, emptyId, byName) {
    const tbody = $(id).tBodies[0];
    clear(tbody);
    const entries = Object.entries(byName || {});
    $(emptyId).style.display = entries.length ? "none" : "";
    for (const [name, amount] of entries) {
      const tr = el("tr", { "data-name": name });
      tr.appendChild(el("td", {}, name));
      tr.appendChild(el("td", {}, fmtCost(amount)));
      tbody.appendChild(tr);
    }
  }

  function recent(calls) {
    const table = $("recent-table");
    const tbody = table.tBodies[0];
    clear(tbody);
    const list = calls || [];
    $("no-recent").style.display = list.length ? "none" : "";
    const content = list.some((c) => "prompt" in c);
    table.classList.toggle("no-content", !content);
    for (const c of list) {
      const tr = el("tr", { "data-status": c.status });
      const status = c.status === "ok" ? "ok" : c.status === "cancelled" ? "cancelled" : (c.error_type || "error");
      const cost = c.cost != null ? fmtCost(c.cost) : c.unpriced ? "unpriced" : dash;
      const cells = [[fmtTime(c.at)], [c.model || dash, "left"], [c.provider || dash, "left"],
        [status, "left status-" + c.status], [fmtMs(c.latency_ms)], [fmtInt(c.input_tokens)],
        [fmtInt(c.output_tokens)], [cost, c.unpriced ? "unpriced" : ""]];
      for (const [text, cls] of cells) tr.appendChild(el("td", cls ? { class: cls } : {}, text));
      if (content) {
        for (const k of ["prompt", "completion"]) {
          const text = c[k] == null ? dash : c[k];
          tr.appendChild(el("td", { class: "content left", title: text }, text));
        }
      }
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
    setText("total-cost", fmtSpend(d));
    $("total-cost").classList.toggle("unpriced", isUnpriced(d));
    $("total-cost").classList.toggle("long", $("total-cost").textContent.length > 11);
    setText("unpriced-note", d.unpriced_requests ? " · " + fmtInt(d.unpriced_requests) + " unpriced calls" : "");
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
    setText("rejections-note", fmtInt(d.circuit_rejections));
    budgets(d.budgets);
    spendTable("users-table", "no-users", (d.spend || {}).by_user);
    spendTable("projects-table", "no-projects", (d.spend || {}).by_project);
    recent(d.recent_calls);
    setText("updated", "updated " + fmtTime(d.generated_at || 0));
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
