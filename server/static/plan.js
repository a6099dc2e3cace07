// The task-tracking plan as a checklist. Each applied plan (a task_tracking observation
// with command "plan") replaces the list; items are kept by task id and updated in place,
// so a screen reader or a focused item is not disturbed when a status changes.

import { h } from "./dom.js";

const STATUS_TEXT = { todo: "to do", in_progress: "in progress", done: "done" };
const MARKS = { todo: "☐", in_progress: "◐", done: "☑" };

export class PlanView {
  constructor(list, empty) {
    this.list = list;
    this.empty = empty;
    this.items = new Map();
  }

  /** Take the plan from an event when it carries one. */
  apply(event) {
    if (event.observation !== "task_tracking" || event.extras?.command !== "plan") return;
    this.show(event.extras.task_list ?? []);
  }

  show(tasks) {
    const keep = new Set(tasks.map((task) => task.id));
    for (const [id, item] of this.items) {
      if (!keep.has(id)) {
        item.remove();
        this.items.delete(id);
      }
    }
    for (const task of tasks) {
      const item = this.items.get(task.id) ?? this.create(task.id);
      this.update(item, task);
      this.list.append(item); // in plan order (moving an element keeps it)
    }
    this.empty.hidden = tasks.length > 0;
  }

  create(id) {
    const item = h(
      "li",
      { class: "task", dataset: { taskId: id } },
      h("span", { class: "mark", "aria-hidden": "true" }),
      h("span", { class: "title" }),
      h("span", { class: "status" }),
      h("span", { class: "notes" }),
    );
    this.items.set(id, item);
    return item;
  }

  update(item, task) {
    const status = task.status in STATUS_TEXT ? task.status : "todo";
    item.dataset.status = status;
    item.querySelector(".mark").textContent = MARKS[status];
    item.querySelector(".title").textContent = task.title;
    item.querySelector(".status").textContent = ` (${STATUS_TEXT[status]})`;
    item.querySelector(".notes").textContent = task.notes ? ` — ${task.notes}` : "";
  }

  clear() {
    this.show([]);
  }
}
