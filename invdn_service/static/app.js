// invdn web page: upload a noisy photo, compare every served model, download any model's result. No libraries.
"use strict";

const state = {
  limits: null, // from GET /v1/models
  models: [], // from GET /v1/models: [{name, label, ...}], the default first
  file: null, // the chosen File (the noisy photo, or the clean one in demo mode)
  pixels: null, // its width x height when the browser can decode it
  compareFile: null, // what /v1/compare gets: the file itself, or a scaled-down PNG of it
  reference: null, // the optional clean reference File
  compareReference: null, // the reference as /v1/compare gets it
  result: null, // last /v1/compare answer
  generation: 0, // increases with every comparison started; stale answers are ignored
  job: null, // {url, cancelled} of the job in progress
  progressSeen: [], // job progress fractions shown, for the record
  lastDownload: null, // {name, size, model} of the last saved file
};

const $ = (id) => document.getElementById(id);
const MIME_BY_FORMAT = { png: "image/png", jpeg: "image/jpeg", webp: "image/webp" };
const EXTENSIONS = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/tiff": "tif",
  "image/bmp": "bmp" };

// ---------- messages ----------

function setStatus(text, busy = false) {
  $("status").textContent = text;
  $("status").classList.toggle("busy", busy);
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

const ERROR_HINTS = {
  upload_too_large: "This file is too large to upload.",
  image_too_large: "This image has too many pixels.",
  unsupported_media_type: "This file type is not supported. Use a PNG, JPEG, WebP, TIFF, BMP or GIF image.",
  undecodable_image: "This file could not be read as an image; it may be damaged or incomplete.",
  invalid_image_pair: "The photo and its clean reference must have the same size.",
  image_too_large_for_sync: "This photo is too big for a direct answer.",
  job_not_found: "The job is gone (expired or deleted).",
  overloaded: "The server is busy.",
  not_ready: "The models are still loading.",
};

class ApiError extends Error {
  constructor(status, code, detail, retryAfter) {
    super(detail);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
  explain() {
    const hint = ERROR_HINTS[this.code] || `The server answered ${this.status}.`;
    return `${hint} (${this.message})`;
  }
}

async function apiError(response) {
  let code = "";
  let detail = response.statusText;
  try {
    const body = await response.json();
    code = body.code || "";
    detail = body.detail || detail;
  } catch (_) {
    // not JSON: keep the status text
  }
  const retry = Number(response.headers.get("Retry-After") || 0);
  return new ApiError(response.status, code, detail, retry);
}

// POST a form; on 503 with Retry-After, wait and try again a few times.
async function postForm(url, form, accept, attempts = 4) {
  for (let attempt = 1; ; attempt++) {
    const response = await fetch(url, { method: "POST", body: form, headers: { Accept: accept } });
    if (response.ok) return response;
    const error = await apiError(response);
    if (response.status === 503 && error.retryAfter > 0 && attempt < attempts) {
      setStatus(`${ERROR_HINTS[error.code] || "Busy."} Trying again in ${error.retryAfter} s…`, true);
      await new Promise((resolve) => setTimeout(resolve, error.retryAfter * 1000));
      continue;
    }
    throw error;
  }
}

// ---------- formatting ----------

const fmt = {
  psnr: (v) => (v === null || v === undefined ? "-" : `${v.toFixed(2)} dB`),
  ssim: (v) => (v === null || v === undefined ? "-" : v.toFixed(4)),
  ms: (v) => (v === null || v === undefined ? "-" : `${v.toFixed(0)} ms`),
  count: (v) => (v === null || v === undefined ? "-" : v.toLocaleString("en-US")),
  flops: (v) => (v === null || v === undefined ? "-" : `${(v / 1e9).toFixed(1)} G`),
  bytes: (v) => (v >= 1048576 ? `${(v / 1048576).toFixed(1)} MiB` : `${Math.round(v / 1024)} KiB`),
  megapixels: (v) => `${(v / 1e6).toFixed(1)} MP`,
};

// ---------- limits and models ----------

async function loadLimits() {
  for (;;) {
    try {
      const response = await fetch("/v1/models", { headers: { Accept: "application/json" } });
      if (response.ok) {
        const body = await response.json();
        state.limits = body.limits;
        state.models = body.models;
        const l = body.limits;
        $("limits").textContent = `${l.formats.map((f) => f.toUpperCase()).join(", ")}; up to ` +
          `${fmt.bytes(l.max_upload_bytes)} and ${fmt.megapixels(l.max_pixels)}`;
        const first = body.models[0];
        $("ba-model-label").textContent = first.label;
        $("ba-after-label").textContent = first.label;
        $("ba-after").alt = `denoised by ${first.label}`;
        setStatus("Ready.");
        return;
      }
      const error = await apiError(response);
      setStatus(`${error.explain()} Waiting…`, true);
      await new Promise((resolve) => setTimeout(resolve, Math.max(1, error.retryAfter || 2) * 1000));
    } catch (error) {
      setStatus("Cannot reach the server; retrying…", true);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

function labelOf(name) {
  const model = state.models.find((m) => m.name === name);
  return model ? model.label : name;
}

// ---------- choosing files ----------

function checkFile(file) {
  if (!state.limits) return null;
  if (file.size > state.limits.max_upload_bytes) {
    return `${ERROR_HINTS.upload_too_large} It is ${fmt.bytes(file.size)}; the limit is ` +
      `${fmt.bytes(state.limits.max_upload_bytes)}.`;
  }
  if (file.size === 0) return "This file is empty.";
  return null;
}

// The comparison runs every model on the image, so photos over the compare limit are scaled down in the
// browser first (the downloads still denoise the full-size original).
async function comparableFile(file) {
  const limit = state.limits ? state.limits.compare_max_pixels : Infinity;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (_) {
    return { file, note: "", pixels: null }; // a format the browser cannot decode (TIFF): the server decides
  }
  const pixels = bitmap.width * bitmap.height;
  if (pixels <= limit) {
    bitmap.close();
    return { file, note: "", pixels };
  }
  const scale = Math.sqrt(limit / pixels);
  const original = `${bitmap.width}×${bitmap.height}`;
  const width = Math.max(1, Math.floor(bitmap.width * scale));
  const height = Math.max(1, Math.floor(bitmap.height * scale));
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  const note = `Compared at ${width}×${height} (scaled down from ${original} to stay under ` +
    `${fmt.megapixels(limit)}); the downloads denoise the full-size photo.`;
  return { file: new File([blob], "scaled.png", { type: "image/png" }), note, pixels };
}

async function chooseFile(file) {
  showError("");
  const problem = checkFile(file);
  if (problem) {
    showError(problem);
    return;
  }
  state.file = file;
  const { file: forCompare, note, pixels } = await comparableFile(file);
  state.compareFile = forCompare;
  state.pixels = pixels;
  $("scale-note").textContent = note;
  $("scale-note").hidden = !note;
  await runCompare();
}

async function chooseReference(file) {
  showError("");
  const problem = file ? checkFile(file) : null;
  if (problem) {
    showError(`Reference: ${problem}`);
    return;
  }
  state.reference = file;
  state.compareReference = file ? (await comparableFile(file)).file : null;
  $("reference-clear").hidden = !file;
  syncDemoControls();
  await runCompare();
}

function syncDemoControls() {
  const hasReference = Boolean(state.reference);
  $("demo-noise").disabled = hasReference; // a real pair is scored as it is: no synthetic noise
  if (hasReference) $("demo-noise").checked = false;
  $("demo-controls").disabled = !$("demo-noise").checked;
  $("sigma").disabled = $("noise").value === "camera";
}

// ---------- comparing ----------

async function runCompare() {
  if (!state.compareFile) return;
  const generation = ++state.generation;
  const form = new FormData();
  form.append("file", state.compareFile);
  form.append("seed", "0");
  const demo = $("demo-noise").checked && !state.compareReference;
  if (state.compareReference) {
    form.append("reference", state.compareReference);
  } else if (demo) {
    form.append("noise", $("noise").value);
    if ($("noise").value === "awgn") form.append("sigma", String(Number($("sigma").value)));
  }
  showError("");
  setStatus(`Denoising with ${state.models.map((m) => m.label).join(", ")}…`, true);
  try {
    const response = await postForm("/v1/compare", form, "application/json");
    const result = await response.json();
    if (generation !== state.generation) return; // a newer comparison was started meanwhile
    state.result = result;
    render(result);
    setStatus(`Done: ${result.width}×${result.height}, ${describeMode(result)}.`);
  } catch (error) {
    if (generation !== state.generation) return;
    setStatus("");
    showError(error instanceof ApiError ? error.explain() : `Request failed: ${error.message}`);
  }
}

function describeMode(result) {
  if (result.mode === "synthetic") return `demo mode: noise ${result.noise} added to your photo`;
  if (result.mode === "reference") return "scored against your clean reference";
  return "your photo denoised as it is (add a clean reference for PSNR/SSIM)";
}

function dataUrl(base64) {
  return `data:image/png;base64,${base64}`;
}

function element(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function card(key, row, image, isDefault) {
  const figure = element("figure", { class: `card${isDefault ? " default" : ""}`, id: `card-${key}` });
  figure.appendChild(element("img", { id: `img-${key}`, alt: key === "noisy" ? "noisy input" : `denoised by ${row.label}`,
    src: dataUrl(image) }));
  const caption = element("figcaption");
  caption.appendChild(element("h3", {}, row.label));
  const list = element("dl");
  const facts = [["PSNR", "psnr", fmt.psnr(row.psnr)], ["SSIM", "ssim", fmt.ssim(row.ssim)]];
  if (key !== "noisy") {
    facts.push(["Time", "ms", fmt.ms(row.ms)], ["Parameters", "params", fmt.count(row.parameters)],
      ["FLOPs/MP", "flops", fmt.flops(row.flops_per_megapixel)]);
  }
  for (const [title, suffix, value] of facts) {
    list.appendChild(element("dt", {}, title));
    list.appendChild(element("dd", { id: `${key}-${suffix}` }, value));
  }
  caption.appendChild(list);
  if (key !== "noisy") {
    const button = element("button", { type: "button", class: "download-button", id: `download-${key}`,
      "data-model": key }, `Download ${row.label}`);
    button.addEventListener("click", () => download(key));
    caption.appendChild(button);
  }
  figure.appendChild(caption);
  return figure;
}

function render(result) {
  $("results").hidden = false;
  const images = result.images;
  const names = state.models.map((m) => m.name).filter((name) => result.models[name]);
  const first = names[0];
  $("ba-before").src = dataUrl(images.noisy);
  $("ba-after").src = dataUrl(images[first]);
  const cards = [card("noisy", result.models.noisy, images.noisy, false)];
  names.forEach((name, index) => cards.push(card(name, result.models[name], images[name], index === 0)));
  $("cards").replaceChildren(...cards);
  $("warnings").textContent = result.warnings.join(" · ");
  $("warnings").hidden = result.warnings.length === 0;
  drawChart(result, names);
  const percent = (ratio) => `${Number((100 * ratio).toPrecision(3))}%`;
  const ratioKeys = Object.keys(result.ratios);
  $("ratios").textContent = ratioKeys.length === 2
    ? `${labelOf(first)} has ${percent(result.ratios[ratioKeys[0]])} of DANet-R's parameters and ` +
      `${percent(result.ratios[ratioKeys[1]])} of all of DANet's (denoiser R + generator G + discriminator).`
    : "";
  $("download-note").textContent = result.mode === "synthetic"
    ? "Downloads give each model's output of the noisy version shown."
    : `Downloads denoise your full-size photo (${state.file ? state.file.name : ""}) and keep its format.`;
  setSplit(Number($("ba-slider").value));
}

// ---------- parameter chart (inline SVG) ----------

const SVG_NS = "http://www.w3.org/2000/svg";
const BAR_COLOURS = ["var(--invdn)", "#0ca678", "var(--danet)", "#7048e8", "#1098ad"];

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawChart(result, names) {
  const bars = names.map((name, index) => ({ label: result.models[name].label, value: result.models[name].parameters,
    colour: BAR_COLOURS[index % BAR_COLOURS.length] }));
  if (result.danet_parameters && result.danet_parameters.total) {
    bars.push({ label: "DANet (R + G + discriminator)", value: result.danet_parameters.total,
      colour: "var(--danet-all)" });
  }
  const width = 760;
  const labelWidth = 230;
  const valueWidth = 110;
  const barHeight = 26;
  const gap = 12;
  const height = bars.length * (barHeight + gap) + gap;
  const max = Math.max(...bars.map((bar) => bar.value || 0), 1);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  chart.appendChild(svg("title", {}, "Parameter counts"));
  bars.forEach((bar, index) => {
    const y = gap + index * (barHeight + gap);
    const length = Math.max(2, ((width - labelWidth - valueWidth) * (bar.value || 0)) / max);
    chart.appendChild(svg("text", { x: 0, y: y + barHeight * 0.68 }, bar.label));
    chart.appendChild(svg("rect", { x: labelWidth, y, width: length, height: barHeight, rx: 3, fill: bar.colour,
      "data-parameters": bar.value }));
    chart.appendChild(svg("text", { x: labelWidth + length + 8, y: y + barHeight * 0.68, class: "value" },
      fmt.count(bar.value)));
  });
  $("chart").replaceChildren(chart);
}

// ---------- before/after slider ----------

function setSplit(percent) {
  $("ba-after").style.clipPath = `inset(0 0 0 ${percent}%)`;
  $("before-after").style.setProperty("--split", `${percent}%`);
}

// ---------- downloads ----------

function baseName(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name || "photo";
}

function saveBlob(blob, name, model) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  state.lastDownload = { name, size: blob.size, model };
}

function setDownloadsDisabled(disabled) {
  for (const button of document.querySelectorAll(".download-button")) button.disabled = disabled;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function showJob(progress, text) {
  $("job").hidden = false;
  $("job-progress").value = progress;
  $("job-text").textContent = text;
  state.progressSeen.push(progress);
}

// Big photos go through the job API: POST /v1/jobs, poll the status for progress, then fetch the result.
async function denoiseAsJob(form, model) {
  const response = await postForm("/v1/jobs", form, "application/json");
  const created = await response.json();
  state.job = { url: created.status_url, cancelled: false };
  showJob(0, `${labelOf(model)}: starting…`);
  try {
    for (;;) {
      await sleep(250);
      if (state.job.cancelled) throw new Error("cancelled");
      const poll = await fetch(created.status_url, { headers: { Accept: "application/json" } });
      if (!poll.ok) throw await apiError(poll);
      const status = await poll.json();
      showJob(status.progress, `${labelOf(model)}: ${status.tiles_done} of ${status.tiles_total || "?"} tiles`);
      if (status.status === "done") {
        const result = await fetch(status.result_url);
        if (!result.ok) throw await apiError(result);
        const blob = await result.blob();
        await fetch(created.status_url, { method: "DELETE" }); // frees the server's copy
        return { blob, ms: status.inference_ms };
      }
      if (status.status === "failed") {
        throw new ApiError(422, status.error.code, status.error.detail, 0);
      }
      if (status.status === "cancelled") throw new Error("cancelled");
    }
  } finally {
    state.job = null;
    $("job").hidden = true;
  }
}

async function cancelJob() {
  if (!state.job) return;
  state.job.cancelled = true;
  await fetch(state.job.url, { method: "DELETE" });
  setStatus("Cancelled.");
}

async function downloadSynthetic(model, stem) {
  // The model's output of the synthetic noisy image, re-encoded in the original's format where possible.
  const mime = Object.values(MIME_BY_FORMAT).includes(state.file.type) ? state.file.type : "image/png";
  const bitmap = await createImageBitmap(await (await fetch(dataUrl(state.result.images[model]))).blob());
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, mime, 0.95));
  saveBlob(blob, `${stem}-noisy-${model}.${EXTENSIONS[mime]}`, model);
}

async function download(model) {
  if (!state.result || !state.file) return;
  showError("");
  const stem = baseName(state.file.name);
  setDownloadsDisabled(true);
  try {
    if (state.result.mode === "synthetic") {
      await downloadSynthetic(model, stem);
      setStatus(`Saved ${state.lastDownload.name}.`);
      return;
    }
    const form = new FormData();
    form.append("file", state.file);
    form.append("model", model);
    form.append("format", "keep");
    const big = state.pixels !== null && state.pixels > state.limits.sync_max_pixels;
    let outcome;
    if (big) {
      outcome = await denoiseAsJob(form, model);
    } else {
      setStatus(`Denoising the full-size photo with ${labelOf(model)}…`, true);
      try {
        const response = await postForm("/v1/denoise", form, "image/*");
        outcome = { blob: await response.blob(), ms: Number(response.headers.get("X-Inference-Ms")) };
      } catch (error) {
        // a format the browser could not measure, found too big by the server: use a job after all
        if (!(error instanceof ApiError && error.code === "image_too_large_for_sync")) throw error;
        outcome = await denoiseAsJob(form, model);
      }
    }
    const extension = EXTENSIONS[outcome.blob.type] || "png";
    saveBlob(outcome.blob, `${stem}-${model}.${extension}`, model);
    setStatus(`Saved ${stem}-${model}.${extension} (${labelOf(model)}, ${fmt.ms(outcome.ms)}).`);
  } catch (error) {
    if (error.message === "cancelled") {
      setStatus("Cancelled.");
      return;
    }
    setStatus("");
    showError(error instanceof ApiError ? error.explain() : `Download failed: ${error.message}`);
  } finally {
    setDownloadsDisabled(false);
  }
}

// ---------- wiring ----------

function init() {
  const zone = $("dropzone");
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) chooseFile(file);
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    if (file) chooseFile(file);
  });
  $("reference").addEventListener("change", (event) => chooseReference(event.target.files[0] || null));
  $("reference-clear").addEventListener("click", () => {
    $("reference").value = "";
    chooseReference(null);
  });
  $("demo-noise").addEventListener("change", () => {
    syncDemoControls();
    runCompare();
  });
  $("sigma").addEventListener("input", () => {
    $("sigma-value").textContent = $("sigma").value;
  });
  $("sigma").addEventListener("change", runCompare);
  $("noise").addEventListener("change", () => {
    syncDemoControls();
    runCompare();
  });
  $("ba-slider").addEventListener("input", (event) => setSplit(Number(event.target.value)));
  $("job-cancel").addEventListener("click", cancelJob);
  syncDemoControls();
  setSplit(50);
  loadLimits();
}

document.addEventListener("DOMContentLoaded", init);
