// The CAM studio of the image page: a method picker, target, colormap, opacity and ReLU, and a side-by-side
// grid of maps on one colour scale. Maps come raw from the API and are drawn here, so the colormap and
// opacity redraw without a request; methods and target fetch once per change (stale answers aborted).

import { camQuery, hasNothingPositive } from "../cam-view.js";
import { COLORMAPS } from "../colormaps.js";
import { html } from "../dom.js";
import { decodeMaps, drawColorbar, drawHeatmap, loadImage } from "../maps.js";
import { describeProgress, getJsonFollowed } from "../progress.js";
import { apiUrl } from "../urls.js";

/** `after`: a promise the first request waits for (the page's quick requests, which would otherwise queue
 *  for the model behind a slow method). */
export function mountCamStudio(section, { imageId, model, layer, methods, state, signal, onStateChange,
  after = Promise.resolve() }) {
  const registry = new Map(methods.map((m) => [m.id, m]));
  const reruns = new Set(methods.filter((m) => m.reruns).map((m) => m.id));  // one pass per channel
  const channels = model.layers.find((l) => l.name === layer)?.units;
  section.innerHTML = html`<h2>Where <code>${layer}</code> looks</h2>
    <div class="toolbar cam-controls">
      <label>Target <select name="target"><option value="">top prediction</option>${model.labels.map((label, i) =>
        html`<option value="${i}" ${i === state.target ? "selected" : ""}>${i} · ${label}</option>`)}</select></label>
      <label>Colormap <select name="colormap">${COLORMAPS.map((name) =>
        html`<option value="${name}" ${name === state.colormap ? "selected" : ""}>${name}</option>`)}</select></label>
      <label>Opacity <input type="range" name="opacity" min="0" max="1" step="0.05" value="${state.opacity}"></label>
      <label title="Clamp each map at 0 (as the papers define the CAMs); unticked, the signed map is shown, its minimum at the colormap's low end"><input
        type="checkbox" name="relu" ${state.relu ? "checked" : ""}> ReLU</label>
      <label title="Deletion and insertion AUC (RISE), average drop and increase in confidence (Grad-CAM++), and on images with object masks the pointing game and energy share"><input
        type="checkbox" name="metrics" ${state.metrics ? "checked" : ""}> Faithfulness</label>
    </div>
    <fieldset class="method-picker"><legend class="muted small">Methods</legend>${methods.map((m) => html`
      <label class="chip" title="${m.description}${costNote(m, layer, channels)}"><input type="checkbox" name="method"
        value="${m.id}" ${state.methods.includes(m.id) ? "checked" : ""}>${m.name}${!m.reruns ? ""
        : html`<span class="cost" title="up to one pass per channel (a channel that is all zeros, or whose mask another's repeats, is skipped)">×${channels ?? "c"}</span>`}</label>`)}</fieldset>
    <div class="cam-legend"><span class="small muted legend-low"></span><canvas width="256" height="1" aria-hidden="true"></canvas>
      <span class="small muted">max</span><span class="small muted legend-note"></span></div>
    <p class="cam-status small muted" role="status">…</p>
    <div class="cam-grid"></div>`;

  const grid = section.querySelector(".cam-grid");
  // The image itself, at the size of the maps beside it, for comparison.
  const imageCard = html`<figure class="cam-card image-card"><img alt="the image as ${model.name} sees it"
    src="${apiUrl.imageFile(imageId, model.id)}"><figcaption><b>Image</b>
    <span class="small muted">as the model sees it</span></figcaption></figure>`;
  const status = section.querySelector(".cam-status");
  let answer = null;
  let inflight = null;  // the maps' request
  let scoring = null;  // its metrics' request, which also ends when Faithfulness is unticked
  let timer = null;

  const legend = () => {
    drawColorbar(section.querySelector(".cam-legend canvas"), state.colormap);
    section.querySelector(".legend-low").textContent = state.relu ? "0" : "min";
    section.querySelector(".legend-note").textContent = state.relu
      ? "after ReLU, each map scaled from 0 to its own maximum"
      : "signed maps (ReLU off), each scaled from its own minimum, below zero or not, to its maximum";
  };
  const draw = () => {
    legend();
    if (!answer) return;
    loadImage(apiUrl.imageFile(imageId, model.id)).then((picture) => {
      if (signal.aborted) return;
      for (const shown of answer.maps) {
        const canvas = grid.querySelector(`.cam-card[data-method="${shown.method}"] canvas`);
        if (!canvas) continue;
        const [h, w] = shown.map.shape;
        drawHeatmap(canvas, picture, { h, w, values: decodeMaps(shown.map).values },
          { low: 0, high: 1, colormap: state.colormap, opacity: state.opacity });
        canvas.closest(".cam-card").classList.add("is-drawn");
      }
    }).catch(() => { status.textContent = "The image could not be loaded."; });
  };

  // One map's card, drawn by draw() once its canvas is in the grid.
  const mapCard = (shown, target) => html`<figure class="cam-card" data-method="${shown.method}">
      <canvas width="224" height="224" aria-label="${shown.name} map"></canvas>
      <figcaption><b title="${registry.get(shown.method).reference}">${shown.name}</b>
        <span class="small muted">${formatSeconds(shown.shownSeconds)}</span>
        <span class="small muted">raw ${shown.raw.range.map(formatNumber).join(" … ")}</span>
        <a class="save small" href="#" download="${fileName(imageId, layer, target.class, shown.method)}"
          title="Save this overlay as a PNG">PNG</a>
        <div class="badges"></div></figcaption>${hasNothingPositive(shown, state.relu) ? html`
        <p class="nothing-positive small" role="note">No positive evidence for ${target.label} at this layer: every
          value is at most ${formatNumber(shown.raw.range[1])}, so after ReLU the map is empty. Untick ReLU to see the
          signed map, or pick a deeper layer.</p>` : ""}</figure>`;
  const loadingCard = (id) => html`<figure class="cam-card is-loading" data-method="${id}">
      <canvas width="224" height="224"></canvas><figcaption><b>${registry.get(id).name}</b></figcaption></figure>`;
  // The grid in the methods' order: a map already answered is drawn, the others wait for theirs.
  const showGrid = (maps, target) => {
    const byMethod = new Map(maps.map((shown) => [shown.method, shown]));
    grid.innerHTML = html`${imageCard}${state.methods.map((id) => (byMethod.has(id) ? mapCard(byMethod.get(id), target) : loadingCard(id)))}`;
    grid.querySelectorAll(".nothing-positive").forEach((note) => note.closest(".cam-card").classList.add("is-blank"));
    draw();
  };

  const explained = (body) => {
    status.innerHTML = html`Explaining <b>${body.target.label}</b> (class ${body.target.class},
      ${(body.target.probability * 100).toFixed(1)}%)${body.target.class === body.top.class ? ", the top prediction"
      : html`; the top prediction is ${body.top.label}`} · layer ${body.layer_shape.join(" × ")}`;
  };

  let requested = false;
  let answeredFor = null;  // the target and ReLU of `answer`: its maps stay right while only the methods change
  const fetchMaps = async (continuing = false) => {  // continuing: the slow methods, after the quick maps
    requested = true;
    inflight?.abort();
    scoring?.abort();
    const view = JSON.stringify([state.target, state.relu]);
    // With Faithfulness on, every map is scored again with the new set: no map is kept (nor its badges).
    const kept = answer && answeredFor === view && (continuing || !state.metrics)
      ? answer.maps.filter((shown) => state.methods.includes(shown.method)) : [];
    const missing = state.methods.filter((id) => !kept.some((shown) => shown.method === id));
    // The shared pass's maps take milliseconds, a method that reruns the model per channel seconds to minutes:
    // those are asked for and drawn first, then the others beside them (the next call, with the first kept).
    const first = missing.some((id) => !reruns.has(id)) ? missing.filter((id) => !reruns.has(id)) : missing;
    answer = kept.length ? { ...answer, maps: kept } : null;
    if (!state.methods.length) {
      grid.innerHTML = html`${imageCard}`;
      status.textContent = "Pick at least one method.";
      return;
    }
    showGrid(kept, answer?.target);
    if (!missing.length) {  // a method unticked: nothing to compute
      explained(answer);  // (in place of a "Computing…" of a request this change ended)
      if (state.metrics) fetchMetrics();
      return;
    }
    const controller = new AbortController();
    inflight = controller;
    // A slow method (Score-CAM on a wide layer) shows how far it is, and the seconds count.
    const started = performance.now();
    let progress = null;
    const computing = () => {
      const seconds = Math.floor((performance.now() - started) / 1000);
      status.innerHTML = html`Computing ${first.length} map${first.length > 1 ? "s" : ""}…${
        progressNote(progress)}${seconds ? ` · ${seconds} s` : ""}`;
    };
    computing();
    status.setAttribute("aria-busy", "true");  // screen readers announce the outcome, not every tick
    const ticker = setInterval(computing, 1000);
    let body;
    try {
      body = await getJsonFollowed(apiUrl.cam(imageId, params(first)), {
        signal: controller.signal,
        onProgress: (found) => { progress = found; computing(); },
      });
    } catch (error) {
      if (error.name === "AbortError") return;
      inflight = null;
      grid.innerHTML = html`${imageCard}`;
      answer = null;
      status.innerHTML = html`<span class="error-text">${error.message}</span>`;
      return;
    } finally {
      clearInterval(ticker);
      status.setAttribute("aria-busy", "false");
    }
    inflight = null;
    // A map's time is its own method's plus its share of the pass that captured the layer.
    for (const shown of body.maps) shown.shownSeconds = shown.seconds + body.capture_seconds / body.maps.length;
    // "top prediction" is taken again by each pass: where a near tie flipped it, the kept maps explained another
    // class, and every map is asked for again.
    if (kept.length && answer.target.class !== body.target.class) {
      answer = null;
      return fetchMaps();
    }
    answer = { ...body, maps: [...kept, ...body.maps] };
    answeredFor = view;
    explained(answer);
    showGrid(answer.maps, body.target);
    if (first.length < missing.length) return fetchMaps(true);  // the slow methods, beside the maps drawn
    if (state.metrics) fetchMetrics();
  };

  // The overlay as drawn (colormap, opacity) is what a figure needs; the raw maps are in the JSON twin.
  grid.addEventListener("click", (event) => {
    const link = event.target.closest("a.save");
    if (link) link.href = link.closest(".cam-card").querySelector("canvas").toDataURL("image/png");
  }, { signal });

  // A request ends when a newer one replaces it or when the page goes: one listener for all.
  signal.addEventListener("abort", () => {
    clearTimeout(timer);
    inflight?.abort();
    scoring?.abort();
  }, { once: true });
  const params = (ids = state.methods) => ({ model: model.id, layer, methods: ids.join(","), target: state.target ?? "",
    relu: state.relu ? "" : "false" });

  // Scores need a few forward passes per map: asked for after the maps are drawn, in a second request.
  const fetchMetrics = async () => {
    scoring?.abort();
    const controller = new AbortController();
    scoring = controller;
    const note = document.createElement("span");
    note.className = "metrics-note";
    note.textContent = "Scoring faithfulness…";
    status.append(note);
    try {
      const body = await getJsonFollowed(apiUrl.cam(imageId, { ...params(), metrics: METRICS }), {
        signal: controller.signal,
        onProgress: (found) => { note.innerHTML = html`Scoring faithfulness…${progressNote(found)}`; },
      });
      for (const shown of body.maps) {
        const badges = grid.querySelector(`.cam-card[data-method="${shown.method}"] .badges`);
        if (badges) badges.innerHTML = metricBadges(shown.metrics);
      }
      const truth = body.ground_truth;
      note.textContent = truth.available
        ? `pointing game on the ${truth.label}'s mask (${truth.tolerance} px tolerance)` : `no pointing game: ${truth.reason}`;
    } catch (error) {
      if (error.name !== "AbortError") note.textContent = error.message;
    }
  };

  const changed = ({ refetch, methodsOnly = false }) => {
    onStateChange(camQuery(state));
    if (!refetch) return draw();
    if (!methodsOnly) grid.querySelectorAll(".cam-card").forEach((card) => card.classList.replace("is-drawn", "is-loading"));
    clearTimeout(timer);
    timer = setTimeout(fetchMaps, 250);  // ticking several methods in a row makes one request
  };
  section.querySelector("select[name=target]").addEventListener("change", (e) => {
    state.target = e.target.value === "" ? null : Number(e.target.value);
    changed({ refetch: true });
  }, { signal });
  section.querySelector("input[name=relu]").addEventListener("change", (e) => {
    state.relu = e.target.checked;
    changed({ refetch: true });
  }, { signal });
  section.querySelector("select[name=colormap]").addEventListener("change", (e) => {
    state.colormap = e.target.value;
    changed({ refetch: false });
  }, { signal });
  section.querySelector("input[name=opacity]").addEventListener("input", (e) => {
    state.opacity = Number(e.target.value);
    changed({ refetch: false });
  }, { signal });
  section.querySelector("input[name=metrics]").addEventListener("change", (e) => {
    state.metrics = e.target.checked;
    changed({ refetch: false });
    grid.querySelectorAll(".badges").forEach((badges) => { badges.innerHTML = ""; });
    scoring?.abort();
    status.querySelector(".metrics-note")?.remove();
    if (state.metrics && answer && !inflight) fetchMetrics();  // else scored when the maps come
  }, { signal });
  section.querySelector(".method-picker").addEventListener("change", () => {
    const ticked = [...section.querySelectorAll("input[name=method]:checked")].map((input) => input.value);
    state.methods = methods.map((m) => m.id).filter((id) => ticked.includes(id));  // registry order
    changed({ refetch: true, methodsOnly: true });  // the maps already drawn stay while the new ones compute
  }, { signal });
  legend();
  after.then(() => { if (!requested && !signal.aborted) fetchMaps(); });  // unless a change came first
}

const METRICS = "deletion,insertion,confidence,pointing";

// image-layer-class-method.png, with the characters file systems refuse replaced (`demo:3` -> `demo_3`).
const fileName = (imageId, layer, target, method) =>
  `${imageId}-${layer}-class${target}-${method}.png`.replace(/[^\w.-]+/g, "_");

// " [bar] Score-CAM: 128 of 500 masked images", or nothing while there is nothing worth saying.
function progressNote(progress) {
  const text = progress ? describeProgress(progress) : "";
  if (!text) return "";
  return html` ${progress.total ? html`<progress max="${progress.total}" value="${progress.done}"></progress> ` : ""}${text}`;
}

// Score-CAM and Ablation-CAM run the model (or its layers after this one) once per channel.
function costNote(method, layer, channels) {
  if (!method.reruns) return "";
  return `. Runs ${method.reruns} at most once per channel of ${layer}${channels ? ` (up to ${channels} passes)` : ""}, in batches, after the other maps.`;
}

/** One map's scores as badges, each saying which way is better. */
function metricBadges(scores) {
  const badge = (text, title, tone = "") => html`<span class="metric ${tone}" title="${title}">${text}</span>`;
  const parts = [
    badge(`del ${scores.deletion.auc.toFixed(3)}`, "Deletion AUC (RISE): the target's probability as the most salient pixels are zeroed. Lower is better."),
    badge(`ins ${scores.insertion.auc.toFixed(3)}`, "Insertion AUC (RISE): the probability as they are put back into a blurred image. Higher is better."),
    badge(`drop ${(scores.confidence.drop * 100).toFixed(1)}%`, `Drop in confidence on the image times the map (Grad-CAM++): ${(scores.confidence.original * 100).toFixed(1)}% to ${(scores.confidence.explained * 100).toFixed(1)}%. Lower is better.`),
  ];
  const { original, explained } = scores.confidence;
  if (scores.confidence.increase) {
    parts.push(badge(`conf ↑ ${((explained - original) * 100).toFixed(1)} pts`, `The image times the map raises the class's probability, ${(original * 100).toFixed(1)}% to ${(explained * 100).toFixed(1)}% (Grad-CAM++'s increase in confidence).`, "good"));
  }
  if (scores.pointing) {
    parts.push(badge(scores.pointing.hit ? "hit" : "miss", "Pointing game: whether the map's maximum lies on the object.", scores.pointing.hit ? "good" : "bad"));
    parts.push(badge(`energy ${(scores.pointing.energy_mask * 100).toFixed(0)}%`, `Share of the map's energy on the object's mask (${(scores.pointing.energy_box * 100).toFixed(0)}% in its bounding box). Higher is better.`));
  }
  return html`${parts}`;
}

const formatSeconds = (s) => (s < 1 ? `${Math.max(1, Math.round(s * 1000))} ms` : `${s.toFixed(1)} s`);
const formatNumber = (x) => (Math.abs(x) >= 100 || x === 0 ? x.toFixed(0) : x.toPrecision(2));
