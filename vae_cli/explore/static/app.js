// vae-explore's page: plain JS, a canvas scatter, and the JSON API of the server that sent it.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const PICK_RADIUS = 6;  // px: a click this close to a dot selects that held-out image

const state = {
  info: null,
  z: null,        // the current latent point (array of latent_dim numbers)
  label: null,    // the decoder's class (conditional runs), else null
  a: null, b: null,
  busy: false, again: false,  // one decode request in flight; the latest slider value follows it
  view: null,     // scatter data bounds -> canvas mapping
};

const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const options = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function showError(error) {
  const box = $("error");
  box.textContent = `vae-explore: ${error.message || error}`;
  box.hidden = false;
}

function colour(label) {
  if (label === null) return "#4c6ef5";
  return label < PALETTE.length ? PALETTE[label] : `hsl(${(label * 137.5) % 360}, 60%, 45%)`;
}

function className(k) {
  const names = state.info.class_names;
  return names ? `${k} ${names[k]}` : String(k);
}

// --- the scatter --------------------------------------------------------------------------------

function project(z) {
  const { origin, axes } = state.info;
  const p = [0, 0];
  for (let j = 0; j < 2; j++) {
    for (let i = 0; i < z.length; i++) p[j] += (z[i] - origin[i]) * axes[j][i];
  }
  return p;
}

function unproject(p) {
  const { origin, axes, z_bound } = state.info;
  return origin.map((o, i) => Math.max(-z_bound, Math.min(z_bound, o + p[0] * axes[0][i] + p[1] * axes[1][i])));
}

function setUpView() {
  const canvas = $("scatter");
  const points = state.info.points;
  let [x0, x1, y0, y1] = [-3, 3, -3, 3];
  if (points.length) {
    const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
    [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  }
  if (state.info.latent_dim === 2) {  // the axes are the units: show every point the sliders reach
    const [rx, ry] = state.info.slider_range;
    [x0, x1, y0, y1] = [Math.min(x0, -rx), Math.max(x1, rx), Math.min(y0, -ry), Math.max(y1, ry)];
  }
  const pad = 0.04 * Math.max(x1 - x0, y1 - y0, 1e-3);
  const ratio = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * ratio;
  canvas.height = canvas.clientHeight * ratio;
  state.view = { x0: x0 - pad, x1: x1 + pad, y0: y0 - pad, y1: y1 + pad,
                 w: canvas.clientWidth, h: canvas.clientHeight, ratio };
}

function toCanvas(p) {
  const v = state.view;
  return [(p[0] - v.x0) / (v.x1 - v.x0) * v.w, (v.y1 - p[1]) / (v.y1 - v.y0) * v.h];
}

function markerAt(z) {  // a marker off the view (a PCA plane's far point) sits at the edge
  const v = state.view;
  const [cx, cy] = toCanvas(project(z));
  return [Math.max(4, Math.min(v.w - 4, cx)), Math.max(4, Math.min(v.h - 4, cy))];
}

function fromCanvas(x, y) {
  const v = state.view;
  return [v.x0 + x / v.w * (v.x1 - v.x0), v.y1 - y / v.h * (v.y1 - v.y0)];
}

function drawScatter() {
  const canvas = $("scatter");
  const ctx = canvas.getContext("2d");
  const v = state.view;
  ctx.setTransform(v.ratio, 0, 0, v.ratio, 0, 0);
  ctx.clearRect(0, 0, v.w, v.h);
  ctx.strokeStyle = "#e4e7ee";  // the axes through 0
  ctx.beginPath();
  const [ox, oy] = toCanvas([0, 0]);
  ctx.moveTo(ox, 0); ctx.lineTo(ox, v.h); ctx.moveTo(0, oy); ctx.lineTo(v.w, oy);
  ctx.stroke();
  ctx.globalAlpha = 0.75;
  for (const [x, y, label] of state.info.points) {
    const [cx, cy] = toCanvas([x, y]);
    ctx.fillStyle = colour(label);
    ctx.beginPath(); ctx.arc(cx, cy, 2.6, 0, 2 * Math.PI); ctx.fill();
  }
  ctx.globalAlpha = 1;
  for (const [z, name] of [[state.a, "A"], [state.b, "B"]]) {
    if (!z) continue;
    const [cx, cy] = markerAt(z);
    ctx.fillStyle = "#111"; ctx.font = "bold 13px system-ui, sans-serif";
    ctx.fillText(name, cx + 6, cy - 6);
    ctx.beginPath(); ctx.arc(cx, cy, 4, 0, 2 * Math.PI); ctx.fill();
  }
  if (state.a && state.b) {
    const [ax, ay] = markerAt(state.a), [bx, by] = markerAt(state.b);
    ctx.strokeStyle = "#111"; ctx.setLineDash([4, 3]);
    ctx.beginPath(); ctx.moveTo(ax, ay); ctx.lineTo(bx, by); ctx.stroke(); ctx.setLineDash([]);
  }
  if (state.z) {  // the current point: a ring with a cross
    const [cx, cy] = markerAt(state.z);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(cx, cy, 7, 0, 2 * Math.PI);
    ctx.moveTo(cx - 11, cy); ctx.lineTo(cx + 11, cy); ctx.moveTo(cx, cy - 11); ctx.lineTo(cx, cy + 11);
    ctx.stroke(); ctx.lineWidth = 1;
  }
}

async function onScatterClick(event) {
  const rect = $("scatter").getBoundingClientRect();
  const x = event.clientX - rect.left, y = event.clientY - rect.top;
  let best = null, bestDistance = PICK_RADIUS;
  for (const [px, py, , index] of state.info.points) {
    const [cx, cy] = toCanvas([px, py]);
    const d = Math.hypot(cx - x, cy - y);
    if (d <= bestDistance) { best = index; bestDistance = d; }
  }
  try {
    if (best === null) {
      setZ(unproject(fromCanvas(x, y)));
      $("status").textContent = "decoding the clicked point";
    } else {
      const point = await api(`/api/point?i=${best}`);
      if (state.info.conditional && point.label !== null) setLabel(point.label);
      setZ(point.z);
      $("status").textContent = `held-out image ${point.index}` +
        (point.label === null ? "" : ` (label ${className(point.label)})`);
    }
    requestDecode();
  } catch (error) { showError(error); }
}

// --- the current point ------------------------------------------------------------------------------

function setZ(z) {
  state.z = z.slice();
  for (const input of $("sliders").querySelectorAll("input")) {
    const unit = Number(input.dataset.unit);
    input.value = state.z[unit];
    input.nextElementSibling.value = state.z[unit].toFixed(2);
  }
  showZ();
  drawScatter();
}

function setLabel(label) {
  state.label = label;
  $("class-select").value = String(label);
  showZ();
}

function shellWord(text) {
  return /^[A-Za-z0-9_.\/:@%+=-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

function showZ() {
  const values = state.z.map((v) => (Math.abs(v) < 5e-5 ? 0 : v).toFixed(4)).join(",");
  const label = state.label === null ? "" : ` --label ${state.label}`;
  $("z-text").value = `vae-sample ${shellWord(state.info.run)} --z=${values}${label}`;
}

async function requestDecode() {
  if (state.busy) { state.again = true; return; }  // the newest value is sent when this one returns
  state.busy = true;
  try {
    do {
      state.again = false;
      const started = performance.now();
      const result = await api("/api/decode", { z: state.z, label: state.label });
      $("decoded").src = result.image;
      const near = result.nearest;
      if (near) {
        $("nearest").src = near.image;
        $("nearest-caption").textContent = `nearest real image: held-out ${near.index}` +
          (near.label === null ? "" : `, label ${className(near.label)}`) + `, distance ${near.distance.toFixed(2)}`;
      }
      $("decoded").dataset.ms = Math.round(performance.now() - started);
    } while (state.again);
  } catch (error) {
    showError(error);
  } finally {
    state.busy = false;
  }
}

function buildSliders() {
  const info = state.info;
  const box = $("sliders");
  for (const unit of info.unit_order) {
    const id = `unit-${unit}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = `z[${unit}]`;
    label.title = `variance of this unit's z_mean over the held-out images: ${info.unit_variance[unit].toFixed(3)}`;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", id, min: -info.slider_range[unit], max: info.slider_range[unit],
                           step: 0.01 });
    input.dataset.unit = unit;
    const output = document.createElement("output");
    output.htmlFor = id;
    input.addEventListener("input", () => {
      state.z[unit] = Number(input.value);
      output.value = state.z[unit].toFixed(2);
      $("status").textContent = "";
      showZ();
      drawScatter();
      requestDecode();
    });
    box.append(label, input, output);
  }
  const rest = info.latent_dim - info.unit_order.length;
  $("rest-note").textContent = (info.latent_dim > 1 ? "Units ordered by activity (variance of z_mean). " : "") +
    (rest > 0 ? `${rest} less active units stay at the chosen point's values.` : "");
}

// --- A -> B -------------------------------------------------------------------------------------------

async function refreshStrip() {
  if (!state.a || !state.b) return;
  const steps = Math.max(2, Math.min(state.info.max_steps, Math.round(Number($("steps").value)) || 10));
  $("steps").value = steps;
  try {
    const result = await api("/api/interpolate", { a: state.a, b: state.b, steps, label: state.label });
    const strip = $("strip");
    strip.replaceChildren(...result.images.map((src, i) => {
      const img = document.createElement("img");
      img.src = src;
      img.alt = `step ${i + 1} of ${steps} from A to B`;
      return img;
    }));
    $("strip-note").textContent = `${steps} images on the straight line from A to B` +
      (state.label === null ? "" : `, class ${className(state.label)}`) + ".";
  } catch (error) { showError(error); }
}

// --- start ----------------------------------------------------------------------------------------------

async function start() {
  const info = await api("/api/info");
  state.info = info;
  $("run-name").textContent = info.run;
  $("run-info").textContent = `${info.arch} VAE, latent_dim ${info.latent_dim}, ` +
    `${info.image_shape.join("x")} images` + (info.conditional ? `, conditional on ${info.num_classes} classes` : "") +
    `; ${info.held_out} held-out images` + (info.points.length < info.held_out ? ` (${info.points.length} shown)` : "");
  $("view-name").textContent = info.view + (info.explained ?
    ` (${info.explained.map((r) => `${(100 * r).toFixed(0)}%`).join(" + ")} of the variance)` : "");
  const labels = [...new Set(info.points.map((p) => p[2]).filter((l) => l !== null))].sort((a, b) => a - b);
  $("legend").replaceChildren(...labels.map((l) => {
    const item = document.createElement("span");
    item.style.setProperty("--dot", colour(l));
    item.textContent = className(l);
    return item;
  }));
  if (info.conditional) {
    const select = $("class-select");
    for (let k = 0; k < info.num_classes; k++) select.add(new Option(className(k), String(k)));
    select.addEventListener("change", () => {
      setLabel(Number(select.value));
      requestDecode();
      refreshStrip();
    });
    $("class-row").hidden = false;
    state.label = 0;
  }
  $("steps").max = info.max_steps;
  buildSliders();
  setUpView();
  setZ(info.start);
  $("scatter").addEventListener("click", onScatterClick);
  $("set-a").addEventListener("click", () => { state.a = state.z.slice(); drawScatter(); refreshStrip(); });
  $("set-b").addEventListener("click", () => { state.b = state.z.slice(); drawScatter(); refreshStrip(); });
  $("steps").addEventListener("change", refreshStrip);
  $("copy-z").addEventListener("click", async () => {
    $("z-text").select();
    try { await navigator.clipboard.writeText($("z-text").value); $("status").textContent = "copied"; }
    catch { $("status").textContent = "select the text and copy it (the clipboard is not available here)"; }
  });
  await requestDecode();
  document.body.dataset.ready = "true";
}

start().catch(showError);
