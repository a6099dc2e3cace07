// Watch one threadline conversation with the official socket.io-client, connected the
// way the OpenHands frontend connects (websocket transport, conversation_id and
// latest_event_id in the query). Prints one JSON object per line:
//
//   {"type":"connect","latest_event_id":-1}       each (re)connection and what it asked for
//   {"type":"ack","ack":{"status":"ok",...}}      the answer to the oh_user_action sent
//   {"type":"event","id":3,"event":{...}}         each oh_event, as received
//   {"type":"drop","after_id":4}                  the deliberate drop (--drop-after)
//   {"type":"disconnect","reason":"..."}
//   {"type":"end","id":20,"state":"finished"}     an agent run ended: exit 0 (finished) or 1
//   {"type":"connect_error","message":"...","data":{...}}   refused by the server: exit 2
//   {"type":"timeout"}                            nothing ended in --timeout seconds: exit 3
//
// usage: node watch.mjs --url http://127.0.0.1:3000 --conversation ID
//          [--latest-event-id -1] [--drop-after N] [--send "text"] [--api-key KEY]
//          [--timeout 60]
import { parseArgs } from "node:util";

import { io } from "socket.io-client";

const ENDED = new Set(["finished", "stopped", "error", "rejected"]);

const { values: options } = parseArgs({
  options: {
    url: { type: "string" },
    conversation: { type: "string" },
    "latest-event-id": { type: "string", default: "-1" },
    "drop-after": { type: "string", default: "0" },
    send: { type: "string" },
    "api-key": { type: "string" },
    timeout: { type: "string", default: "60" },
  },
  strict: true,
});
if (!options.url) {
  process.stderr.write("watch.mjs: --url is required\n");
  process.exit(64);
}

const print = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);

const query = { latest_event_id: options["latest-event-id"] };
if (options.conversation !== undefined) query.conversation_id = options.conversation;
if (options["api-key"] !== undefined) query.session_api_key = options["api-key"];

const dropAfter = Number(options["drop-after"]);
let lastId = Number(options["latest-event-id"]);
let received = 0;
let dropped = !(dropAfter > 0);
let sent = options.send === undefined;
let acknowledged = sent;
let finished = false;

const socket = io(options.url, {
  transports: ["websocket"],
  query,
  // The frontend's defaults wait about a second before reconnecting; keep tests quick.
  reconnectionDelay: 100,
  reconnectionDelayMax: 500,
});

const timer = setTimeout(() => {
  print({ type: "timeout" });
  finish(3);
}, Number(options.timeout) * 1000);

function finish(code) {
  finished = true;
  clearTimeout(timer);
  process.exitCode = code;
  socket.disconnect();
}

// The drop happens once N events have arrived and the ack is in, so where it falls does
// not depend on timing. Closing the engine is what a network failure looks like to the
// client: the Manager reconnects by itself, and `reconnect_attempt` below sets the
// query's latest_event_id to the last id seen, so the server resumes right after it.
//
// It closes from a task of its own, not from inside the event handler: the Manager hands
// each decoded packet over in a microtask, so packets that arrived in the same read as
// this one are still queued; after the close they would reach the (now disconnected)
// Socket, which keeps them in its receive buffer and emits them on the next connect,
// before "connect" and before the server's replay of the very same events.
function maybeDrop() {
  if (dropped || !acknowledged || received < dropAfter) return;
  dropped = true;
  setTimeout(() => {
    if (finished) return;
    print({ type: "drop", after_id: lastId });
    socket.io.engine.close();
  }, 0);
}

socket.io.on("reconnect_attempt", () => {
  socket.io.opts.query.latest_event_id = String(lastId);
});

socket.on("connect", () => {
  print({ type: "connect", latest_event_id: Number(socket.io.opts.query.latest_event_id) });
  if (sent) return;
  sent = true;
  const action = {
    action: "message",
    args: { content: options.send, image_urls: [], wait_for_response: false },
  };
  socket.emit("oh_user_action", action, (ack) => {
    print({ type: "ack", ack });
    acknowledged = true;
    maybeDrop();
  });
});

socket.on("oh_event", (event) => {
  lastId = event.id;
  received += 1;
  print({ type: "event", id: event.id, event });
  const state = event.observation === "agent_state_changed" ? event.extras?.agent_state : null;
  if (ENDED.has(state)) {
    print({ type: "end", id: event.id, state });
    finish(state === "finished" ? 0 : 1);
    return;
  }
  maybeDrop();
});

socket.on("disconnect", (reason) => {
  print({ type: "disconnect", reason });
});

socket.on("connect_error", (error) => {
  if (socket.active) {
    // A transport failure: the Manager tries again by itself.
    print({ type: "connect_error", retrying: true, message: error.message });
    return;
  }
  // Refused by the server's connect handler: socket.io does not retry those.
  print({ type: "connect_error", message: error.message, data: error.data ?? null });
  finish(2);
});
