// Schedules: create one (a flow id, a cron expression, the message each run starts
// with), and for each its next run, last run and count, enable / disable and delete.

import { api } from "./api.js";
import { fill, h, time } from "./dom.js";

const path = (flowId) => `/api/schedule/${encodeURIComponent(flowId)}`;

export class ScheduleList {
  constructor(panel) {
    this.onChange = () => {};
    this.error = h("p", { class: "error", role: "alert" });
    this.list = h("ul", { id: "schedules", class: "automation-list" });
    this.empty = h("p", { class: "summary" }, "No schedules yet.");
    this.form = this.createForm();
    panel.append(
      h(
        "section",
        { "aria-labelledby": "schedules-title" },
        h("h2", { id: "schedules-title" }, "Schedules"),
        h("details", { id: "schedule-create" }, h("summary", {}, "New schedule"), this.form),
        this.empty,
        this.list,
      ),
    );
  }

  createForm() {
    const form = h(
      "form",
      { id: "schedule-form" },
      h("label", {}, "Flow id ", h("input", { name: "flow_id", required: true, autocomplete: "off" })),
      h("label", {}, "Cron ", h("input", { name: "cron_expression", required: true, placeholder: "0 9 * * 1-5" })),
      h("label", {}, "Message ", h("input", { name: "message", required: true })),
      h("label", {}, "Time zone ", h("input", { name: "timezone", placeholder: "UTC" })),
      h("button", {}, "Create schedule"),
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
      flow_id: data.get("flow_id"),
      cron_expression: data.get("cron_expression"),
      flow: { message: data.get("message") },
    };
    if (data.get("timezone")) body.timezone = data.get("timezone");
    await this.act(async () => {
      await api("/api/schedule", { method: "POST", body });
      this.form.reset();
    });
  }

  async refresh() {
    try {
      this.show(await api("/api/schedule"));
    } catch (error) {
      if (error.status !== 401) this.error.textContent = error.message;
    }
  }

  show(schedules) {
    this.empty.hidden = schedules.length > 0;
    fill(this.list, schedules.map((schedule) => this.row(schedule)));
  }

  row(schedule) {
    const last = schedule.last_run;
    return h(
      "li",
      { dataset: { id: schedule.flow_id, enabled: String(schedule.is_enabled) } },
      h("a", { href: `#/c/${encodeURIComponent(schedule.id)}` }, schedule.flow_id),
      h("code", { class: "cron" }, ` ${schedule.cron_expression}`),
      h("span", { class: "badge status" }, schedule.is_enabled ? "enabled" : "disabled"),
      h(
        "p",
        { class: "hint" },
        "next: ",
        h("span", { class: "next" }, schedule.next_execution_at ? time(schedule.next_execution_at) : "—"),
        ` · runs: ${schedule.execution_count}`,
      ),
      last
        ? h(
            "p",
            { class: "result" },
            "last run: ",
            h("a", { href: `#/c/${encodeURIComponent(last.conversation_id)}` }, last.agent_state ?? last.status ?? "?"),
          )
        : null,
      h(
        "div",
        { class: "controls", role: "group", "aria-label": "Schedule controls" },
        h(
          "button",
          {
            type: "button",
            class: "toggle",
            onclick: () =>
              this.act(() =>
                api(path(schedule.flow_id), { method: "PUT", body: { is_enabled: !schedule.is_enabled } }),
              ),
          },
          schedule.is_enabled ? "Disable" : "Enable",
        ),
        h(
          "button",
          { type: "button", class: "delete", onclick: () => this.act(() => api(path(schedule.flow_id), { method: "DELETE" })) },
          "Delete",
        ),
      ),
    );
  }

  async act(action) {
    try {
      await action();
      this.error.textContent = "";
    } catch (error) {
      this.error.textContent = error.message;
    }
    this.onChange();
  }
}
