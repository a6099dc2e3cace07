// The conversation list and the create form.
//
// The server has no stream of conversation changes, so the list polls GET
// /api/conversations: every 2 s while the tab is visible, not at all while it is hidden,
// and at once after anything this page does (create, pause, a state change seen on the
// open conversation's stream). Rows are kept by id and updated in place, so polling never
// moves the keyboard focus.

import { api } from "./api.js";
import { $, cost, fill, h, time } from "./dom.js";

const PERIOD = 2000;
const PAGE = 30;

export class ConversationList {
  constructor({ onError, onLoaded }) {
    this.list = $("#conversations");
    this.empty = $("#list-empty");
    this.more = $("#list-more");
    this.rows = new Map();
    this.limit = PAGE;
    this.current = null;
    this.timer = null;
    this.inFlight = null;
    this.onError = onError;
    this.onLoaded = onLoaded;
    this.more.addEventListener("click", () => {
      this.limit = Math.min(this.limit + PAGE, 100);
      this.refresh();
    });
    document.addEventListener("visibilitychange", () => this.schedule(0));
  }

  start() {
    this.schedule(0);
  }

  /** Poll again after `delay` ms (only while the page is visible). */
  schedule(delay = PERIOD) {
    clearTimeout(this.timer);
    if (document.visibilityState === "hidden") return;
    this.timer = setTimeout(() => this.refresh(), delay);
  }

  async refresh() {
    if (this.inFlight) return this.inFlight;
    clearTimeout(this.timer);
    let again = true; // not after a 401: polling resumes when a key is entered
    this.inFlight = api("/api/conversations", { query: { limit: this.limit } })
      .then((page) => this.show(page))
      .catch((error) => {
        again = error.status !== 401;
        this.onError(error);
      })
      .finally(() => {
        this.inFlight = null;
        if (again) this.schedule();
      });
    return this.inFlight;
  }

  show({ results, next_page_id: nextPage }) {
    const seen = new Set();
    for (const info of results) {
      seen.add(info.conversation_id);
      const row = this.rows.get(info.conversation_id) ?? this.create(info.conversation_id);
      update(row, info);
      this.list.append(row); // newest first, as the server orders them
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    this.empty.hidden = results.length > 0;
    this.more.hidden = !nextPage || this.limit >= 100;
    this.highlight(this.current);
    this.onLoaded(results.length);
  }

  create(id) {
    const row = h(
      "li",
      { class: "conversation", dataset: { id } },
      h(
        "a",
        { href: `#/c/${encodeURIComponent(id)}` },
        h("span", { class: "title" }),
        h("span", { class: "badge status" }),
        h("span", { class: "cost" }),
        h("span", { class: "created" }),
      ),
    );
    this.rows.set(id, row);
    return row;
  }

  /** Mark the open conversation. */
  highlight(id) {
    this.current = id;
    for (const [rowId, row] of this.rows) {
      const link = row.querySelector("a");
      if (rowId === id) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

}

/** Why the conversation waits for its user, in a few words; "" when it does not. */
export function needsUser(info) {
  if (info.status !== "RUNNING") return "";
  if (info.agent_state === "error" && info.held_by) return `${info.held_by} limit reached`;
  if (info.agent_state === "awaiting_user_input") return "waiting for your answer";
  return "";
}

function update(row, info) {
  row.dataset.status = info.status;
  row.querySelector(".title").textContent = info.title || info.conversation_id;
  const status = row.querySelector(".status");
  const needs = needsUser(info);
  status.textContent = info.queue_position
    ? `QUEUED #${info.queue_position}`
    : needs
      ? "NEEDS YOU"
      : info.status;
  status.dataset.status = needs ? "NEEDS_YOU" : info.status;
  status.title = needs;
  row.dataset.needs = needs;
  fill(
    row.querySelector(".cost"),
    h("span", { class: "label" }, "cost "),
    cost(info.accumulated_cost, info.currency),
  );
  const created = row.querySelector(".created");
  if (created.firstChild?.getAttribute?.("datetime") !== info.created_at) {
    fill(created, time(info.created_at));
  }
}

/** The create form: posts the conversation and hands its id to `onCreated`. */
export function setUpCreateForm(onCreated) {
  const form = $("#create-form");
  const error = $(".error", form);
  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    error.textContent = "";
    const fields = new FormData(form);
    const body = {
      initial_user_msg: fields.get("initial_user_msg"),
      priority: Number(fields.get("priority")),
    };
    for (const name of ["repository", "agent"]) {
      const value = String(fields.get(name) ?? "").trim();
      if (value) body[name] = value;
    }
    for (const name of ["max_iterations", "max_budget_per_task"]) {
      const value = String(fields.get(name) ?? "").trim();
      if (value) body[name] = Number(value);
    }
    const button = $("button", form);
    button.disabled = true;
    try {
      const created = await api("/api/conversations", { method: "POST", body });
      form.reset();
      $("#create").open = false; // the list comes back into view
      onCreated(created.conversation_id);
    } catch (failure) {
      error.textContent = failure.field ? `${failure.field}: ${failure.message}` : failure.message;
    } finally {
      button.disabled = false;
    }
  });
}
