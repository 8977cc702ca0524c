// invdn web page: upload a photo, compare InvDN with DANet-R, download the result. No libraries.
"use strict";

const state = {
  limits: null, // from GET /v1/models
  file: null, // the chosen File
  compareFile: null, // what /v1/compare gets: the file itself, or a scaled-down PNG of it
  result: null, // last /v1/compare answer
  generation: 0, // increases with every comparison started; stale answers are ignored
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
  invalid_image_pair: "The two images do not match.",
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

// ---------- limits ----------

async function loadLimits() {
  for (;;) {
    try {
      const response = await fetch("/v1/models", { headers: { Accept: "application/json" } });
      if (response.ok) {
        const body = await response.json();
        state.limits = body.limits;
        const l = body.limits;
        $("limits").textContent = `${l.formats.map((f) => f.toUpperCase()).join(", ")}; up to ` +
          `${fmt.bytes(l.max_upload_bytes)} and ${fmt.megapixels(l.max_pixels)}`;
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

// ---------- choosing a file ----------

function checkFile(file) {
  if (!state.limits) return null;
  if (file.size > state.limits.max_upload_bytes) {
    return `${ERROR_HINTS.upload_too_large} It is ${fmt.bytes(file.size)}; the limit is ` +
      `${fmt.bytes(state.limits.max_upload_bytes)}.`;
  }
  if (file.size === 0) return "This file is empty.";
  return null;
}

// The comparison runs both models on the whole image, so photos over the compare limit are scaled down
// in the browser first (the download still denoises the full-size original).
async function comparableFile(file) {
  const limit = state.limits ? state.limits.compare_max_pixels : Infinity;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (_) {
    return { file, note: "" }; // a format the browser cannot decode (TIFF): the server decides
  }
  const pixels = bitmap.width * bitmap.height;
  if (pixels <= limit) {
    bitmap.close();
    return { file, note: "" };
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
    `${fmt.megapixels(limit)}); the download denoises the full-size photo.`;
  return { file: new File([blob], "scaled.png", { type: "image/png" }), note };
}

async function chooseFile(file) {
  showError("");
  const problem = checkFile(file);
  if (problem) {
    showError(problem);
    return;
  }
  state.file = file;
  const { file: forCompare, note } = await comparableFile(file);
  state.compareFile = forCompare;
  $("scale-note").textContent = note;
  $("scale-note").hidden = !note;
  await runCompare();
}

// ---------- comparing ----------

async function runCompare() {
  if (!state.compareFile) return;
  const generation = ++state.generation;
  const sigma = Number($("sigma").value);
  const noise = $("noise").value;
  const form = new FormData();
  form.append("file", state.compareFile);
  form.append("noise", noise);
  form.append("seed", "0");
  if (noise === "awgn" && sigma > 0) form.append("sigma", String(sigma));
  showError("");
  setStatus("Denoising with InvDN and DANet-R…", true);
  $("download").disabled = true;
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
  } finally {
    if (generation === state.generation) $("download").disabled = false;
  }
}

function describeMode(result) {
  if (result.mode === "synthetic") return `noise ${result.noise} added to your photo`;
  if (result.mode === "reference") return "scored against your clean reference";
  return "your photo denoised as it is (no clean original, so no PSNR/SSIM)";
}

function dataUrl(base64) {
  return `data:image/png;base64,${base64}`;
}

function render(result) {
  $("results").hidden = false;
  const images = result.images;
  $("ba-before").src = dataUrl(images.noisy);
  $("ba-after").src = dataUrl(images.invdn);
  $("img-noisy").src = dataUrl(images.noisy);
  $("img-invdn").src = dataUrl(images.invdn);
  $("img-danet").src = dataUrl(images["danet-r"]);
  const rows = result.models;
  $("noisy-psnr").textContent = fmt.psnr(rows.noisy.psnr);
  $("noisy-ssim").textContent = fmt.ssim(rows.noisy.ssim);
  for (const [prefix, key] of [["invdn", "invdn"], ["danet", "danet-r"]]) {
    const row = rows[key];
    $(`${prefix}-psnr`).textContent = fmt.psnr(row.psnr);
    $(`${prefix}-ssim`).textContent = fmt.ssim(row.ssim);
    $(`${prefix}-ms`).textContent = fmt.ms(row.ms);
    $(`${prefix}-params`).textContent = fmt.count(row.parameters);
    $(`${prefix}-flops`).textContent = fmt.flops(row.flops_per_megapixel);
  }
  $("warnings").textContent = result.warnings.join(" · ");
  $("warnings").hidden = result.warnings.length === 0;
  drawChart(result);
  const percent = (ratio) => `${Number((100 * ratio).toPrecision(3))}%`;
  $("ratios").textContent = `InvDN has ${percent(result.ratios.invdn_over_danet_r)} of DANet-R's parameters and ` +
    `${percent(result.ratios.invdn_over_danet_all)} of all of DANet's (denoiser R + generator G + discriminator).`;
  const synthetic = result.mode === "synthetic";
  $("download-note").textContent = synthetic
    ? "Downloads InvDN's output of the noisy version shown above."
    : `Denoises your full-size photo and keeps its format (${state.file ? state.file.name : ""}).`;
  setSplit(Number($("ba-slider").value));
}

// ---------- parameter chart (inline SVG) ----------

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attributes, text) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

function drawChart(result) {
  const bars = [
    { label: "InvDN", value: result.models.invdn.parameters, colour: "var(--invdn)" },
    { label: "DANet-R (denoiser)", value: result.models["danet-r"].parameters, colour: "var(--danet)" },
    { label: "DANet (R + G + discriminator)", value: result.danet_parameters.total, colour: "var(--danet-all)" },
  ];
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

// ---------- download ----------

function baseName(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name || "photo";
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function download() {
  if (!state.result || !state.file) return;
  showError("");
  const stem = baseName(state.file.name);
  $("download").disabled = true;
  try {
    if (state.result.mode === "synthetic") {
      // The denoised synthetic image, re-encoded in the original's format where the browser can write it.
      const mime = Object.values(MIME_BY_FORMAT).includes(state.file.type) ? state.file.type : "image/png";
      const bitmap = await createImageBitmap(await (await fetch(dataUrl(state.result.images.invdn))).blob());
      const canvas = document.createElement("canvas");
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      canvas.getContext("2d").drawImage(bitmap, 0, 0);
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, mime, 0.95));
      saveBlob(blob, `${stem}-noisy-invdn.${EXTENSIONS[mime]}`);
      return;
    }
    setStatus("Denoising the full-size photo…", true);
    const form = new FormData();
    form.append("file", state.file);
    form.append("model", "invdn");
    form.append("format", "keep");
    const response = await postForm("/v1/denoise", form, "image/*");
    const blob = await response.blob();
    const extension = EXTENSIONS[blob.type] || "png";
    saveBlob(blob, `${stem}-invdn.${extension}`);
    setStatus(`Saved ${stem}-invdn.${extension} (InvDN, ${response.headers.get("X-Inference-Ms")} ms).`);
  } catch (error) {
    setStatus("");
    showError(error instanceof ApiError ? error.explain() : `Download failed: ${error.message}`);
  } finally {
    $("download").disabled = false;
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
  $("sigma").addEventListener("input", () => {
    $("sigma-value").textContent = $("sigma").value;
  });
  $("sigma").addEventListener("change", runCompare);
  $("noise").addEventListener("change", () => {
    $("sigma").disabled = $("noise").value === "camera";
    runCompare();
  });
  $("ba-slider").addEventListener("input", (event) => setSplit(Number(event.target.value)));
  $("download").addEventListener("click", download);
  setSplit(50);
  loadLimits();
}

document.addEventListener("DOMContentLoaded", init);
