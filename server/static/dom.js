// Building DOM from data without ever parsing it as HTML: every string becomes a text
// node or an attribute value, so nothing the server sends can turn into markup.

/**
 * h("li", {class: "event", dataset: {id: 3}}, "text", child, null, [more]) → element.
 * Attributes: `class`, `dataset`, `on<event>` handlers, boolean `hidden`/`disabled`, and
 * anything else through setAttribute. Children: strings (text), nodes, arrays, or null.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace an element's children. */
export function fill(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

export const $ = (selector, root = document) => root.querySelector(selector);

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

/** <time> for an ISO stamp; `short` shows the time of day only. */
export function time(iso, { short = false } = {}) {
  if (!iso) return h("span", {}, "—");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", {}, iso);
  return h("time", { datetime: iso }, (short ? timeOnly : dateTime).format(date));
}

/** "0.009 USD", "1.50 EUR": every digit the server sent (it rounds to millionths), at
 * least the cents, and the currency. */
export function cost(value, currency = "") {
  if (typeof value !== "number") return "—";
  const digits = Math.min(6, Math.max(2, (String(value).split(".")[1] ?? "").length));
  return `${value.toFixed(digits)}${currency ? ` ${currency}` : ""}`;
}

/** A short one-line version of a long text. */
export function gist(text, length = 120) {
  const line = String(text ?? "")
    .replace(/\s+/g, " ")
    .trim();
  return line.length > length ? `${line.slice(0, length - 1)}…` : line;
}
