// A conversation's events over the plain WebSocket, resumed after any drop from the last
// id seen (`latest_event_id`), so the page gets every event once, in order.
//
// The server already promises no gap and no duplicate; the client checks anyway: an id it
// has seen is dropped, and an id that skips ahead makes it reconnect from the last one.

import { apiKey } from "./api.js";

const FIRST_DELAY = 250; // ms before the first reconnect; doubles up to MAX_DELAY
const MAX_DELAY = 5000;

export class EventStream {
  /**
   * onEvent(event) for each new event; onStatus({state, opens, retryIn, error}) whenever
   * the connection changes; onUnauthorized() when the server wants a key (no retry until
   * `reconnect()`). Nothing happens before `start()`.
   */
  constructor(conversationId, { onEvent, onStatus, onUnauthorized }) {
    this.conversationId = conversationId;
    this.handlers = { onEvent, onStatus, onUnauthorized };
    this.lastId = -1;
    this.opens = 0;
    this.delay = FIRST_DELAY;
    this.socket = null;
    this.timer = null;
    this.closed = false;
    this.onOnline = () => this.reconnect();
  }

  start() {
    window.addEventListener("online", this.onOnline);
    this.connect();
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = new URL(
      `/api/conversations/${encodeURIComponent(this.conversationId)}/events`,
      `${scheme}//${location.host}`,
    );
    url.searchParams.set("latest_event_id", String(this.lastId));
    const key = apiKey.get();
    if (key) url.searchParams.set("session_api_key", key);
    return url;
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.closed) return;
    const socket = new WebSocket(this.url());
    this.socket = socket;
    let refusal = null; // the server explains a refusal in one message, then closes
    this.status("connecting");
    socket.onopen = () => {
      this.opens += 1;
      this.delay = FIRST_DELAY;
      this.status("open");
    };
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (typeof data.id !== "number") {
        refusal = data;
        return;
      }
      if (data.id <= this.lastId) return; // seen already
      if (data.id !== this.lastId + 1) {
        socket.close(4000, "gap"); // resume from what we have
        return;
      }
      this.lastId = data.id;
      this.handlers.onEvent(data);
    };
    socket.onclose = (close) => {
      if (this.socket !== socket || this.closed) return;
      this.socket = null;
      if (close.code === 4401) {
        this.status("unauthorized", refusal?.message);
        this.handlers.onUnauthorized?.();
      } else if (close.code >= 4400 && close.code < 4500) {
        this.status("refused", refusal?.message ?? close.reason); // 404, 400: retrying won't help
      } else {
        this.retry();
      }
    };
  }

  retry() {
    const wait = this.delay * (0.75 + Math.random() / 2);
    this.delay = Math.min(this.delay * 2, MAX_DELAY);
    this.status("waiting", null, wait);
    this.timer = setTimeout(() => this.connect(), wait);
  }

  /** Connect again now (a key was entered, the network is back). */
  reconnect() {
    if (this.closed || this.socket?.readyState === WebSocket.OPEN) return;
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close();
      this.socket = null;
    }
    this.connect();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    window.removeEventListener("online", this.onOnline);
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close(1000);
    }
  }

  status(state, error = null, retryIn = null) {
    this.handlers.onStatus?.({ state, opens: this.opens, error, retryIn });
  }
}
