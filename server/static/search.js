// History search: within the open conversation (GET .../events with the search_events
// filters, counted by .../events/count) and across conversations (GET /api/events/search).
// Each result shows where it is, its kind and time, and a snippet with the words found
// marked; it links to its event in its conversation (following it scrolls there).
// The filters of the search within a conversation belong to that conversation: opening
// another one shows its own (empty at first), coming back restores them.

import { api, conversationPath } from "./api.js";
import { $, fill, gist, h, time } from "./dom.js";
import { kindOf } from "./render.js";

const PAGE = 20;
const CONTEXT = 60; // characters of snippet either side of the first match

/** The searchable text of an event, roughly as the server indexes it. */
function textOf(event) {
  const args = event.args ?? {};
  const extras = event.extras ?? {};
  return [
    event.message,
    args.content,
    args.command,
    args.thought,
    args.final_thought,
    args.path,
    event.content,
    extras.reason,
    ...(args.task_list ?? extras.task_list ?? []).map((task) => task.title),
  ]
    .filter((part) => typeof part === "string" && part)
    .join(" · ");
}

/** The words of a query (quotes and operators dropped), lower case. */
function termsOf(query) {
  return String(query ?? "")
    .toLowerCase()
    .split(/[^\p{L}\p{N}_]+/u)
    .filter((term) => term.length > 0 && !["and", "or", "not", "near"].includes(term));
}

/** A line of the event's text around the first term found, terms in <mark>. Text nodes
 * only: nothing in an event becomes markup. */
export function snippet(event, query) {
  const full = gist(textOf(event), 100_000);
  const terms = termsOf(query);
  const lower = full.toLowerCase();
  const first = Math.min(
    ...terms.map((term) => lower.indexOf(term)).filter((index) => index >= 0),
    Number.POSITIVE_INFINITY,
  );
  let start = 0;
  let end = Math.min(full.length, 2 * CONTEXT + 40);
  if (Number.isFinite(first)) {
    start = Math.max(0, first - CONTEXT);
    end = Math.min(full.length, first + CONTEXT + 40);
  }
  const piece = full.slice(start, end);
  const parts = [start > 0 ? "…" : ""];
  if (terms.length === 0) {
    parts.push(piece);
  } else {
    const pattern = new RegExp(
      `(${terms.map((term) => term.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`,
      "giu",
    );
    for (const [index, chunk] of piece.split(pattern).entries()) {
      parts.push(index % 2 === 1 ? h("mark", {}, chunk) : chunk);
    }
  }
  parts.push(end < full.length ? "…" : "");
  return h("span", { class: "snippet" }, parts);
}

function resultItem(href, event, query, where = null) {
  return h(
    "li",
    { dataset: { id: event.id } },
    h(
      "a",
      { href },
      where ? h("span", { class: "where" }, where) : null,
      h("span", { class: "id" }, `#${event.id}`),
      h("span", { class: "kind" }, kindOf(event)),
      h("span", { class: "when" }, time(event.timestamp)),
      h("span", { class: "text" }, snippet(event, query)),
    ),
  );
}

const eventLink = (conversationId, eventId) =>
  `#/c/${encodeURIComponent(conversationId)}/${eventId}`;

/** Search within a conversation; `conversationId()` names the open one. */
export function setUpHistorySearch(conversationId) {
  const root = $("#history");
  const form = $("#history-form");
  const summary = $(".summary", root);
  const results = $(".results", root);
  const more = $(".more", root);
  const saved = new Map(); // conversation id → its form's values
  let current = null;
  let query = null;
  let nextStart = 0;

  async function page() {
    const id = conversationId();
    const answer = await api(conversationPath(id, "/events"), {
      query: { ...query, start_id: nextStart, limit: PAGE },
    });
    if (id !== conversationId()) return;
    results.append(
      ...answer.events.map((event) => resultItem(eventLink(id, event.id), event, query.query)),
    );
    const last = answer.events.at(-1);
    nextStart = last ? last.id + 1 : nextStart;
    more.hidden = !answer.has_more;
  }

  function values() {
    return [...form.elements]
      .filter((field) => field.name)
      .map((field) => [field.name, field.value, field.checked]);
  }

  function restore(entries) {
    form.reset();
    if (!entries) return;
    for (const field of form.elements) {
      const match = entries.find(
        ([name, value]) =>
          name === field.name && (field.type !== "checkbox" || value === field.value),
      );
      if (!match) continue;
      if (field.type === "checkbox") field.checked = match[2];
      else field.value = match[1];
    }
  }

  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const fields = new FormData(form);
    query = {
      query: String(fields.get("query") ?? "").trim(),
      include_types: fields.getAll("types").join(","),
      source: fields.get("source"),
      exclude_hidden: fields.get("exclude_hidden") ? "true" : "",
    };
    nextStart = 0;
    results.replaceChildren();
    summary.textContent = "Searching…";
    try {
      const counting = api(conversationPath(conversationId(), "/events/count"), { query });
      const [{ count }] = await Promise.all([counting, page()]);
      summary.textContent = `${count} matching event${count === 1 ? "" : "s"}`;
    } catch (error) {
      summary.textContent = `Search failed: ${error.message}`;
    }
  });
  more.addEventListener("click", () =>
    page().catch((error) => (summary.textContent = error.message)),
  );
  return {
    /** Another conversation opened: keep this one's filters, show that one's. */
    switchTo(id) {
      if (current !== null) saved.set(current, values());
      current = id;
      restore(saved.get(id));
      results.replaceChildren();
      summary.textContent = "";
      more.hidden = true;
      query = null;
    },
  };
}

/** Full-text search across the caller's conversations, newest first. */
export function setUpGlobalSearch() {
  const form = $("#global-search");
  const section = $("#global-results");
  const summary = $(".summary", section);
  const results = $(".results", section);
  const more = $(".more", section);
  let q = "";
  let cursor = null;

  async function page() {
    const answer = await api("/api/events/search", { query: { q, cursor, limit: PAGE } });
    results.append(
      ...answer.results.map(({ conversation_id: id, conversation_title: title, event }) =>
        resultItem(eventLink(id, event.id), event, q, title || id),
      ),
    );
    cursor = answer.next_cursor;
    more.hidden = !cursor;
    const count = results.children.length;
    const pending = answer.pending ? ` (${answer.pending} newest events not searchable yet)` : "";
    fill(summary, `${count}${cursor ? "+" : ""} result${count === 1 ? "" : "s"}${pending}`);
  }

  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    q = String(new FormData(form).get("q") ?? "").trim();
    cursor = null;
    results.replaceChildren();
    section.hidden = false;
    summary.textContent = "Searching…";
    try {
      await page();
    } catch (error) {
      summary.textContent = `Search failed: ${error.message}`;
    }
  });
  more.addEventListener("click", () =>
    page().catch((error) => (summary.textContent = error.message)),
  );
}
