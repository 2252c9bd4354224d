// The vlx page: every choice is a request to the server (vlx/serve/app.py), which answers from
// the task contract; this script only keeps what was chosen and draws the answers.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  config: null, task: "classify", image: null, question: null, caption: null,
  target: null, answer: null, forced: [], layers: {}, textTimer: null,
};

function params(extra = {}) {
  const p = new URLSearchParams({task: state.task, image: state.image, method: $("method").value});
  const layer = $("layer").value;
  if (layer) p.set("layer", layer);
  const text = state.task === "vqa" ? state.question : state.task === "caption" ? state.caption : null;
  if (text) p.set("text", text);
  for (const [key, value] of Object.entries(extra)) {
    for (const v of [].concat(value)) if (v !== null && v !== undefined) p.append(key, v);
  }
  return p;
}

async function call(path, options = {}) {
  document.body.dataset.busy = "1";
  try {
    const response = await fetch(path, options);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  } finally {
    document.body.dataset.busy = "0";
  }
}

function say(text, kind = "error") {
  const box = $("message");
  box.textContent = text || "";
  box.className = text ? kind : "";
}

async function guarded(work) {
  try {
    await work();
  } catch (err) {
    say(err.message);
  }
}

function setTask(task) {
  state.task = task;
  for (const button of document.querySelectorAll(".tabs button")) {
    button.classList.toggle("active", button.dataset.task === task);
  }
  $("caption-form").classList.toggle("hidden", task !== "caption");
  $("vqa-form").classList.toggle("hidden", task !== "vqa");
  $("targets-title").textContent = {classify: "Top classes: click one", caption:
    "Caption: click a word", vqa: "Answers: click one, or force another"}[task];
  const info = state.config.tasks[task];
  $("model").textContent = `model: ${info.model}`;
  fillLayers(state.layers[task] || []);
}

function fillLayers(layers) {
  const select = $("layer");
  const keep = select.value;
  select.innerHTML = "";
  const own = document.createElement("option");
  own.value = "";
  own.textContent = `the model's own (${state.config.tasks[state.task].layer || "last spatial"})`;
  select.append(own);
  for (const name of layers) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    select.append(option);
  }
  select.value = layers.includes(keep) ? keep : "";
}

async function pick(picked) {
  state.image = picked.image;
  state.question = picked.question || state.question || state.config.question;
  state.caption = null;
  state.forced = [];
  $("question").value = state.question;
  $("caption-text").value = "";
  $("input-image").src = `/api/images/${picked.image}.png`;
  await analyze();
}

async function analyze(notice = null) {
  say(notice, "info");
  state.target = null;
  state.answer = null;
  const result = await call(`/api/analyze?${params()}`);
  if (!state.layers[state.task]) {
    state.layers[state.task] = result.layers;
    fillLayers(result.layers);
  }
  $("prediction").textContent = state.task === "caption" ?
    (state.caption ? `caption: ${result.text}` : `generated: ${result.prediction}`) :
    state.task === "vqa" ? `answer: ${result.prediction}` : `top class: ${result.prediction}`;
  drawTargets(result.targets);
  await explain(result.targets[0].id);
}

function drawTargets(targets) {
  const box = $("targets");
  box.innerHTML = "";
  for (const target of targets) addTarget(target.id, target.name, target.probability);
  for (const answer of state.forced) addTarget(null, answer, null, answer);
}

function addTarget(id, name, probability, answer = null) {
  const button = document.createElement("button");
  button.className = "target";
  button.dataset.id = id === null ? "" : id;
  button.dataset.name = name;
  if (answer !== null) button.dataset.answer = answer;
  button.textContent = name;
  if (probability !== null && probability !== undefined) {
    const small = document.createElement("small");
    small.textContent = probability.toFixed(2);
    button.append(small);
  }
  button.addEventListener("click", () => guarded(() => explain(id, answer)));
  $("targets").append(button);
}

async function explain(id, answer = null) {
  const started = performance.now();
  const result = await call(`/api/explain?${params({target: id, answer})}`);
  state.target = result.target.id;
  state.answer = answer;
  markSelected();
  $("map-title").textContent = `Map of "${result.target.name}" at ${result.layer}`;
  const panels = $("panels");
  panels.innerHTML = "";
  const loaded = [];
  for (const panel of result.panels) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.className = "map";
    img.dataset.method = panel.method;
    img.alt = `${panel.method} map of ${result.target.name}`;
    img.src = panel.png;
    loaded.push(img.decode());
    const caption = document.createElement("figcaption");
    caption.textContent = `${panel.method}: score ${panel.score.toPrecision(4)}, peak (${panel.peak})`;
    figure.append(img, caption);
    panels.append(figure);
  }
  await Promise.all(loaded);
  // For tests and benchmarks: how long this map took from the click, how many were shown,
  // and when the first one was (milliseconds since the page was opened).
  document.body.dataset.mapMs = String(performance.now() - started);
  document.body.dataset.shown = String(Number(document.body.dataset.shown || 0) + 1);
  document.body.dataset.firstMapAt ||= String(performance.now());
  document.body.dataset.target = result.target.name;
  linkDownloads();
  await showText();
}

function markSelected() {
  for (const button of $("targets").querySelectorAll("button")) {
    button.classList.toggle("selected", state.answer !== null ?
      button.dataset.answer === state.answer :
      button.dataset.id === String(state.target) && !button.dataset.answer);
  }
}

function linkDownloads() {
  const chosen = params({target: state.target, forced: state.forced});
  $("download-figure").href = `/api/figure.png?${chosen}`;
  $("download-record").href = `/api/record.json?${chosen}`;
}

async function showText() {
  clearTimeout(state.textTimer);
  const section = $("text-section");
  section.classList.toggle("hidden", !$("text-toggle").checked);
  if (!$("text-toggle").checked || state.target === null) return;
  const box = $("text");
  const asked = params({target: state.target}).toString();
  let result;
  try {
    result = await call(`/api/text?${asked}`);
  } catch (err) {
    box.textContent = err.message;
    return;
  }
  if (asked !== params({target: state.target}).toString()) return;  // chosen again meanwhile
  if (result.status === "pending") {
    box.textContent = result.message;
    state.textTimer = setTimeout(() => showText(), 1500);
    return;
  }
  box.innerHTML = "";
  const sentence = document.createElement("p");
  sentence.id = "text-sentence";
  sentence.textContent = `${result.sentence} (${result.method}, layer ${result.layer})`;
  box.append(sentence);
  for (const [title, units] of [["for", result.persuasive], ["against", result.inhibitive]]) {
    const list = document.createElement("ul");
    list.className = `units-${title}`;
    for (const unit of units) {
      const item = document.createElement("li");
      item.textContent = `${title}: unit ${unit.unit}, ${unit.name}` +
        (unit.named ? ` (IoU ${unit.iou.toFixed(2)})` : "") + `, alpha ${unit.alpha.toExponential(2)}`;
      list.append(item);
    }
    box.append(list);
  }
}

async function upload(file) {
  const limit = state.config.max_upload;
  if (file.size > limit) {
    throw new Error(`${file.name} is larger than the upload limit of ${limit / 2 ** 20} MB`);
  }
  const picked = await call(`/api/images?name=${encodeURIComponent(file.name)}`,
    {method: "POST", body: file});
  await pick(picked);
}

async function start() {
  state.config = await call("/api/config");
  for (const method of state.config.methods) {
    const option = document.createElement("option");
    option.value = method;
    option.textContent = method;
    $("method").append(option);
  }
  for (const name of state.config.samples) {
    const button = document.createElement("button");
    button.id = `sample-${name}`;
    button.textContent = name === "scene" ? "new ShapesWorld scene" : name;
    button.addEventListener("click", () => guarded(async () =>
      pick(await call(`/api/samples/${name}`, {method: "POST"}))));
    $("samples").append(button);
  }
  for (const button of document.querySelectorAll(".tabs button")) {
    button.addEventListener("click", () => guarded(async () => {
      setTask(button.dataset.task);
      await analyze();
    }));
  }
  $("method").addEventListener("change", () => guarded(() => {
    const method = $("method").value;
    return analyze(state.config.slow_methods.includes(method) ? `${method} forwards an edited ` +
      "copy of the image per channel or window: on a CPU this can take a minute" : null);
  }));
  $("layer").addEventListener("change", () => guarded(() => analyze()));
  $("text-toggle").addEventListener("change", () => guarded(showText));
  $("upload").addEventListener("change", (event) => guarded(async () => {
    const file = event.target.files[0];
    event.target.value = "";
    if (file) await upload(file);
  }));
  $("caption-go").addEventListener("click", () => guarded(async () => {
    state.caption = $("caption-text").value.trim() || null;
    await analyze();
  }));
  $("caption-generated").addEventListener("click", () => guarded(async () => {
    state.caption = null;
    $("caption-text").value = "";
    await analyze();
  }));
  $("ask").addEventListener("click", () => guarded(async () => {
    state.question = $("question").value.trim();
    state.forced = [];
    await analyze();
  }));
  $("force").addEventListener("click", () => guarded(async () => {
    const answer = $("force-answer").value.trim();
    if (!answer) throw new Error("type an answer to force");
    await explain(null, answer);  // an answer the model cannot give stops here, said
    if (!state.forced.includes(answer)) {
      state.forced.push(answer);
      addTarget(null, answer, null, answer);
      markSelected();
      linkDownloads();
    }
  }));
  setTask("classify");
  await pick(await call("/api/samples/chelsea", {method: "POST"}));
}

guarded(start);
