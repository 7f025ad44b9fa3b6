// The echo_lapps demo page: logs in by itself, runs an echo loop with a live chart, shows
// the server time (OONs on cid 5), subscribes and unsubscribes, logs out, and comes back by
// itself when the server restarts (lapps.js reconnects; onreconnect logs in again).

import { ConnectionClosed, LappsClient, LappsError } from "lapps";

const $ = (id) => document.getElementById(id);
const URL = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/echo_lapps`;
const HISTORY = 60; // seconds on the chart
const PAYLOAD = Array.from({ length: 25 }, (_, i) => i + 1); // the original's echo payload

const session = { user: "admin", password: "admin", key: null, subscribed: true };
const stats = { count: 0, total: 0, ticks: 0, rates: [] };
let client = null;
let loop = 0; // generation of the echo loop: a new login stops the old one

function log(text) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  const list = $("log");
  list.prepend(item);
  while (list.children.length > 12) list.lastChild.remove();
}

function showState(state) {
  $("state").textContent = state;
  $("state").dataset.state = state;
  if (state === "reconnecting") {
    session.key = null;
    showSession();
  }
  log(`connection ${state}`);
}

function showSession() {
  $("user").textContent = session.key ? session.user : "nobody";
  $("authkey").textContent = session.key ? `authkey ${session.key.authkey}` : "";
  $("subscribe").textContent = session.subscribed ? "Unsubscribe" : "Subscribe";
}

async function login(c) {
  const [key] = await c.request("login", [{ user: session.user, password: session.password }]);
  session.key = key;
  if (session.subscribed) await c.request("subscribe", [key]);
  showSession();
  log(`logged in as ${session.user}${session.subscribed ? ", subscribed to the time" : ""}`);
  echoLoop(c, ++loop);
}

async function echoLoop(c, generation) {
  while (generation === loop && session.key && c.state === "open") {
    try {
      await c.request("echo", [session.key, PAYLOAD]);
      stats.count += 1;
      stats.total += 1;
    } catch (e) {
      if (!(e instanceof ConnectionClosed)) log(`echo failed: ${e.message}`);
      return; // a drop: onreconnect starts a new loop
    }
  }
}

function onTick(message) {
  if (message instanceof LappsError) {
    log(`error on cid 5: ${message.message}`);
    return;
  }
  stats.ticks += 1;
  $("ticks").textContent = String(stats.ticks);
  $("server-time").textContent = new Date(Number(message[0])).toLocaleTimeString([], { hour12: false });
}

function drawChart() {
  const svg = $("chart");
  const width = Math.max(300, Math.round(svg.clientWidth || 600)); // drawn at its own pixel size
  const height = 180;
  const base = height - 18; // room below for the time axis
  const plot = base - 14; // and above for the top label
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const scale = niceCeil(Math.max(10, ...stats.rates));
  const bar = width / HISTORY;
  const parts = [];
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const y = base - f * plot;
    parts.push(`<line class="grid" x1="0" x2="${width}" y1="${y}" y2="${y}"/>`);
    if (f > 0) parts.push(`<text class="axis" x="4" y="${y - 3}">${Math.round(scale * f)}</text>`);
  }
  stats.rates.forEach((rate, i) => {
    const h = (rate / scale) * plot;
    const x = (HISTORY - stats.rates.length + i) * bar;
    parts.push(`<rect class="bar" x="${x + 1}" y="${base - h}" width="${bar - 2}" height="${h}"><title>${rate}/s</title></rect>`);
  });
  for (const ago of [0, 15, 30, 45]) {
    const x = width - ago * bar - bar / 2;
    parts.push(`<text class="axis" x="${x}" y="${height - 4}" text-anchor="middle">${ago ? `−${ago} s` : "now"}</text>`);
  }
  svg.innerHTML = parts.join("");
}

function niceCeil(value) {
  const p = 10 ** Math.floor(Math.log10(value));
  return [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].map((m) => m * p).find((v) => v >= value);
}

setInterval(() => {
  stats.rates.push(stats.count);
  if (stats.rates.length > HISTORY) stats.rates.shift();
  $("rate").textContent = String(stats.count);
  $("total").textContent = String(stats.total);
  stats.count = 0;
  drawChart();
}, 1000);

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const user = String(form.get("user"));
  const password = String(form.get("password"));
  if (!client || client.state !== "open") return;
  loop += 1; // stop the running echo loop
  try {
    if (session.key) await client.request("logout", [session.key]);
    session.key = null;
    const previous = { ...session };
    session.user = user;
    session.password = password;
    try {
      await login(client);
    } catch (e) {
      Object.assign(session, previous);
      showSession();
      log(e instanceof LappsError ? `login as ${user} refused: ${e.message} (${e.code})` : `login failed: ${e.message}`);
      if (previous.user) await login(client); // back to who we were
    }
  } catch (e) {
    log(`logout failed: ${e.message}`);
  }
});

$("logout").addEventListener("click", async () => {
  if (!client || !session.key) return;
  loop += 1;
  try {
    await client.request("logout", [session.key]);
    log(`${session.user} logged out`);
  } catch (e) {
    log(`logout failed: ${e.message}`);
  }
  session.key = null;
  showSession();
});

$("subscribe").addEventListener("click", async () => {
  if (!client || !session.key) return;
  const method = session.subscribed ? "unsubscribe" : "subscribe";
  try {
    await client.request(method, [session.key]);
    session.subscribed = !session.subscribed;
    log(session.subscribed ? "subscribed to the time" : "unsubscribed from the time");
  } catch (e) {
    log(`${method} failed: ${e.message}`);
  }
  showSession();
});

// The first connection: retried until the server answers (the page may load before it is up).
async function start() {
  for (let attempt = 0; ; attempt++) {
    try {
      client = await LappsClient.connect(URL, {
        reconnect: { initialDelay: 200, maxDelay: 5000 },
        onstatechange: showState,
        onreconnect: async (c) => {
          $("reconnects").textContent = String(c.reconnects);
          await login(c);
        },
        onerror: (e) => log(`error: ${e.message}`),
      });
      break;
    } catch (e) {
      showState("connecting");
      await new Promise((r) => setTimeout(r, Math.min(5000, 200 * 2 ** attempt)));
    }
  }
  client.on(5, onTick);
  client.on(3, (m) => log(`error on cid 3: ${m.message}`));
  await login(client);
}

drawChart();
start();
