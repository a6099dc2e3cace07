// The replay bar: watch a finished conversation "as it happened".
//
// The conversation view keeps every event on screen; while a replay runs, the bar hides
// those after its position and reveals each one when the server's paced replay
// (`replay=1` on the WebSocket) delivers it, so scrubbing back and forth costs nothing.
// Play/pause, the speed and the scrubber send the replay's controls; the server answers
// each with a notice (`{"replay": ..., "state": ...}`) in order with the events.

import { apiKey } from "./api.js";
import { $, h } from "./dom.js";

const SPEEDS = [1, 2, 4, 8, 16, 64];
const MAX_GAP = 5; // seconds: a long idle stretch of the recording is cut to this
const LIVE = new Set(["RUNNING", "STARTING", "QUEUED"]);

export class ReplayBar {
  constructor(view) {
    this.view = view; // the ConversationView: its id, values and #events
    this.socket = null;
    this.state = "idle"; // idle | playing | paused | ended
    this.position = null; // the last event revealed; null: everything is shown
    this.lastId = -1;
    this.play = h("button", { type: "button", id: "replay-play", onclick: () => this.toggle() });
    this.speed = h(
      "select",
      { id: "replay-speed", "aria-label": "Replay speed", onchange: () => this.changeSpeed() },
      SPEEDS.map((speed) => h("option", { value: speed }, `${speed}×`)),
    );
    this.speed.value = "4";
    this.scrubber = h("input", {
      type: "range",
      id: "replay-scrubber",
      min: 0,
      max: 0,
      value: 0,
      "aria-label": "Replay position",
      onchange: () => this.seek(Number(this.scrubber.value)),
    });
    this.label = h("span", { id: "replay-position", class: "replay-position" });
    this.element = h(
      "div",
      { id: "replay-bar", class: "replay-bar", role: "group", "aria-label": "Replay", hidden: true },
      this.play,
      this.speed,
      this.scrubber,
      this.label,
    );
    $("#events").before(this.element);
    // Events join the view's list as they stream in: follow its length.
    new MutationObserver(() => this.eventsChanged()).observe($("#events"), { childList: true });
    if (!$("link[href='replay.css']")) {
      document.head.append(h("link", { rel: "stylesheet", href: "replay.css" }));
    }
    this.render();
  }

  /** The view's conversation or its values changed. */
  update() {
    const values = this.view.values;
    const finished = values.status !== undefined && !LIVE.has(values.status);
    this.element.hidden = !finished;
    if (!finished && (this.socket || this.position !== null)) this.stop();
    this.eventsChanged();
  }

  eventsChanged() {
    let last = -1;
    for (const id of this.view.shown.keys()) last = Math.max(last, id);
    if (last === this.lastId) return;
    this.lastId = last;
    this.scrubber.max = String(Math.max(last, 0));
    if (this.position !== null) this.reveal(this.position); // hide what just joined
    this.render();
  }

  /** The conversation closed, or went live again: back to showing everything. */
  stop() {
    this.socket?.close();
    this.socket = null;
    this.state = "idle";
    this.reveal(null);
  }

  toggle() {
    if (this.state === "playing") this.send({ command: "pause" });
    else if (this.state === "paused") this.send({ command: "resume" });
    else this.start(this.state === "ended" || this.position === null ? 0 : this.position + 1);
  }

  changeSpeed() {
    if (this.socket) this.send({ command: "speed", speed: Number(this.speed.value) });
  }

  seek(id) {
    this.reveal(id);
    this.send({ command: "seek", id }); // playing on from there, if a replay is open
  }

  start(fromId) {
    this.socket?.close();
    this.reveal(fromId - 1);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = new URL(
      `/api/conversations/${encodeURIComponent(this.view.id)}/events`,
      `${scheme}//${location.host}`,
    );
    for (const [name, value] of Object.entries({
      replay: 1,
      from_id: fromId,
      speed: this.speed.value,
      max_gap: MAX_GAP,
    })) {
      url.searchParams.set(name, String(value));
    }
    const key = apiKey.get();
    if (key) url.searchParams.set("session_api_key", key);
    const socket = new WebSocket(url);
    this.socket = socket;
    this.state = "playing";
    socket.onmessage = (message) => {
      if (this.socket !== socket) return;
      const data = JSON.parse(message.data);
      if (typeof data.replay === "string") this.notice(data);
      else if (typeof data.id === "number") this.reveal(data.id);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.state !== "ended") this.stop();
    };
    this.render();
  }

  notice(data) {
    this.state = data.state;
    if (data.state === "ended") {
      this.socket?.close();
      this.socket = null;
      this.reveal(null);
    }
    this.render();
  }

  send(control) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(control));
  }

  /** Show the events up to `id` (null: all of them). */
  reveal(id) {
    this.position = id;
    // A row can stand for more than one event (a plan action joined by its answer): it
    // shows from its first event on.
    const firstId = new Map();
    for (const [eventId, element] of this.view.shown) {
      if (element && !firstId.has(element)) firstId.set(element, eventId);
    }
    let latest = null;
    for (const [element, eventId] of firstId) {
      const visible = id === null || eventId <= id;
      element.style.display = visible ? "" : "none";
      if (visible && (latest === null || eventId > latest.eventId)) latest = { element, eventId };
    }
    latest?.element.scrollIntoView({ block: "nearest" });
    this.render();
  }

  render() {
    const shown = this.position === null ? this.lastId : this.position;
    this.scrubber.value = String(Math.max(shown, 0));
    this.play.textContent =
      this.state === "playing" ? "Pause" : this.state === "paused" ? "Resume" : "Replay";
    this.play.setAttribute("aria-pressed", String(this.state === "playing"));
    this.element.dataset.state = this.state;
    this.label.textContent =
      this.lastId < 0
        ? "no events"
        : shown < 0
          ? `start of ${this.lastId}`
          : `event ${shown} of ${this.lastId}`;
  }
}
