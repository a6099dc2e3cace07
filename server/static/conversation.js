// The conversation view: its live events, plan, meters and controls.

import { api, conversationPath } from "./api.js";
import { $, cost, fill, h } from "./dom.js";
import { setUpEditing } from "./editing.js";
import { needsUser } from "./list.js";
import { notices } from "./notices.js";
import { PlanView } from "./plan.js";
import { renderEvent, renderPlanAnswer } from "./render.js";
import { ReplayBar } from "./replay.js";
import { EventStream } from "./stream.js";

// Agent states in which a run is under way (pause makes sense), and those that end one.
const ACTIVE = new Set([
  "loading",
  "running",
  "awaiting_user_input",
  "awaiting_user_confirmation",
  "user_confirmed",
  "rate_limited",
]);
const ENDED = new Set(["finished", "stopped", "rejected"]);

export class ConversationView {
  constructor({ onChange, onUnauthorized, onDeleted }) {
    this.section = $("#conversation");
    this.events = $("#events");
    this.plan = new PlanView($("#plan"), $("#plan-empty"));
    this.onChange = onChange; // the conversation's state changed: refresh the list
    this.onUnauthorized = onUnauthorized;
    this.onDeleted = onDeleted;
    this.id = null;
    this.stream = null;
    this.shown = new Map(); // event id → element, the defensive dedupe
    this.reveal = null; // an event id to scroll to once it is on screen
    this.values = {};
    this.statusRequest = null; // GET of the metadata in flight
    this.statusAgain = false; // and another one wanted after it
    for (const command of ["pause", "resume", "stop"]) {
      $(`#${command}`).addEventListener("click", () => this.control(command));
    }
    $("#raise-limit").addEventListener("click", () => this.control("resume"));
    this.setUpMessageForm();
    this.replay = new ReplayBar(this);
    this.editing = setUpEditing(this);
  }

  open(id, revealId = null) {
    if (this.id !== id) {
      this.close();
      this.id = id;
      this.values = {};
      this.planAction = null; // the plan action whose row its observation joins
      this.controlAnswer = null; // the state a control answered with, while its notice shows
      this.editing.hide();
      notices.clear("control");
      notices.clear("conversation");
      this.shown.clear();
      this.events.replaceChildren();
      this.plan.clear();
      fill($("#conversation-title"), id);
      this.section.hidden = false;
      this.render();
      this.refreshStatus();
      // Only the open conversation's stream may touch the view.
      const stream = new EventStream(id, {
        onEvent: (event) => this.stream === stream && this.add(event),
        onStatus: (status) => this.stream === stream && this.connection(status),
        onUnauthorized: this.onUnauthorized,
      });
      this.stream = stream;
      stream.start();
    }
    this.reveal = revealId;
    this.revealPending();
  }

  close() {
    this.replay.stop();
    notices.clear("control");
    notices.clear("conversation");
    this.stream?.close();
    this.stream = null;
    this.id = null;
    this.section.hidden = true;
  }

  /** After a key was entered: fetch again, connect again. */
  retry() {
    if (!this.id) return;
    this.refreshStatus();
    this.stream?.reconnect();
  }

  async load() {
    const id = this.id;
    try {
      const info = await api(conversationPath(id));
      if (id !== this.id) return;
      this.values = { ...this.values, ...info };
      notices.clear("conversation");
      this.render();
    } catch (error) {
      if (id !== this.id) return;
      notices.show(
        "conversation",
        error.status === 404 ? `No conversation ${id}.` : `Could not load it: ${error.message}`,
      );
      // The network or the server is away: try again, so the status catches up.
      if (error.status === undefined || error.status >= 500) {
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => id === this.id && this.refreshStatus(), 2000);
      }
    }
  }

  add(event) {
    if (this.shown.has(event.id)) return;
    this.plan.apply(event);
    if (event.observation === "agent_state_changed") this.stateChanged(event.extras ?? {});
    if (this.joinPlanRow(event)) return;
    const element = renderEvent(event);
    if (event.action === "task_tracking") this.planAction = { id: event.id, element };
    this.shown.set(event.id, element);
    if (!element) return; // hidden
    const atBottom =
      this.events.scrollHeight - this.events.scrollTop - this.events.clientHeight < 40;
    this.events.append(element);
    if (atBottom) this.events.scrollTop = this.events.scrollHeight;
    this.revealPending();
  }

  /** One row per plan update: the runtime's answer to a plan action (its observation)
   * joins the action's row, which shows what changed. True when it joined. */
  joinPlanRow(event) {
    const action = this.planAction;
    if (event.observation !== "task_tracking" || !action?.element) return false;
    if (event.cause !== action.id && event.id !== action.id + 1) return false;
    this.planAction = null;
    action.element.dataset.also = String(event.id);
    action.element.append(renderPlanAnswer(event));
    this.shown.set(event.id, action.element);
    this.revealPending();
    return true;
  }

  stateChanged(extras) {
    // The agent moved on: the answer to an earlier control no longer holds.
    if (this.controlAnswer && extras.agent_state !== this.controlAnswer) {
      this.controlAnswer = null;
      notices.clear("control");
    }
    const values = {
      agent_state: extras.agent_state,
      reason: extras.reason ?? "",
      queue_position: extras.queue_position ?? null,
      held_by: extras.held_by ?? null,
    };
    for (const name of ["iteration", "max_iterations", "accumulated_cost", "max_budget_per_task"]) {
      if (name in extras) values[name] = extras[name];
    }
    Object.assign(this.values, values);
    this.render();
    this.onChange();
    this.refreshStatus();
  }

  /** Fetch the metadata: the status (RUNNING, QUEUED, ...) is in no event. One request at
   * a time, and one more after it when asked meanwhile, so the last answer is never older
   * than the last state event. */
  refreshStatus() {
    if (this.statusRequest) {
      this.statusAgain = true;
      return;
    }
    this.statusRequest = this.load().finally(() => {
      this.statusRequest = null;
      if (this.statusAgain) {
        this.statusAgain = false;
        this.refreshStatus();
      }
    });
  }

  render() {
    const v = this.values;
    if (v.title) {
      fill($("#conversation-title"), v.title);
      document.title = `${v.title} · threadline`;
    }
    $("#agent-state").textContent = v.agent_state ?? "—";
    $("#agent-state").dataset.state = v.agent_state ?? "";
    $("#state-reason").textContent = v.reason ?? "";
    $("#conversation-status").textContent = v.status ?? "—";
    $("#queue").hidden = !v.queue_position;
    $("#queue-position").textContent = v.queue_position ? `position ${v.queue_position}` : "";

    const iterations = $("#iterations");
    iterations.max = Math.max(v.max_iterations ?? 1, 1);
    iterations.value = v.iteration ?? 0;
    $("#iterations-text").textContent = v.max_iterations
      ? `${v.iteration ?? 0} of ${v.max_iterations}`
      : String(v.iteration ?? "—");

    const budget = $("#budget");
    const limit = v.max_budget_per_task;
    budget.hidden = !limit;
    if (limit) {
      budget.max = limit;
      budget.value = Math.min(v.accumulated_cost ?? 0, limit);
    }
    const currency = v.currency ?? "";
    $("#budget-text").textContent = limit
      ? `${cost(v.accumulated_cost, currency)} of ${cost(limit, currency)}`
      : `${cost(v.accumulated_cost, currency)} (no budget)`;

    // Held at a limit (or asked a question): the run waits for its user.
    const needs = needsUser(v);
    const held = needs && v.agent_state === "error";
    $("#attention").hidden = !needs;
    $("#attention").dataset.held = held ? v.held_by : "";
    $("#attention-text").textContent = held
      ? `the ${v.held_by} limit was reached (${limitText(v)}). Raise it to let the agent go on, or send a message (which raises it too).`
      : needs
        ? "the agent asked you something: answer it below."
        : "";
    $("#raise-limit").hidden = !held;
    $("#state-reason").hidden = held; // the notice above says it, with what to do

    const state = v.agent_state;
    $("#pause").disabled = !ACTIVE.has(state) || Boolean(v.queue_position);
    $("#resume").disabled = !("agent_state" in v) || ACTIVE.has(state); // resume also starts a run
    $("#stop").disabled = !state || ENDED.has(state);
    this.replay.update();
  }

  connection({ state, opens, error, retryIn }) {
    // (Re)connected: what happened meanwhile (a server restart stops runs) is in the
    // stream, but the run's status is in no event: fetch it again.
    if (state === "open" && opens > 1) this.refreshStatus();
    const element = $("#connection");
    element.dataset.state = state;
    element.dataset.opens = String(opens);
    const text = {
      connecting: "connecting…",
      open: "live",
      waiting: `reconnecting in ${Math.ceil((retryIn ?? 0) / 1000)} s…`,
      unauthorized: "needs an API key",
      refused: `refused: ${error ?? ""}`,
    }[state];
    element.textContent = text ?? state;
  }

  async control(command) {
    const id = this.id;
    try {
      const answer = await api(conversationPath(id, `/${command}`), { method: "POST" });
      if (id !== this.id) return;
      // Not `answer` itself: a state event may already have overtaken it. A fresh GET,
      // like after every state event, cannot leave the view behind the stream.
      this.refreshStatus();
      this.controlAnswer = answer.agent_state;
      notices.show("control", `${command}: ${answer.agent_state ?? answer.conversation_status}`);
      this.onChange();
    } catch (error) {
      notices.show("control", `${command} failed: ${error.message}`);
    }
  }

  setUpMessageForm() {
    const form = $("#message-form");
    const input = $("#message-input");
    const error = $(".error", form);
    input.addEventListener("keydown", (key) => {
      if (key.key === "Enter" && (key.ctrlKey || key.metaKey)) form.requestSubmit();
    });
    form.addEventListener("submit", async (submit) => {
      submit.preventDefault();
      error.textContent = "";
      const message = input.value.trim();
      if (!message || !this.id) return;
      try {
        await api(conversationPath(this.id, "/message"), { method: "POST", body: { message } });
        input.value = ""; // the message shows up through the stream, like every event
        this.onChange();
      } catch (failure) {
        error.textContent = failure.message;
      }
    });
  }

  /** Scroll to and focus the event `this.reveal` once it is on screen. */
  revealPending() {
    if (this.reveal === null || !this.shown.has(this.reveal)) return;
    const element = this.shown.get(this.reveal);
    this.reveal = null;
    if (!element) {
      notices.show("conversation", "That event is hidden.");
      return;
    }
    for (const old of this.events.querySelectorAll(".revealed")) old.classList.remove("revealed");
    element.classList.add("revealed");
    element.scrollIntoView({ block: "center" });
    element.focus({ preventScroll: true });
  }
}

function limitText(v) {
  if (v.held_by === "budget")
    return `${cost(v.accumulated_cost, v.currency ?? "")} spent of ${cost(v.max_budget_per_task, v.currency ?? "")}`;
  return `${v.iteration ?? 0} of ${v.max_iterations ?? "?"} steps`;
}
