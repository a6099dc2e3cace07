// Background tasks: create one (a conversation or a shell command), and for each task its
// status, priority, last result, and controls (pause / resume its agent, cancel it).

import { api, conversationPath } from "./api.js";
import { fill, gist, h, time } from "./dom.js";

const OPEN = new Set(["created", "running"]);

export class TaskList {
  constructor(panel) {
    this.onChange = () => {};
    this.error = h("p", { class: "error", role: "alert" });
    this.list = h("ul", { id: "tasks", class: "automation-list" });
    this.empty = h("p", { class: "summary" }, "No tasks yet.");
    this.form = this.createForm();
    panel.append(
      h(
        "section",
        { "aria-labelledby": "tasks-title" },
        h("h2", { id: "tasks-title" }, "Tasks"),
        h("details", { id: "task-create" }, h("summary", {}, "New task"), this.form),
        this.empty,
        this.list,
      ),
    );
  }

  createForm() {
    const form = h(
      "form",
      { id: "task-form" },
      h(
        "label",
        {},
        "Type ",
        h(
          "select",
          { name: "task_type" },
          h("option", { value: "conversation" }, "conversation"),
          h("option", { value: "shell" }, "shell command"),
        ),
      ),
      h("label", {}, "Description ", h("input", { name: "description", required: true })),
      h("label", {}, "Command (shell) ", h("input", { name: "command", autocomplete: "off" })),
      h(
        "div",
        { class: "row" },
        h("label", {}, "Priority ", h("input", { name: "priority", type: "number", min: 1, max: 10, value: 1 })),
        h("label", {}, "Timeout (s) ", h("input", { name: "timeout_seconds", type: "number", min: 1 })),
      ),
      h("button", {}, "Create task"),
      this.error,
    );
    form.addEventListener("submit", (submit) => {
      submit.preventDefault();
      this.create(new FormData(form));
    });
    return form;
  }

  async create(data) {
    const body = {
      task_type: data.get("task_type"),
      description: data.get("description"),
      priority: Number(data.get("priority") || 1),
      parameters: data.get("task_type") === "shell" ? { command: data.get("command") } : {},
    };
    if (data.get("timeout_seconds")) body.timeout_seconds = Number(data.get("timeout_seconds"));
    try {
      await api("/api/tasks", { method: "POST", body });
      this.error.textContent = "";
      this.form.reset();
      this.onChange();
    } catch (error) {
      this.error.textContent = error.message;
    }
  }

  async refresh() {
    try {
      const page = await api("/api/tasks", { query: { limit: 20 } });
      this.show(page.tasks);
    } catch (error) {
      if (error.status !== 401) this.error.textContent = error.message;
    }
  }

  show(tasks) {
    this.empty.hidden = tasks.length > 0;
    fill(this.list, tasks.map((task) => this.row(task)));
  }

  row(task) {
    const open = OPEN.has(task.status);
    const outcome = task.error ?? resultText(task.result);
    return h(
      "li",
      { dataset: { id: task.task_id, status: task.status } },
      h("a", { href: `#/c/${encodeURIComponent(task.conversation_id)}` }, gist(task.description, 60)),
      h("span", { class: "badge status" }, task.status),
      h("span", { class: "hint" }, ` priority ${task.priority} · `, time(task.created_at, { short: true })),
      task.queue_position ? h("span", { class: "hint queue" }, ` · queued ${task.queue_position}`) : null,
      outcome ? h("p", { class: "result" }, gist(outcome, 100)) : null,
      open
        ? h(
            "div",
            { class: "controls", role: "group", "aria-label": "Task controls" },
            this.button("Pause", () => api(conversationPath(task.conversation_id, "/pause"), { method: "POST" })),
            this.button("Resume", () => api(conversationPath(task.conversation_id, "/resume"), { method: "POST" })),
            this.button("Cancel", () => api(`/api/tasks/${encodeURIComponent(task.task_id)}/cancel`, { method: "POST" })),
          )
        : null,
    );
  }

  button(label, action) {
    return h(
      "button",
      {
        type: "button",
        class: label.toLowerCase(),
        onclick: async () => {
          try {
            await action();
            this.error.textContent = "";
          } catch (error) {
            this.error.textContent = error.message;
          }
          this.onChange();
        },
      },
      label,
    );
  }
}

function resultText(result) {
  if (!result) return "";
  if (result.outputs && "output" in result.outputs) return result.outputs.output;
  return result.final_thought || result.message || "";
}
