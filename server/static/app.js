// threadline's page: wires the list, the conversation view, search and the API key.
// Routes live in the fragment: #/ (nothing open), #/c/<id>, #/c/<id>/<event id>.

import { apiKey, UNAUTHORIZED } from "./api.js";
import { $ } from "./dom.js";
import { ConversationView } from "./conversation.js";
import { ConversationList, setUpCreateForm } from "./list.js";
import { notices } from "./notices.js";
import { setUpGlobalSearch, setUpHistorySearch } from "./search.js";

const keyForm = $("#key-form");

function askForKey() {
  if (!keyForm.hidden) return;
  keyForm.hidden = false;
  $("#key-error").textContent = apiKey.get() ? "The server refused that key." : "";
  $("#key-input").focus();
}

const list = new ConversationList({
  onError: (error) => {
    if (error.status !== 401) notices.show("list", `Could not load the conversations: ${error.message}`);
  },
  onLoaded: (count) => {
    notices.clear("list");
    showWelcome(count);
  },
});
const view = new ConversationView({
  onChange: () => list.refresh(),
  onUnauthorized: askForKey,
  onDeleted: (title) => {
    location.hash = "#/";
    notices.show("deleted", `Deleted “${title}”.`);
    list.refresh();
  },
});
const history = setUpHistorySearch(() => view.id);
setUpGlobalSearch();
setUpCreateForm((id) => {
  location.hash = `#/c/${encodeURIComponent(id)}`;
  list.refresh();
});

// The fragment holds the route, so the skip link moves the focus itself.
$(".skip").addEventListener("click", (click) => {
  click.preventDefault();
  (view.id ? $("#conversation-title") : $("#create-form textarea")).focus();
});

window.addEventListener(UNAUTHORIZED, askForKey);
keyForm.addEventListener("submit", (submit) => {
  submit.preventDefault();
  apiKey.set($("#key-input").value.trim());
  $("#key-input").value = "";
  keyForm.hidden = true;
  notices.show("key", "Key saved for this tab.");
  list.refresh();
  view.retry();
});

/** The welcome pane: what to do when there is nothing yet, else a pointer to the list. */
function showWelcome(count) {
  $("#welcome-empty").hidden = count !== 0;
  $("#welcome-some").hidden = count === 0;
  if (count === 0) $("#create").open = true;
}

$("#welcome-create").addEventListener("click", () => {
  $("#create").open = true;
  $("#create-form textarea").focus();
});

function route() {
  notices.clear("key");
  const match = /^#\/c\/([^/]+)(?:\/(\d+))?$/.exec(location.hash);
  const layout = document.body;
  if (!match) {
    view.close();
    list.highlight(null);
    $("#welcome").hidden = false;
    layout.dataset.view = "list";
    document.title = "threadline";
    return;
  }
  const id = decodeURIComponent(match[1]);
  const opening = view.id !== id;
  $("#welcome").hidden = true;
  layout.dataset.view = "conversation";
  if (opening) history.switchTo(id);
  view.open(id, match[2] === undefined ? null : Number(match[2]));
  list.highlight(id);
  if (opening) $("#conversation-title").focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
route();
list.start();
