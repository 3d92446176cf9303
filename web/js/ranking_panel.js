// AnimeReward ranking panel: a sidebar tab that lists the preference datasets and their unranked groups,
// shows a group's candidates side by side as looping previews with their reward scores, and saves the
// artist's order (best first) through the /animereward/ routes.
//
// Ranking: click the candidates (or press 1..9) from best to worst; the last one is placed by itself. Drag
// the chips of the order strip to reorder. Enter saves, S skips the group, Backspace undoes, Escape resets the
// order being picked, C clears a saved ranking or skip (the group is unranked again, so the reward's order
// counts), the arrow keys move between groups. When a Collect node waits for a ranking, the panel jumps to its
// group.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const TAB_ID = "animereward-ranking";
const PAGE = 50;
const STYLE_ID = "animereward-ranking-style";
const CSS = `
.ar-panel { display:flex; flex-direction:column; gap:8px; padding:8px; height:100%; overflow:auto;
  font-size:13px; outline:none; box-sizing:border-box; }
.ar-panel:focus-visible { box-shadow: inset 0 0 0 1px var(--p-primary-color, #6ab4ff); }
.ar-row { display:flex; gap:6px; align-items:center; flex-wrap:wrap; }
.ar-panel select, .ar-panel button { font-size:12px; padding:3px 8px; border-radius:4px;
  background:var(--comfy-input-bg, #222); color:var(--input-text, #ddd); border:1px solid var(--border-color, #444); }
.ar-panel button:hover:not(:disabled) { filter:brightness(1.3); cursor:pointer; }
.ar-panel button:disabled { opacity:.45; }
.ar-nav { justify-content:space-between; }
.ar-prompt { color:var(--descrip-text, #aaa); font-style:italic; max-height:4.2em; overflow:hidden; }
.ar-grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(100px, 1fr)); gap:8px; }
.ar-card { position:relative; border:2px solid var(--border-color, #444); border-radius:6px; padding:4px;
  cursor:pointer; background:var(--comfy-menu-bg, #1a1a1a); user-select:none; }
.ar-card.ranked { border-color:var(--p-primary-color, #6ab4ff); }
.ar-card img { width:100%; display:block; border-radius:3px; background:#000; min-height:60px; }
.ar-card .ar-key { position:absolute; top:6px; left:6px; background:rgba(0,0,0,.7); color:#fff;
  border-radius:3px; padding:0 5px; font-weight:bold; }
.ar-card .ar-rank { position:absolute; top:6px; right:6px; background:var(--p-primary-color, #6ab4ff);
  color:#000; border-radius:10px; padding:0 7px; font-weight:bold; }
.ar-card .ar-score { display:flex; justify-content:space-between; margin-top:3px; }
.ar-bar { height:4px; background:#444; border-radius:2px; margin-top:2px; }
.ar-bar > div { height:100%; background:#6ab4ff; border-radius:2px; }
.ar-strip { display:flex; gap:4px; flex-wrap:wrap; min-height:28px; padding:4px;
  border:1px dashed var(--border-color, #555); border-radius:4px; }
.ar-chip { padding:2px 8px; border-radius:10px; background:var(--p-primary-color, #6ab4ff); color:#000;
  cursor:grab; font-weight:bold; }
.ar-chip.pending { background:#555; color:#ccc; font-weight:normal; }
.ar-chip.drop { outline:2px solid #fff; }
.ar-status { min-height:1.3em; color:var(--descrip-text, #aaa); }
.ar-status.error { color:#f66; }
.ar-status.ok { color:#7d7; }
.ar-waiting { background:#5a4a00; color:#fff; border-radius:4px; padding:4px 6px; }
.ar-help { color:var(--descrip-text, #888); font-size:11px; }
`;

const state = {
  datasets: [], dataset: null, unrankedOnly: true,
  groups: [], cursor: null, total: 0, index: 0,
  ranking: [], waiting: null, root: null, status: "", statusKind: "", saving: false,
};

async function getJSON(path) {
  const res = await api.fetchApi(path, { cache: "no-store" });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
  return body;
}

const enc = encodeURIComponent;
const current = () => state.groups[state.index] || null;

function setStatus(text, kind = "") {
  state.status = text; state.statusKind = kind;
  const el = state.root?.querySelector(".ar-status");
  if (el) { el.textContent = text; el.className = `ar-status ${kind}`; }
}

async function loadDatasets() {
  const data = await getJSON("/animereward/datasets");
  state.datasets = data.datasets;
  if (!state.datasets.some((d) => d.name === state.dataset)) state.dataset = state.datasets[0]?.name ?? null;
}

async function loadGroups({ keep = null } = {}) {
  state.groups = []; state.cursor = null; state.total = 0; state.index = 0; state.ranking = [];
  if (!state.dataset) return;
  await loadMore();
  if (keep) {
    let i = state.groups.findIndex((g) => g.group_id === keep);
    while (i < 0 && state.cursor) { await loadMore(); i = state.groups.findIndex((g) => g.group_id === keep); }
    if (i >= 0) state.index = i;
  }
}

async function loadMore() {
  const q = new URLSearchParams({ limit: String(PAGE), unranked: state.unrankedOnly ? "1" : "0" });
  if (state.cursor) q.set("cursor", state.cursor);
  const page = await getJSON(`/animereward/datasets/${enc(state.dataset)}/groups?${q}`);
  state.groups.push(...page.groups);
  state.cursor = page.next_cursor;
  state.total = page.total;
}

async function move(delta) {
  const next = state.index + delta;
  if (next < 0) return;
  if (next >= state.groups.length) {
    if (!state.cursor) return;
    await loadMore();
    if (next >= state.groups.length) return;
  }
  state.index = next;
  state.ranking = [];
  state.status = "";
  render();
}

function toggle(i) {
  const g = current();
  if (!g || i < 0 || i >= g.n) return;
  const at = state.ranking.indexOf(i);
  if (at >= 0) state.ranking.splice(at, 1);
  else state.ranking.push(i);
  if (state.ranking.length === g.n - 1) {  // the last one is placed by itself
    for (let k = 0; k < g.n; k++) if (!state.ranking.includes(k)) state.ranking.push(k);
  }
  state.status = "";
  render();
}

function pending(g) {
  // candidates not ranked yet, in the reward's order (best first)
  const rest = [];
  for (let k = 0; k < g.n; k++) if (!state.ranking.includes(k)) rest.push(k);
  const total = (k) => g.candidates[k]?.total ?? -1;
  return rest.sort((a, b) => total(b) - total(a) || a - b);
}

async function postRanking(g, body, failed) {
  // POST the group's ranking route; the group's metadata as saved, or null after saying why in the status line
  state.saving = true;
  let res, data;
  try {
    res = await api.fetchApi(`/animereward/datasets/${enc(g.dataset)}/groups/${enc(g.group_id)}/ranking`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    data = await res.json().catch(() => ({}));
  } catch (err) {
    setStatus(`${failed}: ${err.message}`, "error");
    return null;
  } finally {
    state.saving = false;
  }
  if (!res.ok) { setStatus(`${failed}: ${data.error || res.status}`, "error"); return null; }
  return data;
}

async function save(skip = false) {
  const g = current();
  if (!g || state.saving) return;
  if (!skip && state.ranking.length !== g.n) {
    setStatus(`Rank all ${g.n} candidates first (click them best to worst, or press 1..${Math.min(g.n, 9)}).`, "error");
    return;
  }
  const data = await postRanking(g, skip ? { skip: true } : { ranking: state.ranking }, "Not saved");
  if (!data) return;
  if (state.waiting && state.waiting.group_id === g.group_id) state.waiting = null;
  const what = skip ? "skipped" : `saved ${state.ranking.join(" > ")}`;
  if (state.unrankedOnly) {
    state.groups.splice(state.index, 1);
    state.total = Math.max(0, state.total - 1);
    if (state.index >= state.groups.length && state.cursor) await loadMore();
    state.index = Math.min(state.index, Math.max(0, state.groups.length - 1));
  } else {
    state.groups[state.index] = data;
  }
  state.ranking = [];
  render();
  setStatus(`Group ${g.group_id}: ${what}.`, "ok");
}

const isSaved = (g) => Boolean(g && (g.skipped || g.human_ranking));

async function clearSaved() {
  // forget the saved ranking or skip: the group is unranked again and belongs to both views, so it stays listed
  const g = current();
  if (!g || state.saving) return;
  if (!isSaved(g)) {
    setStatus(`Group ${g.group_id} has no saved ranking or skip to clear.`, "error");
    return;
  }
  const was = g.skipped ? "skip" : `ranking ${g.human_ranking.join(" > ")}`;
  const data = await postRanking(g, { clear: true }, "Not cleared");
  if (!data) return;
  const at = state.groups.findIndex((x) => x.dataset === g.dataset && x.group_id === g.group_id);
  if (at >= 0) state.groups[at] = data;
  render();
  setStatus(`Group ${g.group_id}: cleared the ${was}; unranked, the reward's order counts again.`, "ok");
}

function onKey(e) {
  if (e.ctrlKey || e.altKey || e.metaKey || state.saving) return;
  if (e.target instanceof HTMLSelectElement || e.target instanceof HTMLInputElement) return;
  const g = current();
  let handled = true;
  if (/^[1-9]$/.test(e.key)) toggle(Number(e.key) - 1);
  else if (e.key === "Enter") save(false);
  else if (e.key === "s" || e.key === "S") save(true);
  else if (e.key === "c" || e.key === "C") clearSaved();
  else if (e.key === "ArrowRight" || e.key === "ArrowDown") move(1);
  else if (e.key === "ArrowLeft" || e.key === "ArrowUp") move(-1);
  else if (e.key === "Backspace" && g) { state.ranking.pop(); render(); }
  else if (e.key === "Escape" && g) { state.ranking = []; render(); }
  else handled = false;
  if (handled) { e.preventDefault(); e.stopPropagation(); }  // keep ComfyUI's own shortcuts out of it
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

function card(g, i) {
  const c = g.candidates[i] || {};
  const rank = state.ranking.indexOf(i);
  const total = typeof c.total === "number" ? c.total : null;
  const dims = Object.entries(c.scores || {}).filter(([, v]) => typeof v === "number")
    .map(([k, v]) => `${k}: ${v.toFixed(3)}`).join("\n");
  return el("div", { class: `ar-card${rank >= 0 ? " ranked" : ""}`, title: dims || "no reward scores",
                     dataset: { candidate: String(i) }, onclick: () => toggle(i) },
    el("img", { src: api.apiURL(g.previews[i]), alt: `candidate ${i}`, loading: "lazy" }),
    i < 9 ? el("span", { class: "ar-key" }, String(i + 1)) : null,
    rank >= 0 ? el("span", { class: "ar-rank" }, `#${rank + 1}`) : null,
    el("div", { class: "ar-score" }, el("span", {}, `clip ${i}`),
       el("span", {}, total === null ? "–" : `reward ${total.toFixed(3)}`)),
    total === null ? null : el("div", { class: "ar-bar" },
      el("div", { style: `width:${Math.round(Math.max(0, Math.min(1, total)) * 100)}%` })));
}

function strip(g) {
  // the current order: ranked chips first (draggable), then the rest in reward order (greyed)
  const box = el("div", { class: "ar-strip", title: "Drag to reorder (best on the left)" });
  const order = [...state.ranking, ...pending(g)];
  let dragFrom = null;
  order.forEach((k, pos) => {
    const chip = el("span", { class: `ar-chip${pos < state.ranking.length ? "" : " pending"}`, draggable: "true",
                              dataset: { candidate: String(k) } }, `${k + 1}`);
    chip.addEventListener("dragstart", (e) => { dragFrom = pos; e.dataTransfer.setData("text/plain", String(k)); });
    chip.addEventListener("dragover", (e) => { e.preventDefault(); chip.classList.add("drop"); });
    chip.addEventListener("dragleave", () => chip.classList.remove("drop"));
    chip.addEventListener("drop", (e) => {
      e.preventDefault();
      const from = dragFrom ?? order.indexOf(Number(e.dataTransfer.getData("text/plain")));
      if (from < 0 || from === pos) return;
      const next = [...order];
      const [moved] = next.splice(from, 1);
      next.splice(pos, 0, moved);
      // dragging fixes the order up to the drop position (or everything already ranked)
      state.ranking = next.slice(0, Math.max(state.ranking.length, pos + 1, from + 1));
      if (state.ranking.length >= g.n - 1) state.ranking = next;
      state.status = "";
      render();
    });
    box.append(chip);
  });
  return box;
}

function render() {
  const root = state.root;
  if (!root) return;
  const focused = root.contains(document.activeElement) || document.activeElement === root;
  root.replaceChildren();
  const select = el("select", { "aria-label": "dataset", onchange: async (e) => {
    state.dataset = e.target.value; await refresh(); } });
  for (const d of state.datasets) {
    const opt = el("option", { value: d.name }, `${d.name} (${d.groups})`);
    if (d.name === state.dataset) opt.selected = true;
    select.append(opt);
  }
  const only = el("input", { type: "checkbox", id: "ar-unranked", onchange: async (e) => {
    state.unrankedOnly = e.target.checked; await refresh(); } });
  only.checked = state.unrankedOnly;
  root.append(el("div", { class: "ar-row" }, select,
    el("label", { for: "ar-unranked" }, only, " unranked only"),
    el("button", { onclick: () => refresh(), title: "Reload the datasets and groups" }, "Refresh")));
  if (state.waiting) {
    root.append(el("div", { class: "ar-waiting" },
      `A workflow waits for the ranking of ${state.waiting.dataset} / ${state.waiting.group_id}.`));
  }
  const g = current();
  if (!state.datasets.length) {
    root.append(el("div", {}, "No datasets yet: run a workflow with AnimeReward Collect."));
  } else if (!g) {
    root.append(el("div", {}, state.unrankedOnly ? "Every group of this dataset is ranked or skipped." : "No groups."));
  } else {
    const status = g.skipped ? "skipped" : g.human_ranking ? `ranked ${g.human_ranking.join(" > ")}` : "unranked";
    root.append(el("div", { class: "ar-row ar-nav" },
      el("button", { onclick: () => move(-1), disabled: state.index === 0 ? "" : null, title: "Previous (←)" }, "◀"),
      el("span", { class: "ar-pos" }, `group ${state.index + 1} of ${state.total} · ${g.n} candidates · ${status}`),
      el("button", { onclick: () => move(1), title: "Next (→)",
                     ...(state.index + 1 >= state.groups.length && !state.cursor ? { disabled: "" } : {}) }, "▶")));
    if (g.prompt) root.append(el("div", { class: "ar-prompt", title: g.prompt }, g.prompt));
    const grid = el("div", { class: "ar-grid" });
    for (let i = 0; i < g.n; i++) grid.append(card(g, i));
    root.append(grid, el("div", {}, "Order, best first:"), strip(g));
    root.append(el("div", { class: "ar-row" },
      el("button", { class: "ar-save", onclick: () => save(false), title: "Save this order (Enter)" }, "Save ranking"),
      el("button", { class: "ar-skip", onclick: () => save(true), title: "Skip this group (S)" }, "Skip"),
      el("button", { class: "ar-reset", onclick: () => { state.ranking = []; render(); },
                     title: "Reset the order you are picking (Esc)" }, "Reset"),
      isSaved(g) ? el("button", { class: "ar-clear", onclick: () => clearSaved(),
        title: "Forget the saved ranking or skip: the reward's order counts again (C)" }, "Clear") : null));
  }
  root.append(el("div", { class: `ar-status ${state.statusKind}` }, state.status));
  root.append(el("div", { class: "ar-help" },
    "Click or press 1–9 best to worst · drag the chips · Enter save · S skip · C clear saved · ⌫ undo · ← → groups"));
  if (focused) root.focus();
}

async function refresh(keep = null) {
  try {
    await loadDatasets();
    await loadGroups({ keep });
    setStatus("");
  } catch (err) {
    setStatus(`Could not load: ${err.message}`, "error");
  }
  render();
}

function mount(container) {
  if (!document.getElementById(STYLE_ID)) {
    document.head.append(el("style", { id: STYLE_ID }, CSS));
  }
  state.root = el("div", { class: "ar-panel animereward-ranking-panel", tabindex: "0" });
  state.root.addEventListener("keydown", onKey);
  container.append(state.root);
  render();
  state.root.focus();
  refresh(state.waiting?.group_id ?? current()?.group_id ?? null);
}

async function onWaiting(event) {
  const { dataset, group_id: groupId } = event.detail || {};
  if (!dataset || !groupId) return;
  state.waiting = { dataset, group_id: groupId };
  state.dataset = dataset;
  state.unrankedOnly = true;
  if (state.root?.isConnected) await refresh(groupId);
  const sidebar = app.extensionManager?.sidebarTab;
  if (sidebar && sidebar.activeSidebarTabId !== TAB_ID) sidebar.toggleSidebarTab?.(TAB_ID);
}

// The Collect node: where the group went and how big the dataset is, from an `animereward.collect` message
// (not a UI output, which the queue sidebar would list as a file). Shown until the page is reloaded.
const COLLECT_WIDGET = "animereward_collect";
export function collectLines(d) {
  const lines = [`${d.dataset}: ${d.size} group${d.size === 1 ? "" : "s"}`, `stored ${d.group_id} (${d.n} clips)`];
  if (d.status === "ranked") lines.push(`ranked ${d.ranking.split(",").join(" > ")}`);
  else if (d.status !== "stored") lines.push(d.status);
  return lines.concat(d.warnings || []);
}

function showCollect({ detail }) {
  const node = app.graph?.getNodeById?.(Number(detail?.node)) ?? app.graph?.getNodeById?.(detail?.node);
  if (!node || node.type !== "AnimeRewardCollect" || !detail.collect) return;
  node.animerewardCollect = detail.collect;
  node.animerewardCollectLines = collectLines(detail.collect);
  if (!node.widgets?.some((x) => x.name === COLLECT_WIDGET)) {
    node.addCustomWidget({
      name: COLLECT_WIDGET, type: COLLECT_WIDGET, value: null, serialize: false,
      computeSize: (width) => [width, (node.animerewardCollectLines?.length || 0) * 16 + 8],
      draw: (ctx, _node, _width, y) => {
        ctx.save();
        ctx.font = "11px sans-serif";
        ctx.fillStyle = "#ddd";
        (node.animerewardCollectLines || []).forEach((t, i) => ctx.fillText(t, 10, y + 15 + i * 16));
        ctx.restore();
      },
    });
  }
  const size = node.computeSize();
  node.setSize([Math.max(node.size[0], size[0]), Math.max(node.size[1], size[1])]);
  node.setDirtyCanvas(true, true);
}

app.registerExtension({
  name: "AnimeReward.RankingPanel",
  async setup() {
    api.addEventListener("animereward.collect", showCollect);
    api.addEventListener("animereward.collect.waiting", onWaiting);
    const manager = app.extensionManager;
    if (!manager?.registerSidebarTab) {
      console.warn("AnimeReward: this ComfyUI frontend has no sidebar tabs; the ranking panel is unavailable");
      return;
    }
    manager.registerSidebarTab({
      id: TAB_ID,
      icon: "pi pi-sort-amount-down",
      title: "Rank",
      tooltip: "AnimeReward ranking",
      label: "Rank",
      type: "custom",
      render: mount,
      destroy: () => { state.root = null; },
    });
  },
});
