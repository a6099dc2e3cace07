// Renaming and deleting the open conversation: an inline form for the title, an inline
// confirmation for the delete (nothing modal: the page's own elements, which tests and
// screen readers see like any other).

import { api, conversationPath } from "./api.js";
import { $ } from "./dom.js";

/** Wire the Rename and Delete buttons to `view` (the ConversationView); returns
 * `{hide}`, which folds both away (when another conversation opens). */
export function setUpEditing(view) {
  const form = $("#rename-form");
  const input = $("#rename-input");
  const confirm = $("#delete-confirm");

  function hide() {
    form.hidden = true;
    confirm.hidden = true;
    for (const error of [$(".error", form), $(".error", confirm)]) error.textContent = "";
  }

  $("#rename").addEventListener("click", () => {
    hide();
    form.hidden = false;
    input.value = view.values.title ?? "";
    input.select();
    input.focus();
  });
  $("#rename-cancel").addEventListener("click", hide);
  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const id = view.id;
    try {
      const info = await api(conversationPath(id), {
        method: "PATCH",
        body: { title: input.value.trim() },
      });
      if (id !== view.id) return;
      view.values = { ...view.values, ...info };
      hide();
      view.render();
      view.onChange();
      $("#conversation-title").focus();
    } catch (failure) {
      $(".error", form).textContent = failure.message;
    }
  });

  $("#delete").addEventListener("click", () => {
    hide();
    confirm.hidden = false;
    $("#delete-no").focus();
  });
  $("#delete-no").addEventListener("click", hide);
  $("#delete-yes").addEventListener("click", async () => {
    const id = view.id;
    const title = view.values.title ?? id;
    try {
      await api(conversationPath(id), { method: "DELETE" });
      hide();
      view.onDeleted(title);
    } catch (failure) {
      $(".error", confirm).textContent = failure.message;
    }
  });

  return { hide };
}
