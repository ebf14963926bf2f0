// The browser console, checked in headless Chromium (Debian's, driven by
// playwright-core). Run by tests/browser.rs against a real wsd:
//
//   node console.mjs open BASE_URL CHROMIUM OUT_DIR
//   node console.mjs key  BASE_URL CHROMIUM OUT_DIR API_KEY
//
// "open" is a server on loopback (no key); "key" one that asks for a key.
// Prints "ok - CHECK" for every check passed, exits 1 at the first failure.
// docs/screenshots.sh runs "open" with OUT_DIR=docs for the README's images.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [suite, base, executablePath, outDir, apiKey] = process.argv.slice(2);
if (!["open", "key"].includes(suite) || !base || !executablePath || !outDir) {
  console.error("usage: node console.mjs open|key BASE_URL CHROMIUM OUT_DIR [API_KEY]");
  process.exit(2);
}
if (suite === "key" && !apiKey) {
  console.error("the key suite needs the API key as its fifth argument");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

// Every wait is bounded; a loaded 2-core machine gets generous time.
const BOUND = 15000;
const wsBase = base.replace(/^http/, "ws");

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function ok(name) {
  console.log(`ok - ${name}`);
}

/** Publishes like `curl -d TEXT BASE/channels/NAME`. */
async function publish(channel, text, key) {
  const res = await fetch(`${base}/channels/${encodeURIComponent(channel)}`, {
    method: "POST",
    headers: { "Content-Type": "text/plain", ...(key ? { Authorization: `Bearer ${key}` } : {}) },
    body: text,
  });
  const answer = await res.json();
  check(res.ok, `publish to ${channel}: HTTP ${res.status} ${JSON.stringify(answer)}`);
  return answer;
}

const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
  timeout: BOUND,
});
const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: "light" });
context.setDefaultTimeout(BOUND);
const page = await context.newPage();

// Anything that goes wrong in the page fails the run: a script error, a
// CSP violation (reported on the console), or a dialog (an alert would
// mean that a message became markup).
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => {
  // Refusals the checks cause on purpose are logged by Chromium as errors.
  const expected = /WebSocket connection to .* failed|the server responded with a status of 401/;
  if (m.type() === "error" && !expected.test(m.text())) {
    problems.push(`console error: ${m.text()}`);
  }
});
let dialogs = 0;
page.on("dialog", (d) => { dialogs += 1; d.dismiss(); });

/** The text of every line of a log, oldest first. */
const lines = (list) => page.$$eval(`#${list} li`, (lis) => lis.map((li) => li.textContent));

async function waitLine(list, ...parts) {
  await page.waitForFunction(
    ({ list, parts }) => [...document.querySelectorAll(`#${list} li`)]
      .some((li) => parts.every((p) => li.textContent.includes(p))),
    { list, parts },
    { timeout: BOUND },
  ).catch(async () => {
    throw new Error(`no line in #${list} with ${JSON.stringify(parts)}; last lines: ${JSON.stringify((await lines(list)).slice(-5))}`);
  });
}

async function waitText(selector, part) {
  await page.waitForFunction(
    ({ selector, part }) => (document.querySelector(selector)?.textContent || "").includes(part),
    { selector, part },
    { timeout: BOUND },
  ).catch(async () => {
    const now = await page.$eval(selector, (e) => e.textContent).catch(() => "(missing)");
    throw new Error(`${selector} never showed ${JSON.stringify(part)}; it shows ${JSON.stringify(now)}`);
  });
}

/** The dashboard's figure `id` as a number (NaN before the first snapshot). */
const figure = (id) => page.$eval(`#stat-${id} .value`, (e) => Number(e.textContent.replace(/,/g, "")));

async function waitFigure(id, want) {
  await page.waitForFunction(
    ({ id, want }) => Number(document.querySelector(`#stat-${id} .value`).textContent.replace(/,/g, "")) === want,
    { id, want },
    { timeout: BOUND },
  ).catch(async () => {
    throw new Error(`the dashboard's ${id} stayed at ${await figure(id)}, expected ${want}`);
  });
}

/** `n` WebSocket clients in a page of their own (not the console's). */
async function extraClients(path, n) {
  const other = await context.newPage();
  await other.goto(`${base}/console/favicon.svg`);
  await other.evaluate(async ({ url, n }) => {
    window.clients = [];
    await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
      window.clients.push(ws);
    })));
  }, { url: `${wsBase}${path}`, n });
  return other;
}

/**
 * For docs/screenshots.sh (DWELL_SECS, default 0): light traffic for a
 * while, so the dashboard's charts have something to show. Bounded by time.
 */
async function dwell() {
  const secs = Number(process.env.DWELL_SECS || 0);
  if (!secs) return;
  const other = await extraClients("/", 1);
  const until = Date.now() + secs * 1000;
  for (let i = 0; Date.now() < until; i++) {
    await publish("lobby", `tick ${i}`);
    await other.evaluate((n) => { for (let j = 0; j < n; j++) window.clients[0].send(`m${j}`); }, 20 + (i % 40));
    if (i % 8 === 0) await (await extraClients("/", 2)).close();
    await new Promise((r) => setTimeout(r, 250));
  }
  await other.close();
}

async function openSuite() {
  // A browser opening the server's address is sent to the console.
  const res = await page.goto(`${base}/`);
  check(new URL(page.url()).pathname === "/console", `GET / led to ${page.url()}`);
  const csp = res.headers()["content-security-policy"] || "";
  check(csp.includes("default-src 'none'") && csp.includes("script-src 'self'") && !csp.includes("unsafe"),
    `weak or missing CSP: ${csp}`);
  await page.waitForSelector("#main:not([hidden])");
  check(await page.isHidden("#key-panel"), "a loopback server asked for a key");
  ok("a browser opening / lands on /console, served with a strict CSP, no key asked on loopback");

  // Connect to the prefilled echo endpoint; Enter sends.
  const url = await page.inputValue("#url");
  check(url === `${wsBase}/`, `the URL field holds ${url}, not this server's echo endpoint`);
  await page.click("#connect");
  await waitText("#conn-state", "open");
  await page.fill("#message", "hello");
  await page.press("#message", "Enter");
  await waitLine("log", "←", "Server received: hello", "22 B");
  await waitLine("log", "→", "hello", "5 B");
  check(await page.inputValue("#message") === "", "the message field was not cleared");
  ok("connect, send hello with Enter, see Server received: hello");

  // Binary as hex both ways.
  await page.selectOption("#send-kind", "hex");
  await page.fill("#message", "00 ff 10 41");
  await page.press("#message", "Enter");
  await waitLine("log", "←", "binary", "00 ff 10 41", "4 B");
  await page.selectOption("#send-kind", "text");

  // A message that would be markup stays text.
  const evil = "<img src=x onerror=alert(1)>";
  await page.fill("#message", evil);
  await page.press("#message", "Enter");
  await waitLine("log", "←", `Server received: ${evil}`);
  check(await page.$$eval("#log img, #log script", (e) => e.length) === 0, "the message became an element");
  check(dialogs === 0, "a dialog fired");
  ok("a message holding <img src=x onerror=alert(1)> is shown as text and no dialog fires");

  // Copy a line.
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  const echoed = page.locator("#log li.in", { hasText: "Server received: hello" }).first();
  await echoed.locator("button.copy").click();
  await page.waitForFunction(() => document.querySelector("#log li.in button.copy.done") !== null);
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  check(copied === "Server received: hello", `copied ${JSON.stringify(copied)}`);
  ok("a line's copy button copies its message");

  await page.screenshot({ path: join(outDir, "console.png") });

  await page.selectOption("#send-kind", "hex");
  await page.fill("#message", "zz");
  await page.press("#message", "Enter");
  await waitText("#conn-state", "not hex");
  await page.selectOption("#send-kind", "text");
  ok("binary sent as hex and shown as hex; bad hex is refused with a message");

  // Disconnect: the close code in words.
  await page.click("#disconnect");
  await waitText("#conn-state", "closed: 1000 normal closure");
  ok("disconnect shows the close code in words");

  // Channels: subscribe, then a publication from outside.
  await page.click("#tab-channels");
  await page.fill("#sub-names", "lobby");
  await page.press("#sub-names", "Enter");
  await waitText("#subs tbody", "live");
  const first = await publish("lobby", "first");
  await waitLine("deliveries", `lobby #${first.offset}`, "first");
  ok(`subscribe in JSON mode, publish over HTTP, see the delivery with its offset (#${first.offset})`);

  await publish("lobby", evil);
  await waitLine("deliveries", evil);
  check(await page.$$eval("#deliveries img", (e) => e.length) === 0 && dialogs === 0, "a delivery became markup");

  // Disconnect, miss two, reconnect with recovery.
  await page.click("#ch-disconnect");
  await waitText("#ch-state", "closed: 1000");
  const second = await publish("lobby", "second");
  const third = await publish("lobby", "third");
  await page.click("#ch-connect");
  await waitText("#subs tbody", "recovered");
  await waitLine("deliveries", `lobby #${second.offset} (recovered)`, "second");
  await waitLine("deliveries", `lobby #${third.offset} (recovered)`, "third");
  await waitLine("deliveries", "recovered: 2 missed publication(s) replayed");
  ok("disconnect, two publications missed, reconnect with since: both replayed, shown as recovered");

  // Where history cannot cover the gap, the page says so.
  await page.fill("#sub-names", "nohist:a");
  await page.press("#sub-names", "Enter");
  await waitText("#subs tbody", "nohist:a");
  await page.waitForFunction(() => [...document.querySelectorAll("#subs tbody tr")]
    .some((tr) => tr.textContent.startsWith("nohist:a") && tr.textContent.includes("live")));
  const lost = await publish("nohist:a", "seen");
  await waitLine("deliveries", `nohist:a #${lost.offset}`, "seen");
  await page.click("#ch-disconnect");
  await waitText("#ch-state", "closed");
  await publish("nohist:a", "lost");
  await page.click("#ch-connect");
  await page.waitForFunction(() => [...document.querySelectorAll("#subs tbody tr")]
    .some((tr) => tr.textContent.startsWith("nohist:a") && tr.textContent.includes("gap")));
  await waitLine("deliveries", "nohist:a", "gap: could not recover");
  ok("a recovery history cannot cover is shown as a gap");

  // Publish from the page, over the WebSocket and over the HTTP API.
  await page.fill("#pub-channel", "lobby");
  await page.fill("#pub-data", "over the socket");
  await page.press("#pub-data", "Enter");
  await waitText("#pub-result", "over the WebSocket: offset");
  await waitLine("deliveries", "lobby #", "over the socket");
  await page.selectOption("#pub-via", "http");
  await page.fill("#pub-data", "over http");
  await page.press("#pub-data", "Enter");
  await waitText("#pub-result", "over the HTTP API: offset");
  await waitLine("deliveries", "lobby #", "over http");
  ok("publish from the page over the WebSocket and over the HTTP API");

  // Presence where the namespace has it.
  await page.fill("#sub-names", "room:1");
  await page.press("#sub-names", "Enter");
  const presence = () => page.$$eval("#subs tbody tr", (trs) =>
    trs.filter((tr) => tr.firstChild.textContent === "room:1").map((tr) => tr.querySelector(".presence").textContent)[0]);
  await page.waitForFunction(() => [...document.querySelectorAll("#subs tbody tr")]
    .some((tr) => tr.firstChild.textContent === "room:1" && tr.querySelector(".presence").textContent.startsWith("1:")))
    .catch(async () => { throw new Error(`presence shows ${await presence()}`); });
  const member = await extraClients("/channels/room:1?format=json", 1);
  await page.waitForFunction(() => [...document.querySelectorAll("#subs tbody tr")]
    .some((tr) => tr.firstChild.textContent === "room:1" && tr.querySelector(".presence").textContent.startsWith("2:")))
    .catch(async () => { throw new Error(`presence shows ${await presence()} with a second member`); });
  await member.close();
  await page.waitForFunction(() => [...document.querySelectorAll("#subs tbody tr")]
    .some((tr) => tr.firstChild.textContent === "room:1" && tr.querySelector(".presence").textContent.startsWith("1:")));
  ok("presence: members shown where the namespace tracks it, joins and leaves followed");

  // Active channels with subscriber counts.
  await page.click("#active-refresh");
  await page.waitForFunction(() => [...document.querySelectorAll("#active tbody tr")]
    .some((tr) => tr.cells[0].textContent === "lobby" && tr.cells[1].textContent === "1"));
  ok("the active channels are listed with their subscriber counts");
  await page.screenshot({ path: join(outDir, "channels.png") });

  // The dashboard follows the server: three more clients, then none.
  await page.click("#tab-dashboard");
  await waitText("#stream-state", "live");
  // The baseline is the server's own count (sessions that just left are
  // gone from it), once a snapshot shows it.
  const health = await (await fetch(`${base}/healthz`)).json();
  const before = health.sessions;
  await waitFigure("sessions", before);
  const three = await extraClients("/", 3);
  await waitFigure("sessions", before + 3);
  await three.close();
  await waitFigure("sessions", before);
  await waitText("#stat-version .value", ".");
  await waitText("#stat-engine .value", "up");
  check(await figure("deliveries") >= 0 && await figure("connects") >= 0, "rates missing");
  ok(`the dashboard's session count rises by three while three clients are connected (${before} -> ${before + 3}) and falls back`);
  await dwell();
  await page.screenshot({ path: join(outDir, "dashboard.png") });

  // The log stays bounded: 10,050 echoes make 20,100 lines, 10,000 are kept.
  await page.click("#tab-console");
  await page.click("#connect");
  await waitText("#conn-state", "open");
  const flood = Date.now();
  await page.evaluate(() => {
    const input = document.getElementById("message");
    for (let i = 0; i < 10050; i++) {
      input.value = `m${i}`;
      send(); // the page's own send, as Enter calls it
    }
  });
  // Only the last line is looked at: scanning 10,000 on every poll would
  // make the check, not the page, the slow part.
  await page.waitForFunction(
    () => (document.querySelector("#log li:last-child")?.textContent || "").includes("Server received: m10049"),
    null,
    { timeout: 4 * BOUND, polling: 100 },
  ).catch(async () => {
    throw new Error(`the flood's last echo never showed; last line: ${await page.$eval("#log li:last-child", (e) => e.textContent)}`);
  });
  const flooded = ((Date.now() - flood) / 1000).toFixed(1);
  const kept = await page.$$eval("#log li", (lis) => [lis.length, lis[0].textContent]);
  check(kept[0] === 10000, `the log holds ${kept[0]} lines`);
  check(!kept[1].includes("hello"), "the oldest lines were not dropped");
  await waitText("#log-count", "dropped");
  // One more message with the log full: typed, sent, echoed and shown.
  const one = Date.now();
  await page.fill("#message", "one more");
  await page.press("#message", "Enter");
  await page.waitForFunction(
    () => (document.querySelector("#log li:last-child")?.textContent || "").includes("Server received: one more"),
    null,
    { polling: "raf" },
  );
  const oneMore = Date.now() - one;
  check(await page.$$eval("#log li", (lis) => lis.length) === 10000, "the full log grew");
  // How long it took is reported, never asserted.
  ok(`the log keeps the newest 10,000 lines and drops the oldest (10,050 sent and echoed in ${flooded} s; one more with the log full shown in ${oneMore} ms)`);

  // A phone-sized screen: nothing wider than the screen, on every tab.
  await page.setViewportSize({ width: 390, height: 844 });
  for (const tab of ["console", "channels", "dashboard"]) {
    await page.click(`#tab-${tab}`);
    const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    check(scroll <= width, `the ${tab} tab is ${scroll}px wide on a ${width}px screen`);
  }
  ok("usable on a phone-sized screen (no tab is wider than 390px)");

  // The dark theme follows the system.
  const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const light = await background();
  await page.emulateMedia({ colorScheme: "dark" });
  const dark = await background();
  check(light === "rgb(247, 247, 248)" && dark === "rgb(17, 19, 23)", `backgrounds: light ${light}, dark ${dark}`);
  ok("the dark theme follows prefers-color-scheme");
}

async function keySuite() {
  await page.goto(`${base}/`);
  await page.waitForSelector("#key-panel:not([hidden])");
  check(await page.isHidden("#main"), "the console showed without a key");
  await waitText("#stream-state", "locked");
  // The stats stream itself refuses a browser without the key.
  const refused = await page.evaluate((url) => new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.onopen = () => resolve("opened");
    ws.onclose = (e) => resolve(`closed ${e.code}`);
  }), `${wsBase}/console/stats`);
  check(refused === "closed 1006", `the stats stream without a key: ${refused}`);
  ok("a server that requires a key asks for it, and its stats stream refuses a browser without it");

  await page.fill("#key-input", "not-the-key-at-all");
  await page.press("#key-input", "Enter");
  await waitText("#key-error", "unknown API key");
  ok("a wrong key is refused with a message");

  await page.fill("#key-input", apiKey);
  await page.press("#key-input", "Enter");
  await page.waitForSelector("#main:not([hidden])");
  await page.click("#tab-dashboard");
  await waitText("#stream-state", "live");
  await page.waitForFunction(() => /^\d/.test(document.querySelector("#stat-sessions .value").textContent));
  ok("the right key unlocks the console and its live stats");

  // The HTTP API gets the key from the key field.
  await page.click("#tab-channels");
  check(await page.inputValue("#pub-key") === apiKey, "the API key field is not prefilled");
  await page.fill("#sub-names", "lobby");
  await page.press("#sub-names", "Enter");
  await waitText("#subs tbody", "live");
  await page.fill("#pub-channel", "lobby");
  await page.selectOption("#pub-via", "http");
  await page.fill("#pub-data", "with the key");
  await page.press("#pub-data", "Enter");
  await waitLine("deliveries", "lobby #", "with the key");
  await page.fill("#pub-key", "");
  await page.fill("#pub-data", "without");
  await page.press("#pub-data", "Enter");
  await waitText("#pub-result", "HTTP 401");
  ok("publishing over the HTTP API sends the API key field, and says 401 without it");
}

let failed = false;
try {
  const started = Date.now();
  await (suite === "open" ? openSuite() : keySuite());
  check(problems.length === 0, `the page reported problems:\n${problems.join("\n")}`);
  ok(`no script error, CSP violation or dialog (${suite} suite, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
} catch (e) {
  failed = true;
  console.error(`FAILED: ${e.message}`);
  if (problems.length) console.error(problems.join("\n"));
  await page.screenshot({ path: join(outDir, `failure-${suite}.png`) }).catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
