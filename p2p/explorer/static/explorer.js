// pouw explorer: live updates by polling the node's JSON API, and the learning-curve chart.
// Plain browser JavaScript, no library; every value read from the API is set as text, never as HTML.
"use strict";

(function () {
  const STATUS_EVERY_MS = 2000;
  const TASK_EVERY_MS = 3000;
  const RECENT_ROWS = 20;
  const RATE_WINDOW = 10; // blocks over which the mining rate is measured (as the server does)

  async function api(path) {
    const resp = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!resp.ok) {
      const err = new Error(`HTTP ${resp.status} for ${path}`);
      err.status = resp.status;
      throw err;
    }
    return resp.json();
  }

  const short = (s, n = 10) => (s && s.length > n + 2 ? s.slice(0, n) + "…" : s || "");
  const shortAddr = (s) => (s && s.length > 14 ? `${s.slice(0, 8)}…${s.slice(-4)}` : s || "");
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  function el(tag, attrs = {}, text = null) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== null) e.textContent = text;
    return e;
  }

  function link(href, text, title, cls) {
    const a = el("a", { href }, text);
    if (title) a.title = title;
    if (cls) a.className = cls;
    return a;
  }

  function ago(ms) {
    const s = Math.max(0, (Date.now() - ms) / 1000);
    if (s < 60) return `${s.toFixed(0)} s ago`;
    if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
    if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
    return `${(s / 86400).toFixed(1)} d ago`;
  }

  function millis(v) {
    if (typeof v !== "number") return "–";
    return v >= 100 ? `${v.toFixed(0)} ms` : `${v.toFixed(1)} ms`;
  }

  function miningRate(blocks) {
    const bs = blocks.filter((b) => b.height > 0 && typeof b.time_ms === "number");
    if (bs.length < 2) return null;
    const span = (bs[bs.length - 1].time_ms - bs[0].time_ms) / 1000;
    if (span <= 0) return null;
    const units = bs.slice(1).reduce((n, b) => n + (b.units || 0), 0);
    return { unitsPerS: units / span, blocksPerMin: (60 * (bs.length - 1)) / span };
  }

  function refreshAges() {
    for (const cell of document.querySelectorAll("[data-time-ms]")) {
      const ms = Number(cell.dataset.timeMs);
      if (Number.isFinite(ms)) cell.textContent = ago(ms);
    }
  }

  // --- the status bar and the home page's block table ------------------------------------------

  function blockRow(b) {
    const tr = el("tr", { "data-height": String(b.height), class: "fresh" });
    const td = (child, cls) => {
      const c = el("td", cls ? { class: cls } : {});
      if (child instanceof Node) c.appendChild(child);
      else c.textContent = child;
      tr.appendChild(c);
      return c;
    };
    td(link(`/block/${b.height}`, String(b.height)), "num");
    td(link(`/block/${b.hash}`, short(b.hash), b.hash, "mono"), "opt");
    const age = td(ago(b.time_ms), "age");
    age.dataset.timeMs = String(b.time_ms);
    td(link(`/account/${b.miner}`, shortAddr(b.miner), b.miner, "mono"));
    const tasks = td("", "opt");
    (b.tasks || []).forEach((t, i) => {
      if (i) tasks.appendChild(document.createTextNode(", "));
      tasks.appendChild(link(`/task/${t}`, short(t), `task ${t}`, "mono"));
    });
    td(String(b.units), "num");
    td(b.reexecuted === undefined || b.reexecuted === null ? "–" : String(b.reexecuted), "num");
    td(millis(b.verify_ms), "num");
    td(String(b.txs), "num opt");
    return tr;
  }

  function addRecentBlocks(blocks) {
    const body = document.querySelector("#recent-blocks tbody");
    if (!body) return;
    const top = body.querySelector("tr[data-height]");
    const known = top ? Number(top.dataset.height) : -1;
    for (const b of blocks) {
      if (b.height > known && b.on_best_chain !== false) body.insertBefore(blockRow(b), body.firstChild);
    }
    const rows = body.querySelectorAll("tr");
    for (let i = RECENT_ROWS; i < rows.length; i++) rows[i].remove();
  }

  async function pollStatus() {
    const bar = document.getElementById("status");
    const live = document.getElementById("st-live");
    if (!bar) return;
    let height = Number(bar.dataset.height);
    let window_ = JSON.parse(bar.dataset.window || "[]");
    for (;;) {
      await sleep(STATUS_EVERY_MS);
      try {
        const st = await api("/api/status");
        const h = document.getElementById("st-height");
        h.textContent = String(st.height);
        h.href = `/block/${st.height}`;
        const tip = document.getElementById("st-tip");
        tip.textContent = short(st.best_hash);
        tip.title = st.best_hash;
        tip.href = `/block/${st.best_hash}`;
        document.getElementById("st-peers").textContent = String(st.peers);
        const sync = st.sync || {};
        document.getElementById("st-sync").textContent =
          sync.state === "syncing" ? `syncing ${st.height} / ${sync.target_height}` : "synced";
        const mining = document.getElementById("st-mining");
        mining.textContent = st.mining ? "this node mines" : "this node does not mine";
        mining.className = `badge ${st.mining ? "on" : "off"}`;
        if (st.height !== height) {
          // Only the blocks that are new since the last poll (the latest ones after a long gap or a reorg).
          const fresh = st.height > height && st.height - height <= RECENT_ROWS;
          const recent = await api(fresh ? `/api/blocks?start=${height + 1}&limit=${st.height - height}` : `/api/blocks?limit=${RECENT_ROWS}`);
          const merged = new Map((fresh ? window_ : []).map((b) => [b.height, b]));
          for (const b of recent.blocks) merged.set(b.height, b);
          window_ = [...merged.values()].sort((a, b) => a.height - b.height).slice(-RATE_WINDOW);
          const rate = miningRate(window_);
          document.getElementById("st-rate").textContent = rate
            ? `${rate.unitsPerS.toFixed(1)} units/s · ${rate.blocksPerMin.toFixed(1)} blocks/min`
            : "–";
          addRecentBlocks(recent.blocks);
          height = st.height;
          bar.dataset.height = String(height);
        }
        refreshAges();
        live.classList.remove("stale");
        live.textContent = "live";
        live.classList.remove("pulse");
        void live.offsetWidth; // restart the animation
        live.classList.add("pulse");
        live.dataset.updated = String(Date.now());
      } catch (e) {
        live.classList.add("stale");
        live.textContent = "offline";
      }
    }
  }

  // --- the learning curve ----------------------------------------------------------------------

  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs = {}, text = null) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== null) e.textContent = text;
    return e;
  }

  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function intTicks(lo, hi, count) {
    if (hi <= lo) return [lo];
    const step = Math.max(1, Math.ceil((hi - lo) / count));
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) out.push(v);
    return out;
  }

  function drawCurve(root, points) {
    // Drawn at the element's own width, so text keeps its size on a phone and on a wide screen.
    const W = Math.max(280, Math.round(root.getBoundingClientRect().width || 720));
    const H = W < 520 ? 220 : 300, L = 44, R = 44, T = 14, B = 36;
    root.setAttribute("viewBox", `0 0 ${W} ${H}`);
    root.replaceChildren();
    const pts = points.slice().sort((a, b) => a.height - b.height);
    const lo = pts.length ? pts[0].height : 0;
    const hi = pts.length ? pts[pts.length - 1].height : 1;
    const span = hi - lo;
    const x = (h) => (span > 0 ? L + ((h - lo) / span) * (W - L - R) : (L + W - R) / 2);
    const maxLoss = 4 * niceCeil((Math.max(0.1, ...pts.map((p) => p.loss)) * 1.02) / 4); // four even gridlines
    const yAcc = (a) => T + (1 - a) * (H - T - B);
    const yLoss = (l) => T + (1 - l / maxLoss) * (H - T - B);
    for (let i = 0; i <= 4; i++) {
      const a = i / 4;
      root.appendChild(svg("line", { class: "gridline", x1: L, x2: W - R, y1: yAcc(a), y2: yAcc(a) }));
      root.appendChild(svg("text", { x: L - 6, y: yAcc(a) + 4, "text-anchor": "end" }, `${(a * 100).toFixed(0)}%`));
      const lossTick = maxLoss * a;
      root.appendChild(svg("text", { x: W - R + 6, y: yAcc(a) + 4 }, String(Number(lossTick.toPrecision(3)))));
    }
    root.appendChild(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    root.appendChild(svg("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
    root.appendChild(svg("line", { class: "axis", x1: W - R, x2: W - R, y1: T, y2: H - B }));
    for (const t of intTicks(lo, hi, Math.max(3, Math.floor((W - L - R) / 70)))) {
      root.appendChild(svg("line", { class: "axis", x1: x(t), x2: x(t), y1: H - B, y2: H - B + 4 }));
      root.appendChild(svg("text", { x: x(t), y: H - B + 16, "text-anchor": "middle" }, String(t)));
    }
    root.appendChild(svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, "block height"));
    if (!pts.length) return;
    root.appendChild(svg("polyline", { class: "acc-line", points: pts.map((p) => `${x(p.height)},${yAcc(p.accuracy)}`).join(" ") }));
    root.appendChild(svg("polyline", { class: "loss-line", points: pts.map((p) => `${x(p.height)},${yLoss(p.loss)}`).join(" ") }));
    for (const p of pts) {
      const tip = `height ${p.height} (step ${p.step}): accuracy ${(100 * p.accuracy).toFixed(1)}%, loss ${p.loss.toFixed(4)}`;
      const a = svg("circle", { class: "acc", r: 3.5, cx: x(p.height), cy: yAcc(p.accuracy), "data-height": p.height, "data-accuracy": p.accuracy });
      a.appendChild(svg("title", {}, tip));
      const l = svg("circle", { class: "loss", r: 3, cx: x(p.height), cy: yLoss(p.loss), "data-height": p.height, "data-loss": p.loss });
      l.appendChild(svg("title", {}, tip));
      root.appendChild(a);
      root.appendChild(l);
    }
  }

  function curveTableRow(p) {
    const tr = el("tr", { "data-height": String(p.height) });
    const c1 = el("td", { class: "num" });
    c1.appendChild(link(`/block/${p.height}`, String(p.height)));
    tr.appendChild(c1);
    tr.appendChild(el("td", { class: "num" }, String(p.step)));
    tr.appendChild(el("td", { class: "num" }, `${(100 * p.accuracy).toFixed(1)} %`));
    tr.appendChild(el("td", { class: "num" }, p.loss.toFixed(4)));
    return tr;
  }

  async function metricsAt(task, height) {
    for (let attempt = 0; attempt < 120; attempt++) {
      try {
        return await api(`/api/tasks/${task}/metrics?height=${height}`);
      } catch (e) {
        if (e.status !== 503) throw e;
        await sleep(1000); // another evaluation runs: the node evaluates one state at a time
      }
    }
    throw new Error("the node stayed busy");
  }

  function startCurve() {
    const fig = document.getElementById("curve");
    if (!fig) return null;
    const task = fig.dataset.task;
    const svgRoot = document.getElementById("curve-svg");
    const body = document.querySelector("#curve-table tbody");
    const progress = document.getElementById("curve-progress");
    const queue = JSON.parse(fig.dataset.heights || "[]");
    const points = [];
    let total = queue.length;
    let running = false;
    drawCurve(svgRoot, points);
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => drawCurve(svgRoot, points), 150);
    });

    async function work() {
      if (running) return;
      running = true;
      fig.dataset.complete = "false";
      while (queue.length) {
        const h = queue.shift();
        try {
          const m = await metricsAt(task, h);
          const held = m.heldout || {};
          points.push({ height: h, accuracy: held.accuracy, loss: held.loss, step: held.step });
          drawCurve(svgRoot, points);
          body.appendChild(curveTableRow(points[points.length - 1]));
        } catch (e) {
          total -= 1;
          progress.textContent = `height ${h}: ${e.message}`;
        }
        progress.textContent = `${points.length} of ${total} evaluated`;
        fig.dataset.points = String(points.length);
      }
      fig.dataset.complete = "true";
      running = false;
    }
    work();
    return {
      add(heights) {
        const have = new Set(points.map((p) => p.height).concat(queue));
        for (const h of heights) if (!have.has(h)) { queue.push(h); total += 1; }
        work();
      },
      sampled: fig.querySelector("figcaption").textContent.includes("evenly spaced"),
    };
  }

  async function pollTask(curve) {
    const fields = document.getElementById("task-fields");
    if (!fields) return;
    const task = fields.dataset.task;
    let blocks = Number(document.getElementById("task-blocks").textContent);
    for (;;) {
      await sleep(TASK_EVERY_MS);
      try {
        const t = await api(`/api/tasks/${task}`);
        document.getElementById("task-progress").textContent =
          t.units_total ? `${t.units_done} of ${t.units_total}` : String(t.units_done);
        const bar = document.getElementById("task-bar");
        if (bar && t.units_total) bar.style.width = `${Math.min(100, (100 * t.units_done) / t.units_total).toFixed(1)}%`;
        document.getElementById("task-status").textContent = t.status;
        if (t.blocks > blocks) {
          if (curve && !curve.sampled) {
            const page = await api(`/api/tasks/${task}/blocks?offset=${blocks}&limit=1000`);
            curve.add(page.blocks.map((b) => b.height));
          }
          blocks = t.blocks;
          document.getElementById("task-blocks").textContent = String(blocks);
        }
      } catch (e) {
        /* the status bar shows when the node is unreachable */
      }
    }
  }

  refreshAges();
  pollStatus();
  if (document.body.dataset.page === "task") pollTask(startCurve());
})();
