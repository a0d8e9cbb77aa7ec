// diarkit review: the page. No framework, nothing loaded from elsewhere.
//
// The page keeps the list of edits; the server replays it over the original result
// (POST api/preview) and answers with the corrected result, which the page draws.
// Undo drops the last edit, redo puts it back; save sends the list (POST api/save).
// Words are named by their position in the result's word list, which no edit changes.
"use strict";
(() => {
  const $ = (selector) => document.querySelector(selector);
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
                   "#e377c2", "#5f6b7a", "#a0a21d", "#3b4cc0", "#b0306b"];
  const LOW_SCORE = 0.3;       // words the aligner was unsure of get a dotted underline
  const MAX_PPS = 400;         // zoom limit, pixels per second
  const TICK_GAP = 90;         // at least this many pixels between ruler ticks

  const state = {
    session: null, original: null, result: null,
    words: [], starts: null, segStart: [],       // flat word list, their starts, first word of each segment
    edits: [], redo: [], savedKey: "[]", busy: false,
    order: [], colors: new Map(),                // speaker labels in panel order, and their colors
    sel: null,                                   // {a: anchor word, b: other end}
    cur: -1, pps: 0, duration: 1,
  };
  let player, wordEls = [], segEls = [];

  // ---------- helpers ----------
  const esc = (text) => String(text).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  function fmt(t, precise = true) {
    t = Math.max(0, t);
    const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = t % 60;
    const ss = precise ? s.toFixed(1).padStart(4, "0") : String(Math.floor(s)).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
  }
  function setStatus(text, kind = "") {
    const el = $("#status");
    el.textContent = text;
    el.className = kind;
  }
  async function post(url, body) {
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" },
                                   body: JSON.stringify(body) });
    let data = null;
    try { data = await res.json(); } catch (e) { data = { detail: `${res.status} ${res.statusText}` }; }
    return { ok: res.ok, data };
  }
  const range = () => state.sel ? [Math.min(state.sel.a, state.sel.b), Math.max(state.sel.a, state.sel.b)] : null;
  const segmentOf = (word) => {         // index of the segment holding a word (binary search)
    let lo = 0, hi = state.segStart.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (state.segStart[mid] <= word) lo = mid; else hi = mid - 1; }
    return lo;
  };
  const wordText = (first, last) => {
    const text = state.words.slice(first, last + 1).map((w) => w.word).join(" ");
    return text.length > 40 ? `“${text.slice(0, 38)}…”` : `“${text}”`;
  };

  // Speaker order and colors follow the edits: a renamed speaker keeps its place and color,
  // a new one gets the next color. Replayed from the list, so undo gives them back too.
  function replayLabels(edits) {
    const order = state.original.speakers.map((s) => s.label);
    const colors = new Map(order.map((label, i) => [label, PALETTE[i % PALETTE.length]]));
    let next = order.length;
    for (const e of edits) {
      if (e.op === "rename") {
        const i = order.indexOf(e.speaker);
        if (i >= 0) order[i] = e.name; else order.push(e.name);
        colors.set(e.name, colors.get(e.speaker) || PALETTE[next++ % PALETTE.length]);
      } else if (e.op === "move" && !colors.has(e.speaker)) {
        order.push(e.speaker);
        colors.set(e.speaker, PALETTE[next++ % PALETTE.length]);
      }
    }
    return { order, colors };
  }
  const colorOf = (label) => state.colors.get(label) || "#888";

  // ---------- drawing ----------
  function unpack(view) {
    // the server sends words as [word, start, end, score] and turns as [start, end, speaker]
    for (const seg of view.segments) {
      seg.words = seg.words.map((w) => ({ word: w[0], start: w[1], end: w[2], score: w[3], speaker: seg.speaker }));
    }
    view.diarization = view.diarization.map((t) => ({ start: t[0], end: t[1], speaker: t[2] }));
    return view;
  }

  function setResult(view, progressive = false) {
    const result = unpack(view);
    state.result = result;
    state.duration = Math.max(result.duration || 0, ...result.segments.map((s) => s.end), 1);
    state.words = [];
    state.segStart = [];
    for (const seg of result.segments) {
      state.segStart.push(state.words.length);
      for (const w of seg.words) state.words.push(w);
    }
    state.starts = Float64Array.from(state.words, (w) => w.start);
    const labels = replayLabels(state.edits);
    const present = new Set(result.speakers.map((s) => s.label));
    state.order = labels.order.filter((l) => present.has(l)).concat(
      [...present].filter((l) => !labels.order.includes(l)));
    state.colors = labels.colors;
    if (state.sel && Math.max(state.sel.a, state.sel.b) >= state.words.length) state.sel = null;
    drawSpeakers();
    drawTranscript(progressive);
    drawTimeline();
    state.cur = -1;
    tick(false);
    updateButtons();
  }

  function drawSpeakers() {
    const stats = new Map(state.result.speakers.map((s) => [s.label, s]));
    $("#speakers tbody").innerHTML = state.order.map((label, i) => {
      const s = stats.get(label) || { speaking_time: 0, words: 0 };
      return `<tr data-label="${esc(label)}" data-k="${i}"><td class="num">${i < 9 ? i + 1 : ""}</td>` +
        `<td><span class="chip" style="--c:${colorOf(label)}">${esc(label)}</span></td>` +
        `<td class="stats">${s.speaking_time.toFixed(1)} s · ${s.words} words</td>` +
        `<td><button data-act="rename" data-k="${i}">Rename…</button> ` +
        `<button data-act="merge" data-k="${i}" ${state.order.length < 2 ? "disabled" : ""}>Merge…</button></td></tr>`;
    }).join("");
  }

  // The first screenful is drawn at once; on the first load of a long result the rest
  // follows in chunks, so the page paints in well under a second for an hour of speech.
  const FIRST_SEGMENTS = 120, CHUNK_SEGMENTS = 400;
  let drawing = 0;

  function drawTranscript(progressive = false) {
    const box = $("#transcript");
    const scroll = box.scrollTop;
    const html = [];
    let i = 0;
    state.result.segments.forEach((seg, si) => {
      const parts = [`<div class="seg" data-s="${si}"><div class="seg-head">` +
        `<button class="chip" data-s="${si}" style="--c:${colorOf(seg.speaker)}" title="select this segment">` +
        `${esc(seg.speaker ?? "UNKNOWN")}</button><span class="time">${fmt(seg.start)} – ${fmt(seg.end)}</span>` +
        `</div><p class="words">`];
      for (const w of seg.words) {
        const low = w.score != null && w.score < LOW_SCORE ? " low" : "";
        parts.push(`<span class="w${low}" data-i="${i}">${esc(w.word)}</span> `);
        i++;
      }
      parts.push("</p></div>");
      html.push(parts.join(""));
    });
    const token = ++drawing;
    const collect = () => {
      wordEls = box.querySelectorAll(".w");
      segEls = box.querySelectorAll(".seg");
      paintSelection(null);
      if (segEls.length === html.length) document.body.dataset.complete = String(Math.round(performance.now()));
    };
    let next = progressive ? Math.min(FIRST_SEGMENTS, html.length) : html.length;
    box.innerHTML = html.slice(0, next).join("");
    box.scrollTop = scroll;
    collect();
    const more = () => {
      if (token !== drawing || next >= html.length) return;  // an edit redrew everything meanwhile
      box.insertAdjacentHTML("beforeend", html.slice(next, next + CHUNK_SEGMENTS).join(""));
      next += CHUNK_SEGMENTS;
      collect();
      setTimeout(more, 0);
    };
    if (next < html.length) setTimeout(more, 0);
  }

  function overlaps(turns) {
    // stretches where two or more turns run at once (sweep over start/end events)
    const events = [];
    for (const t of turns) { events.push([t.start, 1]); events.push([t.end, -1]); }
    events.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    const out = [];
    let depth = 0, from = 0;
    for (const [time, step] of events) {
      if (depth < 2 && depth + step >= 2) from = time;
      if (depth >= 2 && depth + step < 2 && time > from) out.push({ start: from, end: time });
      depth += step;
    }
    return out;
  }

  function drawTimeline() {
    const d = state.duration;
    const bar = (t, cls = "bar") =>
      `<div class="${cls}" style="left:${(100 * t.start / d).toFixed(4)}%;width:${(100 * (t.end - t.start) / d).toFixed(4)}%" ` +
      `title="${fmt(t.start)} – ${fmt(t.end)}"></div>`;
    const byLabel = new Map(state.order.map((l) => [l, []]));
    for (const t of state.result.diarization) {
      if (!byLabel.has(t.speaker)) byLabel.set(t.speaker, []);
      byLabel.get(t.speaker).push(t);
    }
    const rows = [`<div class="lane overlap" data-lane="overlap">${overlaps(state.result.diarization).map((t) => bar(t)).join("")}</div>`];
    const labels = ['<div class="muted">overlap</div>'];
    for (const [label, turns] of byLabel) {
      rows.push(`<div class="lane" data-lane="${esc(label)}" style="--c:${colorOf(label)}">${turns.map((t) => bar(t)).join("")}</div>`);
      labels.push(`<div><span class="chip" style="--c:${colorOf(label)}">${esc(label)}</span></div>`);
    }
    $("#lane-rows").innerHTML = rows.join("");
    $("#lane-labels").innerHTML = labels.join("");
    if (!state.pps) state.pps = fitPps();
    layoutTrack();
  }

  const fitPps = () => Math.max(1e-3, ($("#lanes").clientWidth - 2) / state.duration);

  function layoutTrack() {
    const width = state.duration * state.pps;
    $("#track").style.width = `${width}px`;
    let step = 1;
    for (const s of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200]) {
      step = s;
      if (s * state.pps >= TICK_GAP) break;
    }
    const ticks = [];
    for (let t = 0; t < state.duration; t += step) {
      ticks.push(`<span style="left:${(t * state.pps).toFixed(1)}px">${fmt(t, false)}</span>`);
    }
    $("#ruler").innerHTML = ticks.join("");
  }

  function zoom(factor) {
    const lanes = $("#lanes");
    const t = player ? player.currentTime : 0;
    const offset = t * state.pps - lanes.scrollLeft;   // keep the playhead where it is on screen
    const fit = fitPps();
    state.pps = factor === 0 ? fit : Math.min(MAX_PPS, Math.max(fit, state.pps * factor));
    layoutTrack();
    const inView = offset >= 0 && offset <= lanes.clientWidth ? offset : lanes.clientWidth / 3;
    lanes.scrollLeft = t * state.pps - inView;
  }

  function paintSelection(previous) {
    if (previous) for (let i = previous[0]; i <= previous[1]; i++) wordEls[i]?.classList.remove("sel");
    const r = range();
    if (r) for (let i = r[0]; i <= r[1]; i++) wordEls[i]?.classList.add("sel");
    updateButtons();
  }

  function select(a, b = a) {
    const previous = range();
    state.sel = a == null ? null : { a, b };
    paintSelection(previous);
  }

  function updateButtons() {
    const idle = !state.busy && state.result;
    $("#btn-undo").disabled = !idle || !state.edits.length;
    $("#btn-redo").disabled = !idle || !state.redo.length;
    $("#btn-move").disabled = !idle || !state.sel;
    $("#btn-split").disabled = !idle || !state.sel;
    $("#btn-rename").disabled = !idle || !state.sel;
    $("#btn-save").disabled = !idle;
    document.body.dataset.edits = String(state.edits.length);
    document.body.dataset.dirty = String(JSON.stringify(state.edits) !== state.savedKey);
  }

  // ---------- playback sync ----------
  function wordAt(t) {
    const s = state.starts;
    let lo = 0, hi = s.length - 1, found = -1;
    while (lo <= hi) { const mid = (lo + hi) >> 1; if (s[mid] <= t) { found = mid; lo = mid + 1; } else hi = mid - 1; }
    if (found >= 0 && t > state.words[found].end + 0.25) return -1;   // a pause after the word
    return found;
  }

  function tick(scroll) {
    if (!player) return;
    const t = player.currentTime || 0;
    $("#playhead").style.left = `${(100 * t / state.duration).toFixed(4)}%`;
    $("#clock").textContent = `${fmt(t)} / ${fmt(state.duration)}`;
    const follow = $("#follow").checked;
    const lanes = $("#lanes");
    const x = t * state.pps;
    if (follow && (scroll || !player.paused) && (x < lanes.scrollLeft || x > lanes.scrollLeft + lanes.clientWidth - 8)) {
      lanes.scrollLeft = x - lanes.clientWidth * 0.1;
    }
    const cur = wordAt(t + 1e-3);
    if (cur !== state.cur) {
      if (state.cur >= 0) {
        wordEls[state.cur]?.classList.remove("cur");
        segEls[segmentOf(state.cur)]?.classList.remove("active");
      }
      state.cur = cur;
      const seg = cur >= 0 ? segEls[segmentOf(cur)] : null;
      if (seg) {  // (null while the rest of a long transcript is still being drawn)
        wordEls[cur].classList.add("cur");
        seg.classList.add("active");
        if (follow && (scroll || !player.paused)) {
          const box = $("#transcript").getBoundingClientRect(), r = seg.getBoundingClientRect();
          if (r.top < box.top || r.bottom > box.bottom) $("#transcript").scrollTop += r.top - box.top - box.height / 3;
        }
      }
      document.body.dataset.current = String(cur);
    }
  }

  function seek(t) {
    player.currentTime = Math.max(0, Math.min(t, state.duration));
    tick(true);
  }

  function loop() {
    tick(false);
    if (!player.paused) requestAnimationFrame(loop);
  }

  function makePlayer(media) {
    player = document.createElement(media.video ? "video" : "audio");
    player.id = "player";
    player.controls = true;
    player.preload = "auto";
    player.src = media.url;
    player.addEventListener("play", () => requestAnimationFrame(loop));
    for (const name of ["timeupdate", "seeked", "loadedmetadata"]) player.addEventListener(name, () => tick(false));
    player.addEventListener("error", () => setStatus(
      `This browser cannot play ${media.name} (${media.type}): convert it, e.g. ffmpeg -i ${media.name} review.m4a`, "error"));
    $("#player-box").appendChild(player);
  }

  // ---------- edits ----------
  function describe(e) {
    switch (e.op) {
      case "rename": return `renamed ${e.speaker} to ${e.name}`;
      case "merge": return `merged ${e.source} into ${e.target}`;
      case "move": return `moved ${wordText(e.first, e.last)} to ${e.speaker}`;
      case "split": return `split before ${wordText(e.word, e.word)}`;
      default: return e.op;
    }
  }

  async function preview(edits, message) {
    state.busy = true;
    updateButtons();
    setStatus("…");
    try {
      const { ok, data } = await post("api/preview", { edits });
      if (!ok) { setStatus(data.detail || data.error, "error"); return false; }
      state.edits = edits;
      setResult(data.result);
      setStatus(message);
      return true;
    } catch (err) {
      setStatus("No answer from the review server: is diarkit review still running?", "error");
      return false;
    } finally {
      state.busy = false;
      updateButtons();
    }
  }

  async function commit(edit) {
    if (state.busy) return false;
    edit.at = new Date().toISOString();
    const ok = await preview(state.edits.concat([edit]), describe(edit));
    if (ok) state.redo = [];
    updateButtons();
    return ok;
  }

  async function undo() {
    if (state.busy || !state.edits.length) return;
    const last = state.edits[state.edits.length - 1];
    if (await preview(state.edits.slice(0, -1), `undone: ${describe(last)}`)) { state.redo.push(last); updateButtons(); }
  }

  async function redo() {
    if (state.busy || !state.redo.length) return;
    const edit = state.redo[state.redo.length - 1];
    if (await preview(state.edits.concat([edit]), `redone: ${describe(edit)}`)) { state.redo.pop(); updateButtons(); }
  }

  async function save() {
    if (state.busy) return;
    state.busy = true;
    updateButtons();
    setStatus("saving…");
    try {
      const { ok, data } = await post("api/save", { edits: state.edits });
      if (!ok) { setStatus(`not saved: ${data.detail || data.error}`, "error"); return; }
      state.savedKey = JSON.stringify(state.edits);
      setStatus(`saved ${data.files.join(", ")} (${data.edits} edit${data.edits === 1 ? "" : "s"})`, "ok");
      document.body.dataset.saves = String(Number(document.body.dataset.saves || 0) + 1);
    } catch (err) {
      setStatus("not saved: no answer from the review server (is diarkit review still running?)", "error");
    } finally {
      state.busy = false;
      updateButtons();
    }
  }

  async function moveSelection(label) {
    const r = range();
    if (!r || !label) return;
    if (await commit({ op: "move", first: r[0], last: r[1], speaker: label })) select(null);
  }

  function splitSelection() {
    const r = range();
    if (!r) return;
    if (state.segStart[segmentOf(r[0])] === r[0]) {
      setStatus("That word already starts its segment: select the word the new segment should start with.", "error");
      return;
    }
    commit({ op: "split", word: r[0] });
  }

  // ---------- dialogs ----------
  function ask(dialog, setup, onOk) {
    setup();
    dialog.returnValue = "";
    dialog.onclose = () => { if (dialog.returnValue && dialog.returnValue !== "cancel") onOk(dialog.returnValue); };
    dialog.showModal();
  }

  function openMove() {
    const r = range();
    if (!r || state.busy) return;
    const dialog = $("#dlg-move");
    ask(dialog, () => {
      $("#move-what").textContent = wordText(r[0], r[1]);
      $("#move-choices").innerHTML = state.order.map((label, i) =>
        `<button value="spk:${esc(label)}" data-label="${esc(label)}"><span class="muted small">${i < 9 ? i + 1 : ""}</span>` +
        `<span class="chip" style="--c:${colorOf(label)}">${esc(label)}</span></button>`).join("");
      $("#move-new").value = "";
    }, (value) => {
      if (value.startsWith("spk:")) moveSelection(value.slice(4));
      else if (value === "ok") moveSelection($("#move-new").value.trim());
    });
  }

  function openRename(label) {
    if (!label || state.busy) return;
    ask($("#dlg-rename"), () => {
      $("#rename-what").textContent = label;
      $("#rename-name").value = label;
      $("#rename-name").select();
    }, () => {
      const name = $("#rename-name").value.trim();
      if (name && name !== label) commit({ op: "rename", speaker: label, name });
    });
  }

  function openMerge(label) {
    if (!label || state.busy) return;
    ask($("#dlg-merge"), () => {
      $("#merge-what").textContent = label;
      $("#merge-target").innerHTML = state.order.filter((l) => l !== label)
        .map((l) => `<option value="${esc(l)}">${esc(l)}</option>`).join("");
    }, () => {
      const target = $("#merge-target").value;
      if (target) commit({ op: "merge", source: label, target });
    });
  }

  // Enter in a text field confirms (the form's first button would otherwise be the default)
  for (const [input, dialog] of [["#move-new", "#dlg-move"], ["#rename-name", "#dlg-rename"]]) {
    $(input).addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); $(dialog).close("ok"); }
    });
  }

  // ---------- input ----------
  function wire() {
    // Shift+click extends the word selection; keep the browser from selecting text as well
    $("#transcript").addEventListener("mousedown", (e) => { if (e.shiftKey) e.preventDefault(); });
    $("#transcript").addEventListener("click", (e) => {
      const word = e.target.closest(".w");
      if (word) {
        const i = Number(word.dataset.i);
        if (e.shiftKey && state.sel) select(state.sel.a, i);
        else { select(i); seek(state.words[i].start); }
        return;
      }
      const chip = e.target.closest(".seg-head .chip");
      if (chip) {
        const si = Number(chip.dataset.s);
        const first = state.segStart[si];
        select(first, first + state.result.segments[si].words.length - 1);
        chip.blur();
      }
    });
    $("#speakers").addEventListener("click", (e) => {
      const button = e.target.closest("button[data-act]");
      if (!button) return;
      const label = state.order[Number(button.dataset.k)];
      button.blur();
      if (button.dataset.act === "rename") openRename(label);
      else openMerge(label);
    });
    $("#track").addEventListener("click", (e) => {
      const box = $("#track").getBoundingClientRect();
      seek((e.clientX - box.left) / box.width * state.duration);
    });
    $("#lanes").addEventListener("wheel", (e) => {
      if (!e.ctrlKey) return;
      e.preventDefault();
      zoom(e.deltaY < 0 ? 1.25 : 0.8);
    }, { passive: false });
    const click = (id, fn) => $(id).addEventListener("click", (e) => { e.currentTarget.blur(); fn(); });
    click("#btn-undo", undo);
    click("#btn-redo", redo);
    click("#btn-save", save);
    click("#btn-move", openMove);
    click("#btn-split", splitSelection);
    click("#btn-rename", () => { const r = range(); if (r) openRename(state.words[r[0]].speaker); });
    click("#zoom-in", () => zoom(2));
    click("#zoom-out", () => zoom(0.5));
    click("#zoom-fit", () => zoom(0));
    window.addEventListener("resize", () => { if (state.pps <= fitPps() * 1.01) { state.pps = 0; zoom(0); } });
    window.addEventListener("beforeunload", (e) => {
      if (JSON.stringify(state.edits) !== state.savedKey) { e.preventDefault(); e.returnValue = ""; }
    });
    document.addEventListener("keydown", onKey);
  }

  function onKey(e) {
    if (document.querySelector("dialog[open]")) return;
    const target = e.target;
    if (target.closest && target.closest("input, select, textarea")) return;
    const mod = e.ctrlKey || e.metaKey;
    const key = e.key.toLowerCase();
    if (mod && key === "z") { e.preventDefault(); if (e.shiftKey) redo(); else undo(); return; }
    if (mod && key === "y") { e.preventDefault(); redo(); return; }
    if (mod && key === "s") { e.preventDefault(); save(); return; }
    if (mod || e.altKey) return;
    const onPlayer = target === player;
    if (e.key === " " && !onPlayer) { e.preventDefault(); if (player.paused) player.play(); else player.pause(); }
    else if (e.key === "ArrowLeft" && !onPlayer) { e.preventDefault(); seek(player.currentTime - 2); }
    else if (e.key === "ArrowRight" && !onPlayer) { e.preventDefault(); seek(player.currentTime + 2); }
    else if (/^[1-9]$/.test(e.key) && state.sel) { const label = state.order[Number(e.key) - 1]; if (label) moveSelection(label); }
    else if (key === "m") { e.preventDefault(); openMove(); }
    else if (key === "s") splitSelection();
    else if (key === "r") { const r = range(); if (r) { e.preventDefault(); openRename(state.words[r[0]].speaker); } }
    else if (e.key === "Escape") select(null);
    else if (e.key === "+" || e.key === "=") zoom(2);
    else if (e.key === "-") zoom(0.5);
  }

  // ---------- start ----------
  async function start() {
    try {
      const res = await fetch("api/session");
      if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
      state.session = await res.json();
      performance.mark("diarkit-fetched");
    } catch (err) {
      setStatus(`Could not load the result: ${err.message}`, "error");
      return;
    }
    state.original = state.session.result;  // only its speaker list is read (for labels and colors)
    document.title = `diarkit review: ${state.session.name}`;
    $("#file-name").textContent = `${state.session.name} · ${state.session.media.name}`;
    makePlayer(state.session.media);
    wire();
    setResult(state.original, true);
    setStatus(`${state.words.length} words, ${state.result.segments.length} segments, ` +
              `${state.order.length} speakers; saves to ${state.session.output.stem}.*`);
    performance.mark("diarkit-ready");
    document.body.dataset.ready = String(Math.round(performance.now()));
    requestAnimationFrame(() => requestAnimationFrame(() => {
      performance.mark("diarkit-painted");
      document.body.dataset.painted = String(Math.round(performance.now()));
    }));
  }

  start();
})();
