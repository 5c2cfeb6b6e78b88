// hilgw situation display: one WebSocket to the gateway that served this page,
// a canvas map in a local equirectangular projection (good to a fraction of a
// percent over the few hundred km a site covers), and three tables.
// No library, no build step, no external URL.
"use strict";

const COLORS = {
  confirmed: "#3fb950", tentative: "#d29922", coasting: "#a371f7", dropped: "#8b949e",
  sensor: "#58a6ff", grid: "#21262d", gridText: "#6e7681", label: "#d0d7de",
};
const R_EARTH = 6371008.8; // mean Earth radius, m (IUGG): enough for drawing

let state = null;        // the last snapshot from the gateway
let view = null;         // {lat0, lon0, mPerPx}; null: fit on the next picture
let userMoved = false;

const canvas = document.getElementById("map");
const ctx = canvas.getContext("2d");

// --- geometry ----------------------------------------------------------------

// Metres east/north of the view centre.
function toLocal(lat, lon) {
  const k = Math.PI / 180;
  return [
    (lon - view.lon0) * k * R_EARTH * Math.cos(view.lat0 * k),
    (lat - view.lat0) * k * R_EARTH,
  ];
}

function toPx(lat, lon) {
  const [e, n] = toLocal(lat, lon);
  return [canvas.width / 2 + e / view.mPerPx, canvas.height / 2 - n / view.mPerPx];
}

function fromPx(x, y) {
  const k = Math.PI / 180;
  const e = (x - canvas.width / 2) * view.mPerPx;
  const n = (canvas.height / 2 - y) * view.mPerPx;
  return [view.lat0 + n / (R_EARTH * k), view.lon0 + e / (R_EARTH * k * Math.cos(view.lat0 * k))];
}

// Great-circle destination from (lat, lon) along bearing brg (deg) for d metres.
function destination(lat, lon, brg, d) {
  const k = Math.PI / 180, a = d / R_EARTH, p1 = lat * k, l1 = lon * k, b = brg * k;
  const p2 = Math.asin(Math.sin(p1) * Math.cos(a) + Math.cos(p1) * Math.sin(a) * Math.cos(b));
  const l2 = l1 + Math.atan2(Math.sin(b) * Math.sin(a) * Math.cos(p1), Math.cos(a) - Math.sin(p1) * Math.sin(p2));
  return [p2 / k, l2 / k];
}

function fit() {
  const pts = [];
  for (const s of state.sensors) {
    pts.push([s.lat, s.lon]);
    if (s.coverage) {
      for (let b = 0; b < 360; b += 30) pts.push(destination(s.lat, s.lon, b, s.coverage.range_m));
    }
  }
  for (const t of state.tracks) pts.push([t.lat, t.lon]);
  if (pts.length === 0) return null;
  const lats = pts.map((p) => p[0]), lons = pts.map((p) => p[1]);
  const lat0 = (Math.min(...lats) + Math.max(...lats)) / 2;
  const lon0 = (Math.min(...lons) + Math.max(...lons)) / 2;
  const v = { lat0, lon0, mPerPx: 1 };
  const saved = view;
  view = v;
  let w = 1, h = 1;
  for (const [la, lo] of pts) {
    const [e, n] = toLocal(la, lo);
    w = Math.max(w, Math.abs(e) * 2);
    h = Math.max(h, Math.abs(n) * 2);
  }
  view = saved;
  v.mPerPx = 1.1 * Math.max(w / canvas.width, h / canvas.height);
  return v;
}

// --- drawing ------------------------------------------------------------------

function resize() {
  const r = canvas.getBoundingClientRect();
  canvas.width = Math.max(1, Math.round(r.width));
  canvas.height = Math.max(1, Math.round(r.height));
}

function niceStep(deg) {
  for (const s of [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20]) if (s >= deg) return s;
  return 30;
}

function drawGrid() {
  const [latTop, lonLeft] = fromPx(0, 0);
  const [latBot, lonRight] = fromPx(canvas.width, canvas.height);
  const step = niceStep((lonRight - lonLeft) / 10);
  ctx.strokeStyle = COLORS.grid;
  ctx.fillStyle = COLORS.gridText;
  ctx.lineWidth = 1;
  ctx.font = "11px system-ui, sans-serif";
  for (let lo = Math.ceil(lonLeft / step) * step; lo <= lonRight; lo += step) {
    const [x] = toPx(view.lat0, lo);
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, canvas.height); ctx.stroke();
    ctx.fillText(`${lo.toFixed(2)}°`, x + 3, 14);
  }
  for (let la = Math.ceil(latBot / step) * step; la <= latTop; la += step) {
    const [, y] = toPx(la, view.lon0);
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(canvas.width, y); ctx.stroke();
    ctx.fillText(`${la.toFixed(2)}°`, 4, y - 3);
  }
  // Scale bar: a round number of km about 1/5 of the width.
  const km = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000].find((k) => (k * 1000) / view.mPerPx > canvas.width / 8) || 1000;
  const px = (km * 1000) / view.mPerPx, x0 = canvas.width - px - 16, y0 = canvas.height - 14;
  ctx.strokeStyle = COLORS.label;
  ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x0 + px, y0); ctx.stroke();
  ctx.fillStyle = COLORS.label;
  ctx.fillText(`${km} km`, x0, y0 - 4);
}

function drawSensors() {
  for (const s of state.sensors) {
    const [x, y] = toPx(s.lat, s.lon);
    const c = s.coverage;
    if (c) {
      ctx.beginPath();
      const full = c.az_width_deg >= 359.9;
      if (!full) ctx.moveTo(x, y);
      const a0 = c.az_center_deg - c.az_width_deg / 2;
      const n = 72;
      for (let i = 0; i <= n; i++) {
        const [la, lo] = destination(s.lat, s.lon, a0 + (c.az_width_deg * i) / n, c.range_m);
        const [px, py] = toPx(la, lo);
        ctx.lineTo(px, py);
      }
      ctx.closePath();
      ctx.fillStyle = "rgba(88, 166, 255, 0.06)";
      ctx.fill();
      ctx.strokeStyle = "rgba(88, 166, 255, 0.55)";
      ctx.setLineDash([6, 4]);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    ctx.fillStyle = COLORS.sensor;
    ctx.fillRect(x - 5, y - 5, 10, 10);
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillText(s.id, x + 8, y + 4);
  }
}

function drawTracks() {
  for (const t of state.tracks) {
    const col = COLORS[t.status] || COLORS.dropped;
    if (t.trail.length > 1) {
      ctx.strokeStyle = col;
      ctx.globalAlpha = 0.45;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      t.trail.forEach(([la, lo], i) => {
        const [x, y] = toPx(la, lo);
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
      ctx.globalAlpha = 1;
    }
    const [x, y] = toPx(t.lat, t.lon);
    // Velocity leader along the course, 8 to 40 px as the ground speed grows.
    const ground = Math.sqrt(Math.max(t.speed * t.speed - t.climb * t.climb, 0));
    const len = Math.min(40, 8 + ground / 25);
    const brg = (t.course * Math.PI) / 180;
    const x2 = x + len * Math.sin(brg), y2 = y - len * Math.cos(brg);
    ctx.strokeStyle = col;
    ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x2, y2); ctx.stroke();
    ctx.fillStyle = col;
    ctx.beginPath();
    ctx.arc(x, y, t.status === "confirmed" ? 5 : 4, 0, 2 * Math.PI);
    if (t.status === "confirmed") ctx.fill(); else { ctx.lineWidth = 2; ctx.stroke(); }
    ctx.font = "bold 12px system-ui, sans-serif";
    ctx.fillText(`T${t.id}`, x + 8, y - 6);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = COLORS.gridText;
    ctx.fillText(`${(t.alt / 1000).toFixed(1)} km`, x + 8, y + 8);
  }
}

function draw() {
  resize();
  ctx.fillStyle = "#0d1117";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!state) return;
  if (!view || !userMoved) view = fit() || view;
  if (!view) return;
  drawGrid();
  drawSensors();
  drawTracks();
}

// --- tables -------------------------------------------------------------------

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fillTracks() {
  const body = document.querySelector("#tracks tbody");
  body.replaceChildren();
  const order = { confirmed: 0, coasting: 1, tentative: 2 };
  const rows = [...state.tracks].sort((a, b) => (order[a.status] ?? 3) - (order[b.status] ?? 3) || a.id - b.id);
  for (const t of rows) {
    const tr = document.createElement("tr");
    tr.dataset.trackId = String(t.id);
    tr.dataset.status = t.status;
    cell(tr, `T${t.id}`);
    cell(tr, t.status, `st-${t.status}`);
    cell(tr, t.lat.toFixed(4), "num");
    cell(tr, t.lon.toFixed(4), "num");
    cell(tr, (t.alt / 1000).toFixed(1), "num");
    cell(tr, t.speed.toFixed(0), "num");
    cell(tr, t.course.toFixed(0), "num");
    cell(tr, t.sensors.join(" "));
    body.appendChild(tr);
  }
  document.getElementById("track-count").textContent = String(state.tracks.length);
}

function fillDevices() {
  const body = document.querySelector("#devices tbody");
  body.replaceChildren();
  for (const d of state.devices) {
    const tr = document.createElement("tr");
    tr.dataset.deviceId = d.id;
    tr.title = d.detail;
    cell(tr, d.id);
    cell(tr, d.state, `st-${d.state}`);
    cell(tr, String(d.frames), "num");
    cell(tr, String(d.reports), "num");
    const drops = Object.entries(d.drops).map(([k, v]) => `${k}=${v}`).join(" ");
    cell(tr, drops || "0");
    body.appendChild(tr);
  }
}

function fillCues() {
  const body = document.querySelector("#cues tbody");
  body.replaceChildren();
  if (state.cues.length === 0) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    cell(tr, "no cues").colSpan = 4;
    body.appendChild(tr);
  }
  for (const c of state.cues) {
    const tr = document.createElement("tr");
    tr.dataset.cueId = String(c.cue_id);
    cell(tr, String(c.cue_id));
    cell(tr, c.launcher_id);
    cell(tr, `T${c.track_id}`);
    cell(tr, c.status);
    body.appendChild(tr);
  }
  document.getElementById("cue-count").textContent = String(state.cues.length);
}

function render() {
  document.getElementById("gateway").textContent = state.gateway_id;
  const auth = document.getElementById("authority");
  auth.textContent = state.authority;
  auth.className = `authority ${state.authority}`;
  const t = state.time_ns ? new Date(state.time_ns / 1e6).toISOString().replace("T", " ").slice(0, 21) + " UTC" : "–";
  document.getElementById("clock").textContent = `picture ${state.batch_sequence} · ${t}`;
  fillTracks();
  fillDevices();
  fillCues();
  draw();
}

// --- link -----------------------------------------------------------------------

function connect() {
  const link = document.getElementById("link");
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => { link.textContent = "live"; link.className = "link up"; };
  ws.onmessage = (ev) => { state = JSON.parse(ev.data); render(); };
  ws.onclose = () => {
    link.textContent = "reconnecting";
    link.className = "link down";
    setTimeout(connect, 1000);
  };
}

// --- pan and zoom ---------------------------------------------------------------

canvas.addEventListener("wheel", (ev) => {
  if (!view) return;
  ev.preventDefault();
  userMoved = true;
  view.mPerPx *= ev.deltaY > 0 ? 1.2 : 1 / 1.2;
  draw();
}, { passive: false });
let dragFrom = null;
canvas.addEventListener("mousedown", (ev) => { dragFrom = [ev.offsetX, ev.offsetY]; });
window.addEventListener("mouseup", () => { dragFrom = null; });
canvas.addEventListener("mousemove", (ev) => {
  if (!dragFrom || !view) return;
  userMoved = true;
  const [lat, lon] = fromPx(canvas.width / 2 - (ev.offsetX - dragFrom[0]), canvas.height / 2 - (ev.offsetY - dragFrom[1]));
  view.lat0 = lat; view.lon0 = lon;
  dragFrom = [ev.offsetX, ev.offsetY];
  draw();
});
canvas.addEventListener("dblclick", () => { userMoved = false; draw(); });
window.addEventListener("resize", draw);

connect();
draw();
