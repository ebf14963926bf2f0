// wsd console: a WebSocket console, a channel client and a live dashboard.
// Plain JavaScript, no library. Everything shown goes through textContent,
// never innerHTML, so a message can never become markup.
"use strict";

const LOG_LIMIT = 10000; // lines kept per log; the oldest are dropped
const CHART_POINTS = 300; // 5 minutes of one-second snapshots
const CHART_MIN_POINTS = 60; // a young chart spans a minute, then grows to 5
const $ = (id) => document.getElementById(id);

/** A DOM element with a class and text (text only, never HTML). */
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function clock(ms) {
  const d = new Date(ms);
  const p = (n, w) => String(n).padStart(w || 2, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function hex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** "00 ff 10", "0x00ff10" or "00ff10" to bytes; null when it is not hex. */
function parseHex(text) {
  const clean = text.replace(/0x/gi, "").replace(/[\s,:]/g, "");
  if (clean.length % 2 !== 0 || /[^0-9a-f]/i.test(clean)) return null;
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.substr(i * 2, 2), 16);
  return out;
}

const CLOSE_CODES = {
  1000: "normal closure",
  1001: "going away (the server is shutting down, or the page is leaving)",
  1002: "protocol error",
  1003: "unsupported data",
  1005: "no status code given",
  1006: "connection lost (closed without a close frame)",
  1007: "invalid payload (not UTF-8)",
  1008: "policy violation",
  1009: "message too big",
  1010: "a required extension is missing",
  1011: "internal error (or a heartbeat timeout)",
  1012: "service restart (reconnect and recover)",
  1013: "try again later",
  1015: "TLS handshake failed",
  4001: "token expired",
};

function describeClose(ev) {
  const words = CLOSE_CODES[ev.code] || (ev.code >= 4000 ? "application close code" : "unknown code");
  const reason = ev.reason ? `, reason "${ev.reason}"` : "";
  return `closed: ${ev.code} ${words}${reason}`;
}

function setState(node, text, kind) {
  node.textContent = text;
  node.className = `state${kind ? ` ${kind}` : ""}`;
}

/** Copies text, with the old way as a fallback where the clipboard API is
 * missing (plain http on a LAN address is not a secure context). */
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = el("textarea");
  area.value = text;
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

/** A log line, cloned for each one: time, direction, size, body, copy. */
const ROW = (() => {
  const li = el("li");
  li.append(el("span", "time meta"), el("span", "dir"), el("span", "size meta"), el("span", "body"));
  const copy = el("button", "copy", "copy");
  copy.type = "button";
  copy.title = "copy this message";
  li.append(copy);
  return li;
})();

/**
 * A bounded log: at most LOG_LIMIT lines, the oldest dropped. Lines are
 * added in batches (one DOM update per batch), so a flood of messages costs
 * one layout, not one per message.
 */
class Log {
  constructor(list, counter, limit) {
    this.list = list;
    this.counter = counter;
    this.limit = limit || LOG_LIMIT;
    this.pending = [];
    this.timer = null;
    this.total = 0;
    // Whether to keep showing the newest line: true until the user scrolls
    // up. Tracked on scroll, so that adding lines reads no layout.
    this.follow = true;
    list.addEventListener("scroll", () => {
      this.follow = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    }, { passive: true });
    list.addEventListener("click", (e) => {
      const button = e.target.closest("button.copy");
      if (!button) return;
      const body = button.parentElement.querySelector(".body");
      copyText(body ? body.textContent : "").then(
        () => { button.textContent = "copied"; button.classList.add("done"); },
        () => { button.textContent = "failed"; },
      );
    });
  }

  /** dir: "in", "out" or "event"; size in bytes or null; body: text. */
  add(dir, size, body, meta) {
    this.pending.push({ time: Date.now(), dir, size, body, meta });
    if (this.pending.length > this.limit) this.pending.splice(0, this.pending.length - this.limit);
    if (this.timer === null) this.timer = setTimeout(() => this.flush(), 16);
  }

  flush() {
    this.timer = null;
    const frag = document.createDocumentFragment();
    for (const line of this.pending) {
      // A clone of a ready row is cheaper than building one.
      const li = ROW.cloneNode(true);
      li.className = line.dir;
      const [time, dir, size, body] = li.children;
      time.textContent = clock(line.time);
      dir.textContent = { in: "←", out: "→", event: "•" }[line.dir];
      size.textContent = line.size === null ? "" : bytes(line.size);
      if (line.meta) body.append(el("span", "meta", `${line.meta}  `));
      body.append(line.body);
      frag.append(li);
    }
    const whole = this.pending.length >= this.limit;
    this.total += this.pending.length;
    this.pending = [];
    if (whole) {
      this.list.replaceChildren(frag);
    } else {
      this.list.append(frag);
      const extra = this.list.childElementCount - this.limit;
      if (extra > 0) {
        // One removal for all the oldest lines.
        const range = document.createRange();
        range.setStartBefore(this.list.firstElementChild);
        range.setEndAfter(this.list.children[extra - 1]);
        range.deleteContents();
      }
    }
    const shown = this.list.childElementCount;
    if (this.counter) {
      this.counter.textContent = shown < this.total
        ? `${shown} lines (the oldest ${this.total - shown} dropped)`
        : `${shown} lines`;
    }
    if (this.follow) this.list.scrollTop = this.list.scrollHeight;
  }

  clear() {
    this.pending = [];
    this.total = 0;
    this.list.replaceChildren();
    if (this.counter) this.counter.textContent = "0 lines";
  }
}

const wsBase = () => `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}`;

let key = sessionStorage.getItem("wsd.console.key") || "";
let info = null;

function authHeaders(k) {
  return k ? { Authorization: `Bearer ${k}` } : {};
}

// ---- the key, and what the server tells the page ----

async function start() {
  let res;
  try {
    res = await fetch("/console/info", { headers: authHeaders(key), cache: "no-store" });
  } catch (e) {
    askKey(`cannot reach the server: ${e.message}`);
    return;
  }
  if (res.status === 401 || res.status === 403) {
    let message = "";
    try { message = (await res.json()).error.message; } catch (_) { /* not JSON */ }
    askKey(key ? message : "");
    return;
  }
  info = await res.json();
  $("key-panel").hidden = true;
  $("main").hidden = false;
  $("version").textContent = info.version;
  $("pub-key").value = key;
  $("url").value = wsBase() + info.echo_path;
  showTab();
  stats.start();
}

function askKey(message) {
  $("main").hidden = true;
  $("key-panel").hidden = false;
  $("key-error").textContent = message;
  $("stream-state").textContent = "locked";
  $("stream-state").className = "pill down";
  $("key-input").focus();
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  key = $("key-input").value.trim();
  sessionStorage.setItem("wsd.console.key", key);
  start();
});

// ---- tabs ----

function showTab() {
  const name = ["console", "channels", "dashboard"].includes(location.hash.slice(1))
    ? location.hash.slice(1) : "console";
  for (const tab of ["console", "channels", "dashboard"]) {
    $(tab).hidden = tab !== name;
    $(`tab-${tab}`).classList.toggle("active", tab === name);
  }
  if (name === "dashboard") dashboard.redraw();
  if (name === "channels" && info) channels.refreshActive();
}
window.addEventListener("hashchange", showTab);

// ---- the WebSocket console ----

const consoleLog = new Log($("log"), $("log-count"));
let sock = null;

function connect() {
  if (sock) sock.close(1000);
  const url = $("url").value.trim();
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (e) {
    setState($("conn-state"), `cannot connect: ${e.message}`, "error");
    return;
  }
  ws.binaryType = "arraybuffer";
  sock = ws;
  setState($("conn-state"), `connecting to ${url}…`);
  $("connect").disabled = true;
  $("disconnect").disabled = false;
  ws.onopen = () => {
    if (sock !== ws) return;
    setState($("conn-state"), `open: ${url}`, "ok");
    consoleLog.add("event", null, `connected to ${url}`);
    $("send").disabled = false;
    $("message").focus();
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      consoleLog.add("in", new TextEncoder().encode(ev.data).length, ev.data);
    } else {
      consoleLog.add("in", ev.data.byteLength, hex(ev.data), "binary");
    }
  };
  ws.onclose = (ev) => {
    if (sock !== ws) return;
    sock = null;
    const words = describeClose(ev);
    setState($("conn-state"), words, ev.code === 1000 ? "" : "error");
    consoleLog.add("event", null, words);
    $("connect").disabled = false;
    $("disconnect").disabled = true;
    $("send").disabled = true;
  };
}

function send() {
  const text = $("message").value;
  if (!sock || sock.readyState !== WebSocket.OPEN) {
    setState($("conn-state"), "not connected: connect first", "error");
    return;
  }
  if ($("send-kind").value === "hex") {
    const data = parseHex(text);
    if (data === null) {
      setState($("conn-state"), "not hex: give pairs of hex digits, e.g. 00 ff 10", "error");
      return;
    }
    sock.send(data);
    consoleLog.add("out", data.length, hex(data), "binary");
  } else {
    sock.send(text);
    consoleLog.add("out", new TextEncoder().encode(text).length, text);
  }
  $("message").value = "";
}

$("connect-form").addEventListener("submit", (e) => { e.preventDefault(); connect(); });
$("disconnect").addEventListener("click", () => { if (sock) sock.close(1000, "closed from the console"); });
$("send-form").addEventListener("submit", (e) => { e.preventDefault(); send(); });
$("message").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
});
$("log-clear").addEventListener("click", () => consoleLog.clear());

// ---- channels: one JSON-mode connection ----

const channels = {
  ws: null,
  nextId: 1,
  pending: new Map(), // command id -> what it was
  subs: new Map(), // channel -> {offset, epoch, state, members, replay}
  log: new Log($("deliveries"), $("deliveries-count")),

  namespaceOf(channel) {
    const i = channel.indexOf(":");
    const ns = i < 0 ? "" : channel.slice(0, i);
    return (info.namespaces || []).find((n) => n.name === ns);
  },

  connected() { return this.ws && this.ws.readyState === WebSocket.OPEN; },

  /** Connects (once); resolves when open. */
  open() {
    if (this.connected()) return Promise.resolve();
    if (this.opening) return this.opening;
    const url = `${wsBase()}${info.channels_path}?format=json`;
    setState($("ch-state"), `connecting to ${url}…`);
    const ws = new WebSocket(url);
    this.ws = ws;
    $("ch-connect").disabled = true;
    $("ch-disconnect").disabled = false;
    this.opening = new Promise((resolve, reject) => {
      ws.onopen = () => {
        this.opening = null;
        setState($("ch-state"), `open: ${url} (JSON mode)`, "ok");
        this.resubscribe();
        resolve();
      };
      ws.onclose = (ev) => {
        this.opening = null;
        if (this.ws === ws) this.ws = null;
        const words = describeClose(ev);
        setState($("ch-state"), words, ev.code === 1000 ? "" : "error");
        this.log.add("event", null, words);
        $("ch-connect").disabled = false;
        $("ch-disconnect").disabled = true;
        for (const sub of this.subs.values()) sub.state = "disconnected";
        this.pending.clear();
        this.render();
        reject(new Error(words));
      };
    });
    ws.onmessage = (ev) => this.onMessage(ev.data);
    return this.opening;
  },

  command(cmd) {
    const id = this.nextId++;
    this.pending.set(id, cmd);
    this.ws.send(JSON.stringify({ id, ...cmd }));
    return id;
  },

  subscribe(channel) {
    const known = this.subs.get(channel);
    const cmd = { op: "subscribe", channel };
    const recover = $("ch-recover").checked && known && known.epoch && known.offset !== null;
    if (recover) cmd.since = { offset: known.offset, epoch: known.epoch };
    if (!known) this.subs.set(channel, { offset: null, epoch: null, state: "subscribing", members: null, replay: 0 });
    else known.state = recover ? "recovering" : "subscribing";
    this.command(cmd);
    this.render();
  },

  /** After a reconnect: every known channel again, from where it was. */
  resubscribe() {
    for (const channel of this.subs.keys()) this.subscribe(channel);
  },

  unsubscribe(channel) {
    if (this.connected()) this.command({ op: "unsubscribe", channel });
    this.subs.delete(channel);
    this.render();
  },

  onMessage(text) {
    let msg;
    try { msg = JSON.parse(text); } catch (_) {
      this.log.add("in", text.length, text, "not JSON");
      return;
    }
    if (msg.id !== undefined && msg.ok !== undefined) return this.onReply(msg);
    const sub = this.subs.get(msg.channel);
    if (msg.event === "join" || msg.event === "leave") {
      if (sub && sub.members) {
        if (msg.event === "join") sub.members.set(msg.conn, msg.user);
        else sub.members.delete(msg.conn);
      }
      this.log.add("event", null, `${msg.user || "(anonymous)"} (${msg.conn}) ${msg.event === "join" ? "joined" : "left"}`, msg.channel);
      this.render();
      return;
    }
    if (msg.event === "gap") {
      if (sub) sub.state = "gap";
      this.log.add("event", null, "gap: publications were lost and cannot be replayed", msg.channel);
      this.render();
      return;
    }
    if (msg.offset === undefined) {
      this.log.add("in", text.length, text);
      return;
    }
    let body;
    let size;
    if (msg.data_b64 !== undefined) {
      const raw = atob(msg.data_b64);
      body = hex(Uint8Array.from(raw, (c) => c.charCodeAt(0)));
      size = raw.length;
    } else {
      body = typeof msg.data === "string" ? msg.data : JSON.stringify(msg.data);
      size = new TextEncoder().encode(body).length;
    }
    let meta = `${msg.channel} #${msg.offset}`;
    if (sub) {
      if (sub.replay > 0 && msg.offset <= sub.replayTo) {
        meta += " (recovered)";
        sub.replay -= 1;
      }
      sub.offset = msg.offset;
      sub.epoch = msg.epoch;
    }
    this.log.add("in", size, body, meta);
    this.render();
  },

  onReply(msg) {
    const cmd = this.pending.get(msg.id);
    this.pending.delete(msg.id);
    if (!cmd) return;
    if (!msg.ok) {
      const error = `${cmd.op} ${cmd.channel}: ${msg.error.code}: ${msg.error.message}`;
      this.log.add("event", null, error);
      if (cmd.op === "publish") setState($("pub-result"), error, "error");
      const sub = this.subs.get(cmd.channel);
      if (cmd.op === "subscribe" && sub) sub.state = `refused: ${msg.error.code}`;
      this.render();
      return;
    }
    if (cmd.op === "publish") {
      setState($("pub-result"), `published to ${msg.channel || cmd.channel} over the WebSocket: offset ${msg.offset}`, "ok");
    } else if (cmd.op === "subscribe") {
      const sub = this.subs.get(cmd.channel);
      if (!sub) return;
      if (cmd.since) {
        sub.state = msg.recovered ? "recovered" : "gap";
        sub.replay = msg.recovered ? Math.max(0, msg.offset - cmd.since.offset) : 0;
        sub.replayTo = msg.offset;
        this.log.add("event", null, msg.recovered
          ? `recovered: ${sub.replay} missed publication(s) replayed from offset ${cmd.since.offset}`
          : `gap: could not recover from offset ${cmd.since.offset} (epoch ${cmd.since.epoch}); delivery goes on live`, cmd.channel);
      } else {
        sub.state = "live";
        this.log.add("event", null, `subscribed at offset ${msg.offset}`, cmd.channel);
      }
      if (!cmd.since || !msg.recovered || sub.offset === null) {
        sub.offset = msg.offset;
        sub.epoch = msg.epoch;
      }
      const ns = this.namespaceOf(cmd.channel);
      if (ns && ns.presence) {
        sub.members = new Map();
        this.command({ op: "presence", channel: cmd.channel });
      }
    } else if (cmd.op === "presence") {
      const sub = this.subs.get(cmd.channel);
      if (sub) {
        sub.members = new Map((msg.members || []).map((m) => [m.conn, m.user]));
      }
    }
    this.render();
    this.refreshActive();
  },

  render() {
    const body = $("subs").tBodies[0];
    const rows = [];
    for (const [channel, sub] of this.subs) {
      const tr = el("tr");
      const state = el("span", `tag ${sub.state.split(":")[0]}`, sub.state);
      let presence = "—";
      if (sub.members) {
        const users = [...sub.members.values()].map((u) => u || "(anonymous)");
        presence = `${sub.members.size}: ${users.join(", ")}`;
      }
      const td = el("td");
      td.append(state);
      const leave = el("button", "", "Unsubscribe");
      leave.type = "button";
      leave.addEventListener("click", () => this.unsubscribe(channel));
      const action = el("td");
      action.append(leave);
      tr.append(el("td", "", channel), el("td", "", sub.offset === null ? "" : String(sub.offset)),
        el("td", "", sub.epoch || ""), td, el("td", "presence wrap", presence), action);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  },

  async publish(channel, data, via) {
    if (!channel) { setState($("pub-result"), "name a channel to publish to", "error"); return; }
    if (via === "ws") {
      try { await this.open(); } catch (e) { setState($("pub-result"), e.message, "error"); return; }
      this.command({ op: "publish", channel, data });
      return;
    }
    const apiKey = $("pub-key").value.trim();
    try {
      const res = await fetch(`${info.channels_path}/${encodeURIComponent(channel)}`, {
        method: "POST",
        headers: { "Content-Type": "text/plain; charset=utf-8", ...authHeaders(apiKey) },
        body: data,
      });
      const answer = await res.json();
      if (res.ok) {
        setState($("pub-result"), `published to ${answer.channel} over the HTTP API: offset ${answer.offset}, delivered to ${answer.delivered}`, "ok");
      } else {
        setState($("pub-result"), `HTTP ${res.status}: ${answer.error.code}: ${answer.error.message}`, "error");
      }
    } catch (e) {
      setState($("pub-result"), `the HTTP API did not answer: ${e.message}`, "error");
    }
    this.refreshActive();
  },

  async refreshActive() {
    if (!info) return;
    try {
      const res = await fetch(info.channels_path, { headers: authHeaders($("pub-key").value.trim()), cache: "no-store" });
      const answer = await res.json();
      if (!res.ok) {
        setState($("active-state"), `HTTP ${res.status}: ${answer.error.message}`, "error");
        return;
      }
      const rows = answer.channels.map((c) => {
        const tr = el("tr");
        tr.append(el("td", "", c.channel), el("td", "", String(c.subscribers)),
          el("td", "", c.offset === null ? "" : String(c.offset)), el("td", "", String(c.history)));
        return tr;
      });
      $("active").tBodies[0].replaceChildren(...rows);
      setState($("active-state"), `${answer.channels.length} active channel(s), as of ${clock(Date.now())}`);
    } catch (e) {
      setState($("active-state"), `cannot list channels: ${e.message}`, "error");
    }
  },
};

$("ch-connect").addEventListener("click", () => channels.open().catch(() => {}));
$("ch-disconnect").addEventListener("click", () => { if (channels.ws) channels.ws.close(1000, "closed from the console"); });
$("sub-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const names = $("sub-names").value.split(/[\s,]+/).filter(Boolean);
  if (!names.length) return;
  try { await channels.open(); } catch (_) { return; }
  for (const name of names) if (!channels.subs.has(name)) channels.subscribe(name);
  if (!$("pub-channel").value) $("pub-channel").value = names[0];
  $("sub-names").value = "";
});
$("pub-form").addEventListener("submit", (e) => {
  e.preventDefault();
  channels.publish($("pub-channel").value.trim(), $("pub-data").value, $("pub-via").value);
  $("pub-data").value = "";
});
$("active-refresh").addEventListener("click", () => channels.refreshActive());

// ---- the dashboard: a stats stream from the server, one snapshot a second ----

const FIGURES = [
  // id, label, how to read it from a snapshot, chart it
  ["sessions", "Sessions", (s) => s.sessions, true],
  ["connects", "Connects/s", (s) => s.rates.connects, true],
  ["messages_in", "Messages in/s", (s) => s.rates.messages_in, true],
  ["messages_out", "Messages out/s", (s) => s.rates.messages_out, true],
  ["deliveries", "Deliveries/s", (s) => s.rates.deliveries, true],
  ["publications", "Publications/s", (s) => s.rates.publications, true],
  ["slow_consumer", "Slow-consumer closes", (s) => s.totals.slow_consumer_closes, true],
  ["heartbeat_timeout", "Heartbeat-timeout closes", (s) => s.totals.heartbeat_timeout_closes, true],
  ["channels", "Channels", (s) => s.channels, true],
  ["subscriptions", "Subscriptions", (s) => s.subscriptions, false],
  ["engine", "Engine", (s) => s.engine, false],
  ["uptime", "Uptime", (s) => uptime(s.uptime_secs), false],
  ["version", "Version", (s) => s.version, false],
];

function uptime(secs) {
  const d = Math.floor(secs / 86400);
  const h = Math.floor(secs / 3600) % 24;
  const m = Math.floor(secs / 60) % 60;
  const s = secs % 60;
  if (d) return `${d}d ${h}h ${m}m`;
  if (h) return `${h}h ${m}m ${s}s`;
  return m ? `${m}m ${s}s` : `${s}s`;
}

function number(v) {
  if (typeof v !== "number") return String(v);
  return Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(1);
}

/** A line chart of `values` (the newest on the right) on a canvas. */
function drawChart(canvas, values) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (!w || !h) return;
  if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
  if (canvas.height !== Math.round(h * dpr)) canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const accent = css.getPropertyValue("--accent").trim();
  const muted = css.getPropertyValue("--muted").trim();
  const max = Math.max(1, ...values);
  const span = Math.min(CHART_POINTS, Math.max(CHART_MIN_POINTS, values.length));
  const step = w / (span - 1);
  const x = (i) => w - (values.length - 1 - i) * step;
  const y = (v) => h - 1 - (v / max) * (h - 12);
  ctx.beginPath();
  values.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
  ctx.strokeStyle = accent;
  ctx.lineWidth = 1.5;
  ctx.stroke();
  if (values.length > 1) {
    ctx.lineTo(x(values.length - 1), h);
    ctx.lineTo(x(0), h);
    ctx.closePath();
    ctx.globalAlpha = 0.15;
    ctx.fillStyle = accent;
    ctx.fill();
    ctx.globalAlpha = 1;
  }
  ctx.fillStyle = muted;
  ctx.font = "10px system-ui, sans-serif";
  ctx.fillText(`max ${number(max)} · last ${span < CHART_POINTS ? `${span} s` : "5 min"}`, 2, 9);
}

const dashboard = {
  cards: new Map(),
  series: new Map(),

  build() {
    const grid = $("figures");
    for (const [id, label, , chart] of FIGURES) {
      const card = el("div", "card");
      card.id = `stat-${id}`;
      const value = el("div", "value", "–");
      card.append(el("div", "label", label), value);
      let canvas = null;
      if (chart) {
        canvas = el("canvas");
        canvas.setAttribute("aria-hidden", "true");
        card.append(canvas);
        this.series.set(id, []);
      }
      grid.append(card);
      this.cards.set(id, { value, canvas });
    }
  },

  update(s) {
    for (const [id, , read] of FIGURES) {
      const v = read(s);
      this.cards.get(id).value.textContent = number(v);
      const series = this.series.get(id);
      if (series) {
        series.push(typeof v === "number" ? v : 0);
        if (series.length > CHART_POINTS) series.shift();
      }
    }
    $("rate-note").textContent = `Updated every ${info.stats_interval_ms / 1000} s over a WebSocket (/console/stats). `
      + `Sessions add their message counts on each heartbeat (every ${info.heartbeat_ms / 1000} s), `
      + `so messages in/out are averaged over that interval; connects, publications and deliveries are per second. `
      + `The page's own connections count as sessions.`;
    if (!$("dashboard").hidden) this.redraw();
  },

  redraw() {
    for (const [id, series] of this.series) drawChart(this.cards.get(id).canvas, series);
  },
};
dashboard.build();
window.addEventListener("resize", () => dashboard.redraw());

const stats = {
  ws: null,
  retry: 1000,
  start() {
    if (this.ws) return;
    const query = key ? `?key=${encodeURIComponent(key)}` : "";
    const ws = new WebSocket(`${wsBase()}/console/stats${query}`);
    this.ws = ws;
    const pill = $("stream-state");
    ws.onopen = () => { this.retry = 1000; pill.textContent = "live"; pill.className = "pill live"; };
    ws.onmessage = (ev) => {
      try { dashboard.update(JSON.parse(ev.data)); } catch (e) { pill.textContent = `bad snapshot: ${e.message}`; }
    };
    ws.onclose = (ev) => {
      this.ws = null;
      pill.textContent = ev.code === 1001 ? "server going away; retrying" : "stats stream lost; retrying";
      pill.className = "pill down";
      setTimeout(() => this.start(), this.retry);
      this.retry = Math.min(this.retry * 2, 10000);
    };
  },
};

start();
