// The REST API and the API key. The key lives in sessionStorage (this tab only, gone when
// it closes) and goes out as X-Session-API-Key; a 401 anywhere asks the page for a key.

const KEY = "threadline.apiKey";

export const apiKey = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (key) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error ?? "http_error";
    this.field = body?.field;
  }
}

/** Fired on window when the server wants a (valid) key: the page shows the key field. */
export const UNAUTHORIZED = "threadline:unauthorized";

/** `api("/api/conversations", {query: {limit: 20}})`, `api(path, {method: "POST", body})`. */
export async function api(path, { method = "GET", body, query } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  const key = apiKey.get();
  if (key) headers["X-Session-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401)
      window.dispatchEvent(new CustomEvent(UNAUTHORIZED, { detail: error }));
    throw error;
  }
  return data;
}

export const conversationPath = (id, rest = "") =>
  `/api/conversations/${encodeURIComponent(id)}${rest}`;
