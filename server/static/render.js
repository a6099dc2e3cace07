// One event (OpenHands V0 wire shape) → one <li>, by kind. Text only: see dom.js.

import { gist, h, time } from "./dom.js";

export const kindOf = (event) =>
  event.action ? `action:${event.action}` : `observation:${event.observation ?? "unknown"}`;

export const isHidden = (event) => Boolean(event.args?.hidden || event.extras?.hidden);

const LABELS = {
  "action:message": "message",
  "action:run": "command",
  "observation:run": "output",
  "action:edit": "edit",
  "observation:edit": "edited",
  "action:write": "write",
  "observation:write": "written",
  "action:read": "read",
  "observation:read": "file",
  "action:think": "thought",
  "observation:think": "thought",
  "observation:error": "error",
  "action:finish": "finished",
  "action:reject": "rejected",
  "action:task_tracking": "plan",
  "observation:task_tracking": "plan",
  "observation:agent_state_changed": "state",
  "action:change_agent_state": "control",
  "action:system": "system",
};

/** The element for an event; `null` for hidden ones. */
export function renderEvent(event) {
  if (isHidden(event)) return null;
  const kind = kindOf(event);
  const body = (BODIES[kind] ?? genericBody)(event);
  const compact = COMPACT.has(kind);
  return h(
    "li",
    {
      class: `event ${event.action ? "action" : "observation"}${compact ? " compact" : ""}`,
      tabindex: "-1",
      dataset: {
        id: event.id,
        kind,
        source: event.source ?? "",
        ...(kind === "observation:agent_state_changed"
          ? { agentState: event.extras?.agent_state ?? "" }
          : {}),
      },
    },
    h(
      "div",
      { class: "meta" },
      h("span", { class: "id", title: "event id" }, `#${event.id}`),
      h("span", { class: "source" }, event.source ?? ""),
      h("span", { class: "kind" }, LABELS[kind] ?? kind),
      time(event.timestamp, { short: true }),
    ),
    body,
  );
}

const COMPACT = new Set([
  "observation:agent_state_changed",
  "action:change_agent_state",
  "action:task_tracking",
  "observation:task_tracking",
  "observation:write",
]);

const text = (value, className = "text") => h("div", { class: className }, String(value ?? ""));
const pre = (value, className = "output") => h("pre", { class: className }, String(value ?? ""));
const thought = (value) => (value ? h("p", { class: "thought" }, value) : null);

function collapsible(summary, content, className = "output") {
  if (!content) return h("p", { class: "summary" }, summary);
  return h("details", {}, h("summary", {}, summary), pre(content, className));
}

/** A unified diff, one line per row, marked added / removed / hunk. */
export function renderDiff(diff) {
  const lines = String(diff).split("\n");
  return h(
    "pre",
    { class: "diff", "aria-label": "diff" },
    lines.map((line) => {
      const mark = line.startsWith("@@")
        ? "hunk"
        : line.startsWith("+++") || line.startsWith("---")
          ? "file"
          : line.startsWith("+")
            ? "add"
            : line.startsWith("-")
              ? "del"
              : "same";
      return h("span", { class: `line ${mark}` }, `${line}\n`);
    }),
  );
}

const BODIES = {
  "action:message": (e) => text(e.args?.content ?? e.message, "text message"),
  "action:run": (e) => [
    thought(e.args?.thought),
    h("code", { class: "command" }, `$ ${e.args?.command ?? ""}`),
  ],
  "observation:run": (e) => {
    const exit = e.extras?.metadata?.exit_code;
    const failed = typeof exit === "number" ? exit !== 0 : e.success === false;
    return [
      h(
        "p",
        { class: `exit ${failed ? "failed" : "ok"}` },
        typeof exit === "number" && exit >= 0 ? `exit code ${exit}` : "still running",
      ),
      pre(e.content),
    ];
  },
  "action:edit": (e) => [
    thought(e.args?.thought),
    h("p", {}, `${e.args?.command || "edit"} `, h("code", {}, e.args?.path ?? "")),
  ],
  "observation:edit": (e) => [
    h("p", {}, h("code", {}, e.extras?.path ?? "")),
    e.extras?.diff ? renderDiff(e.extras.diff) : collapsible("result", e.content),
  ],
  "action:write": (e) => [
    thought(e.args?.thought),
    collapsible(h("code", {}, e.args?.path ?? ""), e.args?.content),
  ],
  "observation:write": (e) => text(e.message || e.extras?.path),
  "action:read": (e) => h("p", {}, h("code", {}, e.args?.path ?? "")),
  "observation:read": (e) => collapsible(h("code", {}, e.extras?.path ?? ""), e.content),
  "action:think": (e) => text(e.args?.thought, "text thought"),
  "observation:think": (e) => text(e.content, "text thought"),
  "observation:error": (e) => text(e.content || e.message, "text error"),
  "action:finish": (e) => [thought(e.args?.thought), text(e.args?.final_thought || e.message)],
  "action:reject": (e) => text(e.message),
  "action:task_tracking": (e) => [thought(e.args?.thought), text(planSummary(e.args?.task_list))],
  "observation:task_tracking": (e) => text(planChanges(e.extras?.changes) || e.content),
  "observation:agent_state_changed": (e) => {
    const extras = e.extras ?? {};
    return text(extras.reason ? `${extras.agent_state}: ${extras.reason}` : extras.agent_state);
  },
  "action:change_agent_state": (e) => text(e.args?.thought || e.message),
  "action:system": (e) => collapsible("system prompt", e.args?.content),
};

/** What the runtime said to a plan (a task_tracking observation), for the plan row. */
export function renderPlanAnswer(event) {
  return h(
    "div",
    { class: "text plan-answer", dataset: { id: event.id } },
    planChanges(event.extras?.changes) || event.content || "",
  );
}

function genericBody(event) {
  const detail = String(event.content ?? event.args?.content ?? "");
  return [
    text(event.message || gist(detail)),
    detail.length > 120 ? collapsible("details", detail) : null,
  ];
}

/** "3 tasks: 1 done, 1 in progress, 1 to do". */
function planSummary(tasks) {
  if (!Array.isArray(tasks)) return "plan";
  const count = (status) => tasks.filter((task) => task.status === status).length;
  const parts = [
    [count("done"), "done"],
    [count("in_progress"), "in progress"],
    [count("todo"), "to do"],
  ].filter(([n]) => n > 0);
  return `${tasks.length} task${tasks.length === 1 ? "" : "s"}: ${parts.map(([n, what]) => `${n} ${what}`).join(", ")}`;
}

/** "inspect: todo → in_progress; report added" from a plan observation's `changes`. */
function planChanges(changes) {
  if (!Array.isArray(changes) || changes.length === 0) return "";
  return changes
    .map((change) => {
      if (change.change === "updated")
        return `${change.id}: ${change.from?.status} → ${change.to?.status}`;
      return `${change.id} ${change.change}`;
    })
    .join("; ");
}
