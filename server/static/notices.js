// The notice line at the top. Each part of the page owns its notice (`source`) and takes
// it back when it no longer holds: the list clears a load failure when a load succeeds,
// the conversation view clears a control's answer when the agent's state moves on. So a
// notice never outlives what it was about.

import { $ } from "./dom.js";

const shown = new Map(); // source → text, in the order they were shown

function render() {
  const texts = [...shown.values()];
  $("#notice").textContent = texts.at(-1) ?? "";
}

export const notices = {
  show(source, text) {
    shown.delete(source);
    if (text) shown.set(source, text);
    render();
  },
  clear(source) {
    if (shown.delete(source)) render();
  },
  clearAll() {
    shown.clear();
    render();
  },
};
