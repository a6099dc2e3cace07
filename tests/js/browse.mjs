// Open a page in Debian's chromium (never a downloaded browser) and report, as JSON lines,
// the event ids it shows each time one more `finished` agent state has appeared:
//
//   {"type":"finished","count":1,"ids":[0,1,...],"opens":1}
//   {"type":"console","level":"error","text":"..."}     the page's console errors
//   {"type":"timeout","ids":[...]}                      exit 3
//
// usage: node browse.mjs --page URL [--finishes 1] [--timeout 60]
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

const { values: options } = parseArgs({
  options: {
    page: { type: "string" },
    finishes: { type: "string", default: "1" },
    timeout: { type: "string", default: "60" },
  },
  strict: true,
});
if (!options.page) {
  process.stderr.write("browse.mjs: --page is required\n");
  process.exit(64);
}

const print = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);
const timeout = Number(options.timeout) * 1000;

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
try {
  const page = await browser.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") print({ type: "console", level: "error", text: message.text() });
  });
  page.on("pageerror", (error) => print({ type: "console", level: "pageerror", text: String(error) }));
  const shown = () =>
    page.evaluate(() => ({
      ids: [...document.querySelectorAll("#events li")].map((item) => Number(item.dataset.id)),
      opens: Number(document.querySelector("#status").dataset.opens ?? 0),
      status: document.querySelector("#status").textContent,
    }));

  await page.goto(options.page);
  for (let count = 1; count <= Number(options.finishes); count += 1) {
    try {
      await page.waitForFunction(
        (n) => document.querySelectorAll('#events li[data-agent-state="finished"]').length >= n,
        count,
        { timeout },
      );
    } catch (error) {
      print({ type: "timeout", waiting_for: count, ...(await shown()) });
      process.exitCode = 3;
      break;
    }
    print({ type: "finished", count, ...(await shown()) });
  }
} finally {
  await browser.close();
}
