// Drive one page in Debian's chromium (never a downloaded browser) for the Python tests:
// they write one command per line on stdin, this answers one JSON line each on stdout.
//
//   {"op": "goto", "url": "http://..."}
//   {"op": "reload"}
//   {"op": "click", "selector": "#pause"}
//   {"op": "fill", "selector": "#message-input", "value": "hi"}
//   {"op": "press", "selector": "#message-input", "key": "Control+Enter"}
//   {"op": "check", "selector": "input[value=run]"}
//   {"op": "select", "selector": "select[name=source]", "value": "agent"}
//   {"op": "wait", "expression": "(n) => ...", "arg": 3, "timeout": 20}  until truthy
//   {"op": "eval", "expression": "(arg) => ...", "arg": null}
//   {"op": "viewport", "width": 390, "height": 844}
//   {"op": "screenshot", "path": "/abs/file.png", "fullPage": false}
//   {"op": "errors"}        the page's uncaught errors and console errors so far
//
// Answers: {"ok": true, "value": ...} or {"ok": false, "error": "...", "snapshot": ...}.
// A failed wait also reports what the page shows (`snapshot`), for the test's message.
//
// usage: node page.mjs [--width 1280 --height 900]
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

const { values: options } = parseArgs({
  options: {
    width: { type: "string", default: "1280" },
    height: { type: "string", default: "900" },
  },
  strict: true,
});

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
  ],
});
const context = await browser.newContext({
  viewport: { width: Number(options.width), height: Number(options.height) },
  deviceScaleFactor: 1,
});
const page = await context.newPage();
page.setDefaultTimeout(20_000);
const errors = [];
page.on("pageerror", (error) => errors.push({ kind: "pageerror", text: String(error) }));
page.on("console", (message) => {
  if (message.type() === "error") errors.push({ kind: "console", text: message.text() });
});

// What the page shows, for failure messages.
const snapshot = () =>
  page
    .evaluate(() => ({
      hash: location.hash,
      notice: document.querySelector("#notice")?.textContent,
      state: document.querySelector("#agent-state")?.textContent,
      connection: document.querySelector("#connection")?.textContent,
      events: [...document.querySelectorAll("#events > li")].map(
        (li) => `${li.dataset.id} ${li.dataset.kind}`,
      ),
    }))
    .catch((error) => String(error));

// page.evaluate of "(arg) => ..." source text: the tests send functions as strings.
const call = (expression, arg) => page.evaluate(`(${expression})(${JSON.stringify(arg ?? null)})`);

const operations = {
  goto: ({ url }) => page.goto(url).then(() => null),
  reload: () => page.reload().then(() => null),
  click: ({ selector }) => page.click(selector),
  fill: ({ selector, value }) => page.fill(selector, value),
  press: ({ selector, key }) => page.press(selector, key),
  check: ({ selector }) => page.check(selector),
  select: ({ selector, value }) => page.selectOption(selector, value).then(() => null),
  wait: async ({ expression, arg, timeout = 20 }) => {
    // Polled from here: waitForFunction would eval a string in the page, which the page's
    // Content-Security-Policy (rightly) forbids.
    const deadline = Date.now() + timeout * 1000;
    for (;;) {
      const value = await call(expression, arg);
      if (value) return value;
      if (Date.now() > deadline)
        throw new Error(`timed out after ${timeout} s waiting for ${expression}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  },
  eval: ({ expression, arg }) => call(expression, arg),
  viewport: ({ width, height }) => page.setViewportSize({ width, height }),
  screenshot: ({ path, fullPage = false }) => page.screenshot({ path, fullPage }).then(() => null),
  errors: () => errors,
};

const print = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);
try {
  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const command = JSON.parse(line);
    try {
      const value = await operations[command.op](command);
      print({ ok: true, value: value ?? null });
    } catch (error) {
      print({
        ok: false,
        error: String(error.message ?? error).split("\n")[0],
        snapshot: await snapshot(),
      });
    }
  }
} finally {
  await browser.close();
}
