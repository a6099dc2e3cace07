// Tasks and schedules beside the conversations: a panel of its own in the sidebar,
// mounted by this module (index.html only loads it), so the rest of the page is untouched.
//
// Like the conversation list it polls (every 2 s while the tab is visible, at once after
// anything it does): the server has no stream of task or schedule changes across
// conversations; each change is an event in its conversation's log, shown when opened.

import { $, h } from "./dom.js";
import { ScheduleList } from "./schedules.js";
import { TaskList } from "./tasks.js";

const PERIOD = 2000;

function mount() {
  const sidebar = $("#sidebar");
  if (!sidebar) return;
  document.head.append(h("link", { rel: "stylesheet", href: "automation.css" }));
  const panel = h("section", { id: "automation", "aria-label": "Tasks and schedules" });
  sidebar.append(panel);
  const parts = [new TaskList(panel), new ScheduleList(panel)];
  let timer = null;
  const refresh = async () => {
    clearTimeout(timer);
    await Promise.all(parts.map((part) => part.refresh()));
    if (document.visibilityState !== "hidden") timer = setTimeout(refresh, PERIOD);
  };
  for (const part of parts) part.onChange = refresh;
  document.addEventListener("visibilitychange", refresh);
  refresh();
}

mount();
