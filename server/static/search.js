// History search: within the open conversation (GET .../events with the search_events
// filters, counted by .../events/count) and across conversations (GET /api/events/search).
// Each result links to its event; following it scrolls the stream there.

import { api, conversationPath } from "./api.js";
import { $, fill, gist, h } from "./dom.js";
import { kindOf } from "./render.js";

const PAGE = 20;

function describe(event) {
  const args = event.args ?? {};
  return gist(event.message || args.content || args.thought || event.content || "");
}

function resultItem(href, event, prefix = null) {
  return h(
    "li",
    { dataset: { id: event.id } },
    h(
      "a",
      { href },
      prefix ? h("span", { class: "where" }, prefix) : null,
      h("span", { class: "id" }, `#${event.id}`),
      h("span", { class: "kind" }, kindOf(event)),
      h("span", { class: "text" }, describe(event)),
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
  let query = null;
  let nextStart = 0;

  async function page() {
    const id = conversationId();
    const answer = await api(conversationPath(id, "/events"), {
      query: { ...query, start_id: nextStart, limit: PAGE },
    });
    results.append(...answer.events.map((event) => resultItem(eventLink(id, event.id), event)));
    const last = answer.events.at(-1);
    nextStart = last ? last.id + 1 : nextStart;
    more.hidden = !answer.has_more;
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
    reset() {
      results.replaceChildren();
      summary.textContent = "";
      more.hidden = true;
    },
  };
}

/** Full-text search across the caller's conversations; `titleOf(id)` names them. */
export function setUpGlobalSearch(titleOf) {
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
      ...answer.results.map(({ conversation_id: id, event }) =>
        resultItem(eventLink(id, event.id), event, titleOf(id) ?? id),
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
