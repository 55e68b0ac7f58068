// Spot checks: a person's accept / reject and note per episode, kept in this browser (localStorage, one entry
// per run, so they survive a reload and a rewritten report), downloaded as a case folder's cases.csv that
// `python main.py judges calibrate --cases DIR` reads as it is, and set against the judges' decisions per category.
"use strict";
window.DittoLabels = (function () {
  const key = "ditto-labels:" + window.DITTO_INDEX.run;
  const listeners = [];
  let stored = true;
  let labels = {};
  try {
    labels = JSON.parse(window.localStorage.getItem(key) || "{}");
  } catch (err) {
    stored = false;  // storage refused (a private window's policy): labels live as long as the page
  }

  function save() {
    if (stored) {
      try {
        window.localStorage.setItem(key, JSON.stringify(labels));
      } catch (err) {
        stored = false;
      }
    }
    listeners.forEach((listener) => listener());
  }

  // A file of the run as cases.csv names it: absolute when the report is opened from disk (the page's own
  // location says where the run's files are, wherever the csv is saved); served over HTTP, relative to the
  // report folder, and the csv must be saved there.
  function casePath(relative) {
    if (!relative) return "";
    const url = new URL(relative, window.location.href);
    return url.protocol === "file:" ? decodeURIComponent(url.pathname) : relative;
  }

  // A cell as a spreadsheet shows it as text (a leading = + - @ gets an apostrophe, as every CSV we write), quoted
  // where it holds a comma, a quote or a line break.
  function cell(value) {
    let text = String(value === null || value === undefined ? "" : value);
    if (/^[=+\-@\t\r]/.test(text)) text = "'" + text;
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  const COLUMNS = ["source", "edited", "instruction", "category", "label", "note", "edited_keyframe", "target_description"];

  function casesCsv() {
    const rows = Object.values(labels).filter((l) => l.label).map((l) => [
      casePath(l.source), casePath(l.edited), l.instruction, l.category, l.label, l.note, casePath(l.edited_keyframe),
      l.target_description,
    ]);
    return [COLUMNS, ...rows].map((row) => row.map(cell).join(",")).join("\r\n") + "\r\n";
  }

  // What the judges decided: accept, reject, or null when no judge decided (a clip the pre-filter refused, a
  // step that failed).
  function judged(episode) {
    if (episode.status === "accepted") return "accept";
    return /^(keyframe|video)_judge:/.test(episode.reason || "") ? "reject" : null;
  }

  function agreement(index) {
    const byCategory = {};
    const add = (name, judges, label) => {
      const row = (byCategory[name] = byCategory[name] || { name: name, labelled: 0, agree: 0, acceptedRejects: 0, rejectedAccepts: 0 });
      row.labelled += 1;
      if (judges === label) row.agree += 1;
      else if (judges === "accept") row.acceptedRejects += 1;
      else row.rejectedAccepts += 1;
    };
    for (const e of index) {
      const label = labels[e.id] && labels[e.id].label;
      const judges = judged(e);
      if (!label || !judges) continue;
      add(e.category || "none", judges, label);
      add("all", judges, label);
    }
    const all = byCategory.all;
    delete byCategory.all;
    return Object.values(byCategory).sort((a, b) => a.name.localeCompare(b.name)).concat(all ? [all] : []);
  }

  return {
    stored: () => stored,
    get: (id) => labels[id] || null,
    // fields: label ("accept", "reject" or ""), note, and the case (source, edited, edited_keyframe, instruction,
    // category, target_description) as the report shows it
    set(id, fields) {
      const next = Object.assign({}, labels[id] || {}, fields);
      if (!next.label && !next.note) delete labels[id];
      else labels[id] = next;
      save();
    },
    count: (label) => Object.values(labels).filter((l) => (label ? l.label === label : l.label)).length,
    casesCsv: casesCsv,
    agreement: agreement,
    onChange: (listener) => listeners.push(listener),
  };
})();
