// densekit search page: asks the server's JSON API for the BM25, dense and hybrid rankings of
// one query and shows them side by side, each optionally reranked by the server's cross-encoder
// (the "rerank" box, shown when /info says a reranker is loaded; kept in the address as
// &rerank=1). Plain JavaScript, no framework, no build step.
//
// Stable hooks (used by tests/serve/test_page.py):
//   #columns[data-state=loading|done|error][data-query=<query>][data-rerank=0|1]   the last search
//   #rerank (checkbox) inside #rerank-label (hidden without a reranker)
//   .column[data-mode=bm25|dense|hybrid] .hit[data-docid][data-rank][data-relevance]
//   .column .ndcg[data-ndcg]   nDCG@10 of that ranking when the query is a dev query
//   .badge.only / .badge.relevant   "found only here" / judged relevant (with its grade)
//   #dev-queries a.dev-query[data-qid]   the dev queries to click through
//   #error   API errors, as text

"use strict";

const MODES = ["bm25", "dense", "hybrid"];
const DEFAULT_K = 10;
const SNIPPET_CHARS = 240;
const STOPWORDS = new Set(
  ("a an and are as at be by for from has have in is it its of on or that the their this " +
    "to was were which with not no than into").split(" ")
);

const $ = (selector, root = document) => root.querySelector(selector);

let searchCounter = 0; // answers of an older search than the latest are dropped
let devQueries = []; // [{qid, text, relevant}] from /dev_queries

// ---------------------------------------------------------------- fetching

// GET a JSON document; resolves to {ok: true, data} or {ok: false, error: "message"},
// never throws (4xx/5xx answers carry {"error": ...}).
async function getJSON(url) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" } });
  } catch (err) {
    return { ok: false, error: `cannot reach the server (${err.message})` };
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const message = data && data.error ? data.error : response.statusText || "request failed";
    return { ok: false, error: `${message} (HTTP ${response.status})` };
  }
  if (data === null) {
    return { ok: false, error: `the server's answer to ${url} is not JSON` };
  }
  return { ok: true, data };
}

function searchURL(query, k, mode, rerank) {
  const params = new URLSearchParams({ q: query, k: String(k), mode });
  if (rerank) params.set("rerank", "true");
  return `/search?${params}`;
}

// ---------------------------------------------------------------- small DOM helpers

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

function formatScore(score) {
  if (typeof score !== "number" || !Number.isFinite(score)) return String(score);
  return Math.abs(score) >= 100 ? score.toFixed(1) : score.toFixed(3);
}

// The first SNIPPET_CHARS characters of the text, cut at a word boundary.
function snippetOf(text) {
  const clean = (text || "").replace(/\s+/g, " ").trim();
  if (clean.length <= SNIPPET_CHARS) return clean;
  const cut = clean.lastIndexOf(" ", SNIPPET_CHARS);
  return clean.slice(0, cut > SNIPPET_CHARS / 2 ? cut : SNIPPET_CHARS) + "…";
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// The query's content words, as one case-insensitive regular expression (or null).
function termPattern(query) {
  const found = (query.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []).filter(
    (w) => w.length > 2 && !STOPWORDS.has(w)
  );
  if (!found.length) return null;
  const unique = [...new Set(found)].sort((a, b) => b.length - a.length);
  // whole words only; the one capturing group keeps the matches in String.split's output
  const words = unique.map(escapeRegExp).join("|");
  return new RegExp(`(?<![\\p{L}\\p{N}])(${words})(?![\\p{L}\\p{N}])`, "giu");
}

// Append `text` to `node`, wrapping the query's words in <mark> (text nodes only: no HTML).
function appendMarked(node, text, pattern) {
  if (!pattern) {
    node.textContent = text;
    return;
  }
  text.split(pattern).forEach((part, i) => {
    if (!part) return;
    node.append(i % 2 === 1 ? element("mark", "", part) : document.createTextNode(part));
  });
}

// ---------------------------------------------------------------- rendering

function renderInfo(info) {
  const line = $("#info");
  line.textContent = "";
  const facts = [];
  if (info.model) {
    const parts = String(info.model).split(/[\\/]/).filter(Boolean);
    facts.push(["model", parts.slice(-2).join("/"), info.model]);
  }
  if (info.backend) facts.push(["backend", info.backend]);
  if (info.corpus_size !== undefined) {
    facts.push(["corpus", `${Number(info.corpus_size).toLocaleString("en")} documents`, info.corpus]);
  }
  if (info.dimension) facts.push(["dimension", info.dimension]);
  if (info.hybrid_weight !== undefined) facts.push(["hybrid weight (BM25)", info.hybrid_weight]);
  if (info.dev_queries) facts.push(["dev queries", info.dev_queries]);
  if (info.rerank) {
    const parts = String(info.reranker || "").split(/[\\/]/).filter(Boolean);
    facts.push(["reranker", `${parts.slice(-1)[0] || "yes"} (top ${info.rerank_depth})`, info.reranker]);
  }
  facts.forEach(([name, value, title], i) => {
    if (i) line.append(" · ");
    const span = element("span", "fact");
    span.dataset.fact = name;
    if (title) span.title = String(title);
    span.append(`${name} `, element("b", "", String(value)));
    line.append(span);
  });
  if (info.max_k) $("#k").max = String(info.max_k);
  $("#rerank-label").hidden = !info.rerank;
}

function renderDevQueries() {
  const list = $("#dev-queries");
  const filter = $("#dev-filter").value.trim().toLowerCase();
  const current = $("#q").value.trim();
  list.textContent = "";
  const shown = devQueries.filter(
    (d) => !filter || d.text.toLowerCase().includes(filter) || String(d.qid) === filter
  );
  for (const d of shown) {
    const link = element("a", "dev-query");
    const params = new URLSearchParams({ q: d.text });
    if ($("#rerank").checked) params.set("rerank", "1");
    link.href = `?${params}`;
    link.dataset.qid = d.qid;
    link.title = `${d.relevant} relevant document${d.relevant === 1 ? "" : "s"}`;
    if (d.text === current) link.classList.add("active");
    link.append(element("span", "qid", d.qid), d.text);
    const item = element("li");
    item.append(link);
    list.append(item);
  }
  $("#dev-count").textContent = filter
    ? `(${shown.length} of ${devQueries.length})`
    : `(${devQueries.length})`;
}

// Scroll the dev query list (not the page) so that the current query's entry is in view.
function revealActiveDevQuery() {
  const list = $("#dev-queries");
  const active = $("a.dev-query.active", list);
  if (!active) return;
  const item = active.parentElement;
  const top = item.offsetTop;
  const bottom = top + item.offsetHeight;
  if (top < list.scrollTop || bottom > list.scrollTop + list.clientHeight) {
    list.scrollTop = Math.max(0, top - list.clientHeight / 3);
  }
}

function clearColumns() {
  for (const column of document.querySelectorAll(".column")) {
    $(".hits", column).textContent = "";
    const ndcg = $(".ndcg", column);
    ndcg.hidden = true;
    ndcg.textContent = "";
    delete ndcg.dataset.ndcg;
  }
}

// How many of the three rankings hold each docid.
function docidCounts(answers) {
  const counts = new Map();
  for (const answer of Object.values(answers)) {
    if (!answer) continue;
    for (const docid of new Set(answer.hits.map((h) => h.docid))) {
      counts.set(docid, (counts.get(docid) || 0) + 1);
    }
  }
  return counts;
}

function renderHit(hit, counts, pattern, judged) {
  const item = element("li", "hit");
  item.dataset.docid = hit.docid;
  item.dataset.rank = String(hit.rank);
  item.dataset.score = String(hit.score);

  item.append(element("span", "rank", String(hit.rank)));
  const title = element("span", "title");
  title.title = hit.title || hit.docid;
  appendMarked(title, hit.title || hit.docid, pattern);
  item.append(title);
  const score = element("span", "score", formatScore(hit.score));
  score.title = `score ${hit.score}`;
  item.append(score);

  if (hit.text) {
    const snippet = element("p", "snippet");
    appendMarked(snippet, snippetOf(hit.text), pattern);
    item.append(snippet);
  }

  const meta = element("div", "meta");
  meta.append(element("span", "docid", hit.docid));
  if (counts.get(hit.docid) === 1) {
    const badge = element("span", "badge only", "only here");
    badge.title = "the other two systems do not return this document in their top k";
    meta.append(badge);
  }
  if (judged && typeof hit.relevance === "number") {
    item.dataset.relevance = String(hit.relevance);
    if (hit.relevance > 0) {
      item.classList.add("is-relevant");
      const badge = element("span", "badge relevant", `relevant ${hit.relevance}`);
      badge.dataset.grade = String(hit.relevance);
      badge.title = `judged relevant in the dev qrels, grade ${hit.relevance}`;
      meta.append(badge);
    }
  }
  item.append(meta);
  return item;
}

function renderColumn(mode, answer, counts, pattern) {
  const column = $(`.column[data-mode="${mode}"]`);
  const list = $(".hits", column);
  const ndcg = $(".ndcg", column);
  list.textContent = "";
  if (!answer) {
    list.append(element("li", "empty", "no answer"));
    return;
  }
  const judged = answer.qid !== undefined;
  if (judged && typeof answer.ndcg_at_10 === "number") {
    ndcg.dataset.ndcg = String(answer.ndcg_at_10);
    ndcg.textContent = "";
    ndcg.append("nDCG@10 ", element("b", "", answer.ndcg_at_10.toFixed(3)));
    ndcg.title = `nDCG@10 of this ranking for dev query ${answer.qid}: ${answer.ndcg_at_10}`;
    ndcg.hidden = false;
  }
  if (!answer.hits.length) {
    list.append(element("li", "empty", "no hits"));
    return;
  }
  for (const hit of answer.hits) list.append(renderHit(hit, counts, pattern, judged));
}

function renderSummary(query, answers) {
  const summary = $("#summary");
  const judged = MODES.map((m) => answers[m]).find((a) => a && a.qid !== undefined);
  summary.textContent = "";
  if (!judged) {
    summary.hidden = true;
    return;
  }
  const relevant = devQueries.find((d) => String(d.qid) === String(judged.qid));
  summary.append("Dev query ", element("b", "", String(judged.qid)), ` · ${judged.judged} judged`);
  if (relevant) summary.append(` · ${relevant.relevant} relevant`);
  summary.append(" · relevant hits are marked and each column shows its nDCG@10");
  summary.hidden = false;
}

// ---------------------------------------------------------------- searching

// Run `query` in all three modes (reranked when `rerank`) and show the answers. `how` is "push"
// (a new search by the user: a new history entry), "replace" (keep the address in step without
// a new entry) or "none" (the address already says it: page load, back/forward).
async function runSearch(query, k, how, rerank = false) {
  const columns = $("#columns");
  const id = ++searchCounter;
  $("#q").value = query;
  $("#k").value = String(k);
  $("#rerank").checked = rerank;
  if (how !== "none") {
    const params = new URLSearchParams({ q: query });
    if (k !== DEFAULT_K) params.set("k", String(k));
    if (rerank) params.set("rerank", "1");
    const url = `${location.pathname}?${params}`;
    if (how === "push") history.pushState({ q: query, k, rerank }, "", url);
    else history.replaceState({ q: query, k, rerank }, "", url);
  }
  document.title = query ? `${query} · densekit search` : "densekit search";
  renderDevQueries();
  revealActiveDevQuery();
  columns.dataset.state = "loading";
  columns.dataset.query = query;
  columns.dataset.rerank = rerank ? "1" : "0";
  showError("");

  const results = await Promise.all(
    MODES.map((mode) => getJSON(searchURL(query, k, mode, rerank)))
  );
  if (id !== searchCounter) return; // a newer search started meanwhile

  const answers = {};
  const errors = [];
  MODES.forEach((mode, i) => {
    if (results[i].ok) answers[mode] = results[i].data;
    else errors.push(results[i].error);
  });
  clearColumns();
  if (errors.length === MODES.length) {
    // every mode fails the same way for a bad request: say it once
    showError([...new Set(errors)].join("; "));
    renderSummary(query, {});
    columns.dataset.state = "error";
    return;
  }
  if (errors.length) showError([...new Set(errors)].join("; "));
  const counts = docidCounts(answers);
  const pattern = termPattern(query);
  for (const mode of MODES) renderColumn(mode, answers[mode], counts, pattern);
  renderSummary(query, answers);
  columns.dataset.state = errors.length ? "error" : "done";
}

// The search the address asks for: ?q=, &k= (default 10) and &rerank=1 (default off).
function fromAddress() {
  const params = new URLSearchParams(location.search);
  const k = parseInt(params.get("k") || "", 10);
  const rerank = ["1", "true"].includes((params.get("rerank") || "").toLowerCase());
  return { query: params.get("q") || "", k: Number.isFinite(k) ? k : DEFAULT_K, rerank };
}

function currentK() {
  const k = parseInt($("#k").value, 10);
  return Number.isFinite(k) ? k : DEFAULT_K;
}

function currentRerank() {
  return $("#rerank").checked;
}

function searchFromAddress() {
  const { query, k, rerank } = fromAddress();
  if (query) {
    runSearch(query, k, "none", rerank);
  } else {
    $("#q").value = "";
    $("#k").value = String(k);
    $("#rerank").checked = rerank;
    clearColumns();
    renderSummary("", {});
    showError("");
    $("#columns").dataset.state = "idle";
    renderDevQueries();
  }
}

async function loadServerFacts() {
  const [info, dev] = await Promise.all([getJSON("/info"), getJSON("/dev_queries")]);
  if (info.ok) renderInfo(info.data);
  else $("#info").textContent = `server facts unavailable: ${info.error}`;
  if (dev.ok && Array.isArray(dev.data) && dev.data.length) {
    devQueries = dev.data;
    $("#dev").hidden = false;
    renderDevQueries();
    revealActiveDevQuery();
  }
}

function init() {
  $("#search").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = $("#q").value;
    if (!query.trim()) {
      showError("type a query first");
      return;
    }
    runSearch(query, currentK(), "push", currentRerank());
  });
  $("#rerank").addEventListener("change", () => {
    const query = $("#q").value;
    if (query.trim()) runSearch(query, currentK(), "push", currentRerank());
  });
  $("#dev-queries").addEventListener("click", (event) => {
    const link = event.target.closest("a.dev-query");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    const dev = devQueries.find((d) => String(d.qid) === link.dataset.qid);
    if (dev) runSearch(dev.text, currentK(), "push", currentRerank());
  });
  $("#dev-filter").addEventListener("input", renderDevQueries);
  window.addEventListener("popstate", searchFromAddress);

  loadServerFacts();
  searchFromAddress();
}

init();
