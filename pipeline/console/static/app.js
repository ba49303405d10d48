// slomo-rig operator console: plain JavaScript, no build step.
"use strict";

const TOKEN = document.querySelector('meta[name="slomo-token"]').content;
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const state = { part: "live", session: null, calibSeq: -1, lastState: null };
window.previewStats = {};

async function api(method, url, body) {
  const opts = { method, headers: { "X-Slomo-Token": TOKEN } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(url, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = { error: `HTTP ${r.status}` }; }
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

function say(id, text, ok = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("ok", ok);
}

function formData(form) {
  const out = {};
  for (const el of form.elements) if (el.name) out[el.name] = el.value.trim();
  return out;
}

// -- parts ------------------------------------------------------------------------------
function show(part) {
  state.part = part;
  for (const b of $$("button.tab")) b.classList.toggle("active", b.dataset.part === part);
  for (const s of $$(".part")) s.classList.toggle("active", s.id === `part-${part}`);
  if (part === "sessions") loadSessions();
  if (location.hash !== `#${part}`) location.hash = part;
}

// -- previews: lossy, only the newest image, at most at the chosen rate; the server has
// a newer one only as often as capture can spare (the tap slows down while capture
// lags behind real time). The Live part's four previews come as one stacked image
// per round (one request and one decode instead of four: most of what a preview
// costs a browser); the Record part's RGB preview on its own. Images are decoded with
// createImageBitmap and drawn in an animation frame (nothing while the page is hidden).
function visible(el) { return el.offsetParent !== null; }
const pause = (ms) => new Promise((r) => setTimeout(r, ms));
const nextFrame = () => new Promise((r) => requestAnimationFrame(r));

function newStats(name, canvas) {
  const st = { frames: 0, fps: 0, latency_ms: null, t0: performance.now(), n0: 0 };
  if (!window.previewStats[name] || canvas.id) window.previewStats[name] = st;
  return st;
}

function counted(st, canvas, wall) {
  st.frames += 1;
  st.latency_ms = Date.now() - wall * 1000;
  canvas.dataset.frames = st.frames;
  const now = performance.now();
  if (now - st.t0 > 2000) { st.fps = (st.frames - st.n0) * 1000 / (now - st.t0); st.t0 = now; st.n0 = st.frames; }
}

function draw(canvas, bmp, x, y, w, h) {
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  canvas.getContext("2d").drawImage(bmp, x, y, w, h, 0, 0, w, h);
}

async function waitRate(started) {
  const left = 1000 / Number($("#preview-rate").value) - (performance.now() - started);
  if (left > 0) await pause(left);
}

// One loop feeds `canvases` from the preview `name`; `parts` says which rectangle of
// the image (and which sequence number) belongs to which canvas.
async function previewLoop(name, canvases) {
  const byName = new Map(canvases.map((c) => [c.dataset.preview, c]));
  const stats = new Map(canvases.map((c) => [c, newStats(c.dataset.preview, c)]));
  const shown = new Map();
  let seq = -1;
  for (;;) {
    if (!canvases.some(visible)) { await pause(300); continue; }
    const started = performance.now();
    const win = $("#event-window").value;
    try {
      const r = await fetch(`/api/preview/${name}.jpg?after=${seq}&window=${win}`, { cache: "no-store" });
      if (r.status !== 200) { await pause(500); continue; }
      const newSeq = parseInt(r.headers.get("X-Seq"), 10);
      const wall = parseFloat(r.headers.get("X-Wall"));
      const layout = r.headers.get("X-Layout");
      const blob = await r.blob();
      if (newSeq === seq) { await waitRate(started); continue; }  // none newer within 5 s
      seq = newSeq;
      const parts = layout ? JSON.parse(layout) : [{ name, seq: newSeq, wall, x: 0, y: 0 }];
      const fresh = parts.filter((p) => byName.has(p.name) && shown.get(p.name) !== p.seq);
      if (fresh.length) {
        const bmp = await createImageBitmap(blob);
        await nextFrame();
        for (const p of fresh) {
          const canvas = byName.get(p.name);
          draw(canvas, bmp, p.x, p.y, p.w ?? bmp.width, p.h ?? bmp.height);
          shown.set(p.name, p.seq);
          counted(stats.get(canvas), canvas, p.wall);
        }
        bmp.close();
      }
      await waitRate(started);
    } catch (e) {
      await pause(1000);
    }
  }
}

function startPreviews() {
  const sheet = $$("canvas[data-sheet=live]");
  previewLoop("live", sheet);
  for (const c of $$("canvas[data-preview]:not([data-sheet])")) previewLoop(c.dataset.preview, [c]);
}

// -- live state and health --------------------------------------------------------------
const fmt = {
  rate: (v, unit) => (v == null ? "–" : v >= 1e6 ? `${(v / 1e6).toFixed(2)} M${unit}` : v >= 1e3 ? `${(v / 1e3).toFixed(1)} k${unit}` : `${v.toFixed(1)} ${unit}`),
  bytes: (v) => (v == null ? "–" : `${(v / 2 ** 30).toFixed(1)} GiB`),
  n: (v) => (v == null ? "–" : Number(v).toLocaleString()),
};

function healthRows(s) {
  const h = s.health, c = h.counters || {}, sync = c.sync || {}, w = c.workers || {}, pv = c.preview || {};
  const rq = c.raw_queue || {};
  const behind = (pv.lag_s || 0) > 0.1;
  const drops = (c.camera_skipped_frames || 0) + (c.live_events_dropped || 0) + (c.recorder_messages_dropped || 0);
  return [
    ["Cameras", h.stale ? `no data for ${h.data_age_s == null ? "–" : h.data_age_s + " s"}` : "delivering", h.stale],
    ["Event rate", fmt.rate(h.event_rate, "ev/s")],
    ["Frame rate", fmt.rate(h.frame_rate, "fps")],
    ["Drops", `${fmt.n(drops)} (camera ${fmt.n(c.camera_skipped_frames)}, live events ${fmt.n(c.live_events_dropped)})`, drops > 0],
    ["Clock sync", sync.method ? `${sync.method}: residual ${sync.jitter_rms_us == null ? "–" : sync.jitter_rms_us.toFixed(1)} µs rms, edges matched ${fmt.n(sync.matched)}, missing ${fmt.n(sync.missing_edges)}` : "– (while recording)", (sync.missing_edges || 0) > 0],
    ["Workers", w.alive != null ? `${w.busy} busy of ${w.alive}, ${fmt.n(w.dispatched)} intervals sent` : "– (while recording)"],
    ["Skipped intervals", c.intervals != null ? `${fmt.n(c.intervals_skipped)} of ${fmt.n(c.intervals)}` : "–"],
    ["Disk free", fmt.bytes(h.disk_free_bytes), h.disk_free_bytes != null && h.disk_free_bytes < 5 * 2 ** 30],
    ["Raw writer", rq.capacity ? `${fmt.n(rq.items)} waiting for the disk (${(100 * rq.items / rq.capacity).toFixed(0)} % of its queue)` : "– (while recording)", rq.capacity && rq.items > rq.capacity / 4],
    ["Previews", pv.hz == null ? "–" : `${pv.hz} per s` + (pv.hz < pv.max_hz ? " (slowed for capture)" : "") + (behind ? `, capture ${pv.lag_s.toFixed(2)} s behind real time` : ""), behind],
  ];
}

function renderState(s) {
  state.lastState = s;
  const body = $("#health tbody");
  body.replaceChildren(...healthRows(s).map(([k, v, bad]) => {
    const tr = document.createElement("tr");
    tr.innerHTML = "<td></td><td></td>";
    tr.children[0].textContent = k;
    tr.children[1].textContent = v;
    if (bad) tr.children[1].classList.add("bad");
    return tr;
  }));
  const cam = s.camera;
  const camBadge = $("#camera-state");
  camBadge.textContent = `camera ${cam.state}` + (cam.reason ? `: ${cam.reason}` : "");
  camBadge.className = `badge ${cam.state}`;
  const rec = s.record;
  $("#record-state").textContent = rec.state;
  $("#record-reason").textContent = rec.reason ? `— ${rec.reason}` : "";
  const badge = $("#record-badge");
  badge.textContent = rec.state + (rec.session && rec.state !== "idle" ? ` ${rec.session}` : "");
  badge.className = `badge ${rec.state}`;
  const busy = ["starting", "recording", "stopping"].includes(rec.state);
  $("#record-start").disabled = busy;
  $("#record-stop").disabled = !(rec.state === "recording" || rec.state === "starting");
  if (rec.last) $("#record-last").textContent = `last: ${rec.last.path} (${rec.last.status || rec.state})`;
  for (const sel of ["#record-form select[name=model]", "#replay-form select[name=model]"]) {
    const el = $(sel);
    if (!el.options.length) for (const m of s.models) el.add(new Option(m, m));
  }
  const f = $("#camera-form");
  for (const key of ["exposure_us", "frame_rate", "gain_db", "contrast_threshold"]) {
    const input = f.elements[key];
    input.disabled = !s.settings.supported.includes(key);
    if (!input.value && s.settings.current[key] != null) input.value = s.settings.current[key];
  }
  const biases = f.elements["event_biases"];
  biases.disabled = !s.settings.supported.includes("event_biases");
  const shown = s.settings.current.event_biases || s.settings.configured_biases;
  if (!biases.value && shown) {
    biases.value = Object.entries(shown).map(([k, v]) => `${k}=${v}`).join(", ");
  }
  if (state.session) updateReplay(s.replays.filter((j) => j.session === state.session));
}

async function pollState() {
  for (;;) {
    try { renderState(await api("GET", "/api/state")); } catch (e) { /* server restarting */ }
    await new Promise((r) => setTimeout(r, 500));
  }
}

// -- record -----------------------------------------------------------------------------
async function startRecording(ev) {
  ev.preventDefault();
  const d = formData($("#record-form"));
  say("#record-msg", "");
  try {
    const r = await api("POST", "/api/record/start", d);
    say("#record-msg", `recording into ${r.session}`, true);
  } catch (e) { say("#record-msg", e.message); }
}

async function stopRecording() {
  try { await api("POST", "/api/record/stop"); say("#record-msg", "stopping: the raw file is closed first", true); }
  catch (e) { say("#record-msg", e.message); }
}

async function applySettings(ev) {
  ev.preventDefault();
  const d = formData($("#camera-form"));
  try { await api("POST", "/api/camera/settings", d); say("#camera-msg", "applied", true); }
  catch (e) { say("#camera-msg", e.message); }
}

// -- calibration ------------------------------------------------------------------------
function drawPattern() {
  const c = $("#pattern-canvas");
  const [cols, rows] = ($("#calib-form").elements.board.value.split(/[xX*]/).map(Number));
  const period = Number($("#calib-form").elements.blink_ms.value) || 200;
  const sq = Math.floor(Math.min(window.innerWidth / (cols + 3), window.innerHeight / (rows + 3)));
  c.width = window.innerWidth; c.height = window.innerHeight;
  const g = c.getContext("2d");
  let on = true;
  const paint = () => {
    g.fillStyle = "#fff"; g.fillRect(0, 0, c.width, c.height);
    c.dataset.phase = on ? "board" : "white";
    if (on) {
      const x0 = (c.width - sq * (cols + 1)) / 2, y0 = (c.height - sq * (rows + 1)) / 2;
      g.fillStyle = "#000";
      for (let r = 0; r <= rows; r++) for (let q = 0; q <= cols; q++) if ((r + q) % 2 === 0) g.fillRect(x0 + q * sq, y0 + r * sq, sq, sq);
    }
    on = !on;
  };
  paint();
  state.patternTimer = setInterval(paint, period / 2);
}

function showPattern() {
  const p = $("#pattern");
  p.hidden = false;
  if (p.requestFullscreen) p.requestFullscreen().catch(() => {});
  drawPattern();
}

function hidePattern() {
  clearInterval(state.patternTimer);
  $("#pattern").hidden = true;
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
}

async function startCalibration(ev) {
  ev.preventDefault();
  say("#calib-msg", "");
  $("#calib-result").hidden = true;
  try { await api("POST", "/api/calibration/start", formData($("#calib-form"))); state.calibSeq = -1; pollCalibration(); }
  catch (e) { say("#calib-msg", e.message); }
}

async function pollCalibration() {
  for (;;) {
    let s;
    try { s = await api("GET", "/api/calibration"); } catch (e) { return; }
    $("#calib-state").textContent = s.state;
    if (s.views) $("#calib-views").textContent = `— seen ${s.views.seen}, board in RGB ${s.views.rgb}, in events ${s.views.events} (target ${s.target_views} views)`;
    $("#calib-log").textContent = (s.lines || []).join("\n") + (s.live ? `\n${s.live}` : "");
    if (s.seq !== state.calibSeq) {
      state.calibSeq = s.seq;
      for (const key of ["rgb", "events", "rgb_coverage", "events_coverage"]) if ((s.images || []).includes(key)) $(`#calib-${key}`).src = `/api/calibration/image/${key}?seq=${s.seq}`;
    }
    if (s.state !== "running") { renderCalibResult(s); return; }
    await new Promise((r) => setTimeout(r, 400));
  }
}

function renderCalibResult(s) {
  if (s.error) say("#calib-msg", s.error);
  const r = s.result;
  if (!r) return;
  $("#calib-result").hidden = false;
  $("#calib-verdict").textContent = r.verdict;
  $("#calib-verdict").className = r.passed ? "ok" : "bad";
  $("#calib-lines").textContent = [...r.lines, ...(r.passed ? [] : r.advice.map((a) => `advice: ${a}`))].join("\n");
  $("#calib-files").replaceChildren(...Object.entries(r.files).map(([k, name]) => {
    const li = document.createElement("li");
    li.innerHTML = `<a download></a>`;
    li.firstChild.href = `/api/calibration/files/${encodeURIComponent(name)}`;
    li.firstChild.textContent = `${k}: ${name}`;
    return li;
  }));
  if ((s.images || []).includes("overlay")) $("#calib-overlay").src = `/api/calibration/image/overlay?seq=${s.seq}`;
  if (r.passed) say("#calib-msg", `saved ${s.file}: start the console or record with --calibration ${s.file}`, true);
}

// -- sessions ---------------------------------------------------------------------------
async function loadSessions() {
  let data;
  try { data = await api("GET", "/api/sessions"); } catch (e) { return; }
  const body = $("#sessions-table tbody");
  body.replaceChildren(...data.sessions.map((s) => {
    const tr = document.createElement("tr");
    tr.dataset.session = s.name;
    const cells = [s.name, (s.created || "").replace("T", " ").slice(0, 19), s.seconds != null ? `${s.seconds} s` : "–",
      fmt.n(s.events), fmt.n(s.frames), s.status + (s.error ? `: ${s.error}` : ""), fmt.n(s.drops), s.model || "–"];
    for (const v of cells) { const td = document.createElement("td"); td.textContent = v; tr.appendChild(td); }
    tr.addEventListener("click", () => openSession(s.name));
    return tr;
  }));
}

const fileUrl = (name, rel) => `/api/sessions/${encodeURIComponent(name)}/files/${rel.split("/").map(encodeURIComponent).join("/")}`;

async function openSession(name) {
  let d;
  try { d = await api("GET", `/api/sessions/${encodeURIComponent(name)}`); } catch (e) { say("#replay-msg", e.message); return; }
  state.session = name;
  $("#session-detail").hidden = false;
  $("#session-name").textContent = name;
  $("#session-info").textContent = d.info_text;
  const v = $("#session-video");
  if (d.video) v.src = fileUrl(name, d.video); else v.removeAttribute("src");
  $("#session-files").replaceChildren(...d.files.map((f) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = fileUrl(name, f.path); a.download = f.path.split("/").pop();
    a.textContent = `${f.path} (${fmt.n(f.bytes)} bytes)`;
    li.appendChild(a);
    return li;
  }));
  $("#replay-video").hidden = true;
  state.replayShown = null;
  updateReplay(d.replays);
}

async function startReplay(ev) {
  ev.preventDefault();
  const d = formData($("#replay-form"));
  if (d.fps) d.factor = "";
  say("#replay-msg", "");
  try { await api("POST", `/api/sessions/${encodeURIComponent(state.session)}/replay`, d); }
  catch (e) { say("#replay-msg", e.message); }
}

function updateReplay(jobs) {
  if (!jobs || !jobs.length) return;
  const j = jobs[jobs.length - 1];
  const p = j.progress;
  const bar = $("#replay-progress");
  if (p && p.total) { bar.max = p.total; bar.value = p.done; }
  if (j.state === "complete") { bar.max = 1; bar.value = 1; }
  $("#replay-state").textContent = `${j.id} ${j.state}` + (p ? ` — ${p.done}${p.total ? "/" + p.total : ""} intervals, ${fmt.n(p.frames)} frames` : "");
  if (j.state === "failed") say("#replay-msg", `replay failed: ${j.error}`);
  if (j.state === "complete" && j.video && state.replayShown !== j.id) {
    state.replayShown = j.id;
    const v = $("#replay-video");
    if (j.format !== "png") { v.src = fileUrl(j.session, j.video); v.hidden = false; }
    openSessionFiles(j.session);
  }
}

async function openSessionFiles(name) {
  const keep = state.replayShown;
  await openSession(name);
  state.replayShown = keep;
  const j = (state.lastState?.replays || []).filter((x) => x.session === name && x.id === keep)[0];
  if (j && j.format !== "png") { const v = $("#replay-video"); v.src = fileUrl(name, j.video); v.hidden = false; }
}

// -- wiring -----------------------------------------------------------------------------
function init() {
  for (const b of $$("button.tab")) b.addEventListener("click", () => show(b.dataset.part));
  $("#event-window").addEventListener("input", (e) => { $("#event-window-ms").textContent = `${e.target.value} ms`; });
  $("#record-form").addEventListener("submit", startRecording);
  $("#record-stop").addEventListener("click", stopRecording);
  $("#camera-form").addEventListener("submit", applySettings);
  $("#reconnect").addEventListener("click", () => api("POST", "/api/camera/reconnect").catch((e) => say("#camera-msg", e.message)));
  $("#calib-form").addEventListener("submit", startCalibration);
  $("#calib-cancel").addEventListener("click", () => api("POST", "/api/calibration/cancel").catch((e) => say("#calib-msg", e.message)));
  $("#show-pattern").addEventListener("click", showPattern);
  $("#pattern").addEventListener("click", hidePattern);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") hidePattern(); });
  $("#replay-form").addEventListener("submit", startReplay);
  startPreviews();
  window.addEventListener("hashchange", () => show((location.hash || "#live").slice(1)));
  show((location.hash || "#live").slice(1));
  pollState();
}

init();
