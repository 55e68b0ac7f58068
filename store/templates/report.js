// The episode list of a Ditto report: filters, sorting and pages over data/index.js; an episode's details
// come from data/detail-NNNNN.js when its page is shown, and its videos load when they scroll into view.
// Everything a model wrote is set as text (textContent), never parsed as HTML.
"use strict";
(function () {
  const PAGE = 50;
  const index = window.DITTO_INDEX.episodes;
  const thresholds = window.DITTO_INDEX.thresholds;
  const chunks = {};
  const waiting = {};
  let page = 0;
  let renders = 0;

  window.DITTO_CHUNK = function (n, rows) {
    chunks[n] = Object.fromEntries(rows.map((r) => [r.id, r]));
    (waiting[n] || []).forEach((done) => done());
  };

  function loadChunk(n) {
    if (chunks[n]) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const first = !waiting[n];
      (waiting[n] = waiting[n] || []).push(resolve);
      if (!first) return;
      const script = document.createElement("script");
      script.src = "data/detail-" + String(n).padStart(5, "0") + ".js";
      script.onerror = () => reject(new Error("cannot load " + script.src));
      document.head.appendChild(script);
    });
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }

  const $ = (id) => document.getElementById(id);
  const filters = { status: $("f-status"), category: $("f-category"), reason: $("f-reason"), attempts: $("f-attempts") };
  const labels = window.DittoLabels;

  function fillOptions() {
    for (const [key, select] of Object.entries(filters)) {
      const values = [...new Set(index.map((e) => e[key]).filter((v) => v !== null && v !== ""))];
      values.sort((a, b) => (typeof a === "number" ? a - b : String(a).localeCompare(String(b))));
      for (const v of values) select.append(el("option", { value: String(v) }, String(v)));
      select.addEventListener("change", () => { page = 0; render(); });
    }
    $("sort").addEventListener("change", () => { page = 0; render(); });
    $("f-label").addEventListener("change", () => { page = 0; render(); });
    $("prev").addEventListener("click", () => { page -= 1; render(); });
    $("next").addEventListener("click", () => { page += 1; render(); });
  }

  function selected() {
    const wanted = $("f-label").value;
    let rows = index.filter((e) =>
      Object.entries(filters).every(([key, select]) => !select.value || String(e[key]) === select.value) &&
      (!wanted || ((labels.get(e.id) || {}).label || "none") === wanted));
    const sort = $("sort").value;
    if (sort !== "run") {
      const sign = sort === "cost-desc" ? -1 : 1;
      rows = rows.slice().sort((a, b) => sign * (a.cost_s - b.cost_s));
    }
    return rows;
  }

  function verdictTable(v) {
    const limits = thresholds[v.stage] || {};
    const rows = Object.entries(v.scores).map(([name, score]) =>
      el("tr", {}, el("th", {}, name),
        el("td", { class: limits[name] !== undefined && score < limits[name] ? "low" : null }, String(score)),
        el("td", {}, (v.reasons || {})[name] || "")));
    return el("div", { class: "verdict" }, el("div", {}, v.stage + " judge (" + v.judge + ")"), el("table", {}, ...rows));
  }

  function attemptItem(a) {
    return el("li", {},
      el("b", {}, "attempt " + (a.attempt + 1)), a.instruction ? ": " : "", a.instruction ? el("q", {}, a.instruction) : null,
      ...a.verdicts.map(verdictTable),
      a.failure ? el("div", { class: "failure" }, a.failure.node + " failed (" + a.failure.kind + "): " + a.failure.detail) : null,
      a.next ? el("div", { class: "next" }, "next: " + a.next.node + (a.next.why ? ", because " + a.next.why : "")) : null);
  }

  function mediaFigure(kind, src, caption) {
    if (!src) return null;
    const media = kind === "video"
      ? el("video", { "data-src": src, muted: "", loop: "", playsinline: "", controls: "", preload: "none" })
      : el("img", { src: src, loading: "lazy", alt: caption });
    if (kind === "video") media.muted = true;
    return el("figure", {}, media, el("figcaption", {}, caption));
  }

  function syncPair(source, edited) {
    // The edited clip leads; the source follows its play, pause and position.
    edited.addEventListener("play", () => { source.currentTime = edited.currentTime; source.play().catch(() => {}); });
    edited.addEventListener("pause", () => source.pause());
    edited.addEventListener("seeked", () => { source.currentTime = edited.currentTime; });
    edited.addEventListener("timeupdate", () => {
      if (Math.abs(source.currentTime - edited.currentTime) > 0.15) source.currentTime = edited.currentTime;
    });
  }

  // Accept / reject and a note: what this episode's edit should have been, for calibrating the judges.
  function labelBar(e) {
    // A case is a source and its edited video (judges calibrate reads both); an episode stopped before its video
    // has nothing a case could hold.
    if (!e.media.edited) return el("p", { class: "label-bar note" }, "nothing to label: no edited video was made");
    const theCase = () => ({
      source: e.media.source, edited: e.media.edited, edited_keyframe: e.media.keyframe,
      instruction: e.instruction, category: e.category, target_description: e.target_description,
    });
    const buttons = ["accept", "reject"].map((label) =>
      el("button", { type: "button", class: "label " + label, "data-label": label }, label));
    const note = el("input", { type: "text", class: "label-note", placeholder: "note", "aria-label": "note" });
    note.value = (labels.get(e.id) || {}).note || "";
    const show = () => {
      const current = (labels.get(e.id) || {}).label || "";
      buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.label === current)));
    };
    buttons.forEach((b) => b.addEventListener("click", () => {
      const current = (labels.get(e.id) || {}).label || "";
      labels.set(e.id, Object.assign(theCase(), { label: current === b.dataset.label ? "" : b.dataset.label }));
      show();
    }));
    note.addEventListener("change", () => labels.set(e.id, Object.assign(theCase(), { note: note.value })));
    show();
    return el("div", { class: "label-bar" }, el("span", {}, "your label: "), ...buttons, note);
  }

  function card(e) {
    const source = mediaFigure("video", e.media.source, "source");
    const edited = mediaFigure("video", e.media.edited, "edited");
    const keyframe = mediaFigure("img", e.media.keyframe, "edited key frame");
    let play = null;
    if (source && edited) {
      syncPair(source.firstChild, edited.firstChild);
      play = el("button", { type: "button", class: "play" }, "play both");
      play.addEventListener("click", () => { edited.firstChild.currentTime = 0; edited.firstChild.play().catch(() => {}); });
    }
    return el("article", { class: "episode " + e.status, id: e.id, "data-status": e.status },
      el("header", {},
        el("h3", {}, e.id),
        el("span", { class: "badge " + e.status }, e.status),
        el("span", {}, e.category || "no category"),
        el("span", {}, e.clip),
        el("span", {}, e.attempts.length + (e.attempts.length === 1 ? " attempt" : " attempts")),
        el("span", {}, e.cost_s.toFixed(2) + " device-s")),
      e.instruction ? el("p", { class: "instruction" }, e.instruction) : null,
      el("div", { class: "media" }, source, edited, keyframe, play),
      el("ol", { class: "attempts" }, ...e.attempts.map(attemptItem)),
      el("p", { class: "decision" }, "decision: ", el("b", { class: e.status }, e.status),
        e.reason ? " (" + e.reason + ")" : "", e.detail ? ": " + e.detail : ""),
      labelBar(e));
  }

  const loadWhenVisible = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      const video = entry.target;
      loadWhenVisible.unobserve(video);
      video.preload = "auto";
      video.src = video.dataset.src;
    }
  }, { rootMargin: "200px" });

  async function render() {
    const rows = selected();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    page = Math.min(Math.max(page, 0), pages - 1);
    const shown = rows.slice(page * PAGE, (page + 1) * PAGE);
    await Promise.all([...new Set(shown.map((r) => r.chunk))].map(loadChunk));
    $("list").replaceChildren(...shown.map((r) => card(chunks[r.chunk][r.id])));
    $("list").querySelectorAll("video[data-src]").forEach((v) => loadWhenVisible.observe(v));
    $("shown").textContent = rows.length + " of " + index.length + " episodes, page " + (page + 1) + " of " + pages;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
    document.body.dataset.renders = String(++renders);
  }

  // Instructions per clip, least varied first: data/clips.js is loaded the first time the list is opened.
  const CLIP_PAGE = 25;
  let clips = null;
  let clipPage = 0;

  window.DITTO_CLIPS = function (rows) {
    clips = rows;
    renderClips();
  };

  function renderClips() {
    const pages = Math.max(1, Math.ceil(clips.length / CLIP_PAGE));
    clipPage = Math.min(Math.max(clipPage, 0), pages - 1);
    const rows = clips.slice(clipPage * CLIP_PAGE, (clipPage + 1) * CLIP_PAGE).map((c) =>
      el("tr", {},
        el("th", {}, c.clip),
        el("td", {}, c.distinct + " distinct of " + c.instructions.length),
        el("td", {}, el("ol", {}, ...c.instructions.map((i) =>
          el("li", { class: i.status }, i.text, el("span", { class: "note" }, " " + (i.category || "") + ", " + i.status)))))));
    $("clip-list").replaceChildren(el("table", { class: "clips" }, ...rows));
    $("clips-shown").textContent = clips.length + " clips, page " + (clipPage + 1) + " of " + pages;
    $("clips-prev").disabled = clipPage === 0;
    $("clips-next").disabled = clipPage >= pages - 1;
  }

  const clipsBox = $("clips");
  if (clipsBox) {
    clipsBox.addEventListener("toggle", () => {
      if (!clipsBox.open || clips || document.getElementById("clips-data")) return;
      document.head.appendChild(el("script", { id: "clips-data", src: "data/clips.js" }));
    });
    $("clips-prev").addEventListener("click", () => { clipPage -= 1; renderClips(); });
    $("clips-next").addEventListener("click", () => { clipPage += 1; renderClips(); });
  }

  // The labels so far: their count, the download, and the judges' agreement with them per category.
  function showLabels() {
    const n = labels.count();
    $("labels-count").textContent = n + " labelled (" + labels.count("accept") + " accept, " + labels.count("reject") +
      " reject)" + (labels.stored() ? "" : "; this browser keeps no storage for this page: they last until it closes");
    $("download-cases").disabled = n === 0;
    const rows = labels.agreement(index);
    if (!rows.length) { $("agreement").replaceChildren(); return; }
    const pct = (a, b) => (b ? Math.round((100 * a) / b) + "%" : "-");
    $("agreement").replaceChildren(
      el("h3", {}, "The judges against your labels"),
      el("table", { class: "agreement" },
        el("tr", {}, ...["category", "labelled", "agree", "judges accepted, you rejected", "judges rejected, you accepted"]
          .map((h) => el("th", {}, h))),
        ...rows.map((r) => el("tr", { class: r.name === "all" ? "all" : null },
          el("th", {}, r.name), el("td", {}, String(r.labelled)), el("td", {}, r.agree + " (" + pct(r.agree, r.labelled) + ")"),
          el("td", {}, String(r.acceptedRejects)), el("td", {}, String(r.rejectedAccepts))))),
      el("p", { class: "note" }, "Episodes a judge decided (accepted, or discarded by the key-frame or video judge) that you labelled."));
  }

  $("download-cases").addEventListener("click", () => {
    const link = el("a", { href: URL.createObjectURL(new Blob([labels.casesCsv()], { type: "text/csv" })), download: "cases.csv" });
    document.body.append(link);
    link.click();
    link.remove();
  });
  labels.onChange(showLabels);

  fillOptions();
  showLabels();
  render();
})();
