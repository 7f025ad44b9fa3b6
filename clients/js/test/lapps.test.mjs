// lapps.js against the real server (node --experimental-websocket --test): requests, errors,
// notifications, ordering, numbers, raw mode, timeouts, reconnect after a server restart.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  backoffDelay, ConnectionClosed, decodeMessage, encodeMessage, LappsClient, LappsError, TimeoutError,
} from "../lapps.js";
import { Server } from "./server.mjs";

const ADMIN = [{ user: "admin", password: "admin" }];

function nextOon(client, cid, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no OON on channel ${cid} in ${timeout} ms`)); }, timeout);
    const off = client.on(cid, (message) => { clearTimeout(timer); off(); resolve(message); });
  });
}

function waitFor(condition, timeout, what) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeout;
    const tick = () => {
      const value = condition();
      if (value) resolve(value);
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(tick, 20);
    };
    tick();
  });
}

describe("lapps.js against the real server", () => {
  let server;
  before(async () => { server = await Server.start(); });
  after(async () => { if (server) await server.dispose(); });

  test("login, echo and logout in the original's form", async () => {
    const c = await LappsClient.connect(`${server.url}/echo_lapps`, { reconnect: false });
    try {
      const [{ authkey }] = await c.request("login", ADMIN);
      assert.equal(typeof authkey, "string");
      const key = { authkey };
      assert.deepEqual(await c.request("echo", [key, 1, "two", 3.5, null, [4, { five: 5 }]]),
        [1, "two", 3.5, null, [4, { five: 5 }]]);
      assert.deepEqual(await c.request("whoami", [key]), ["admin"]);
      assert.deepEqual(await c.request("logout", [key]), []);
      await assert.rejects(c.request("echo", [key, 1]), (e) => e instanceof LappsError && e.code === -32000);
    } finally {
      await c.close();
    }
  });

  test("an error object rejects with LappsError{code, message}; the connection stays", async () => {
    const c = await LappsClient.connect(`${server.url}/echo_lapps`, { reconnect: false });
    try {
      await assert.rejects(c.request("no_such_method"), (e) => {
        assert.ok(e instanceof LappsError);
        assert.equal(e.code, -32601);
        assert.match(e.message, /no_such_method/);
        return true;
      });
      await assert.rejects(c.request("login", [{ user: "admin", password: "wrong" }]),
        (e) => e instanceof LappsError && e.code === 10);
      assert.equal(c.state, "open");
      assert.ok((await c.request("login", [{ user: "guest", password: "guest" }]))[0].authkey);
    } finally {
      await c.close();
    }
  });

  test("a bad method name is refused before anything is sent", async () => {
    const c = await LappsClient.connect(`${server.url}/echo_lapps`, { reconnect: false });
    try {
      await assert.rejects(c.request("_private"), TypeError);
      await assert.rejects(c.request("a.b"), TypeError);
      await assert.rejects(c.request("echo", "not an array"), TypeError);
    } finally {
      await c.close();
    }
  });

  test("100 requests in flight at once are answered in order", async () => {
    const c = await LappsClient.connect(`${server.url}/echo_lapps`, { reconnect: false });
    try {
      const [key] = await c.request("login", ADMIN);
      const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => c.request("echo", [key, i, `n${i}`])));
      assert.deepEqual(answers, Array.from({ length: 100 }, (_, i) => [i, `n${i}`]));
    } finally {
      await c.close();
    }
  });

  test("integers stay integers and floats floats, 64-bit integers included", async () => {
    const c = await LappsClient.connect(`${server.url}/echo_lapps`, { reconnect: false });
    try {
      const [key] = await c.request("login", ADMIN);
      const big = 2 ** 53 - 1; // past 32 bits: cbor-x alone would send it as a float64
      const result = await c.request("echo", [key, big, -(2 ** 40), 7, 0.5, -2.25, 2n ** 52n]);
      assert.deepEqual(result, [big, -(2 ** 40), 7, 0.5, -2.25, 2 ** 52]);
      // what went out: CBOR integers (major types 0 and 1) for the integers
      const bytes = encodeMessage({ lapps: 1, method: "echo", params: [big] });
      assert.equal(bytes[bytes.length - 9], 0x1b); // uint64 head, not 0xfb (float64)
      assert.equal(decodeMessage(bytes).params[0], big);
    } finally {
      await c.close();
    }
  });

  test("server time arrives on cid 5 while requests are answered; unsubscribe stops it", async () => {
    const c = await LappsClient.connect(`${server.url}/echo_lapps`, { reconnect: false });
    try {
      const [key] = await c.request("login", ADMIN);
      const ticks = [];
      c.on(5, (message) => ticks.push(message[0]));
      assert.deepEqual(await c.request("subscribe", [key]), []);
      let i = 0;
      while (ticks.length < 2) {
        assert.deepEqual(await c.request("echo", [key, i]), [i]);
        i += 1;
        if (i % 50 === 0) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(Number.isInteger(ticks[0]) && ticks[1] > ticks[0], `ticks ${ticks}`);
      assert.ok(Math.abs(ticks[0] - Date.now()) < 60000, "the time is milliseconds since the epoch");
      assert.deepEqual(await c.request("unsubscribe", [key]), []);
      await new Promise((r) => setTimeout(r, 100)); // a tick already on its way may still land
      const seen = ticks.length;
      await new Promise((r) => setTimeout(r, 2300));
      assert.equal(ticks.length, seen, "ticks after unsubscribe");
    } finally {
      await c.close();
    }
  });

  test("notify: the original's subscribe notification on cid 5, never answered", async () => {
    const c = await LappsClient.connect(`${server.url}/echo_lapps`, { reconnect: false });
    try {
      const [key] = await c.request("login", ADMIN);
      c.notify("subscribe", [key], 5);
      const tick = await nextOon(c, 5);
      assert.ok(Number.isInteger(tick[0]));
      // the notification got no answer: the next response is the echo's
      assert.deepEqual(await c.request("echo", [key, "after"]), ["after"]);
      assert.throws(() => c.notify("subscribe", [key], "5"), TypeError);
    } finally {
      await c.close();
    }
  });

  test("an error object on a channel reaches on(cid) as a LappsError", async () => {
    const c = await LappsClient.connect(`${server.url}/echo_lapps`, { reconnect: false });
    try {
      const error = nextOon(c, 3);
      c.notify("subscribe", [{ authkey: "not logged in" }], 5);
      const e = await error;
      assert.ok(e instanceof LappsError);
      assert.equal(e.code, -32000);
    } finally {
      await c.close();
    }
  });

  test("raw mode: text and binary messages through send/onmessage", async () => {
    const got = [];
    const c = await LappsClient.connect(`${server.url}/echo`, { raw: true, reconnect: false, onmessage: (d) => got.push(d) });
    try {
      c.send("hello");
      c.send(new Uint8Array([0, 1, 2, 255]));
      await waitFor(() => got.length === 2, 5000, "two echoes");
      assert.equal(got[0], "hello");
      assert.deepEqual([...got[1]], [0, 1, 2, 255]);
      await assert.rejects(async () => c.request("echo"), TypeError);
    } finally {
      await c.close();
    }
  });

  test("a request timeout rejects; the late answer is not taken for the next request's", async () => {
    const c = await LappsClient.connect(`${server.url}/echo_lapps`, { reconnect: false });
    try {
      const [key] = await c.request("login", ADMIN);
      // the loop is held past the timeout, so the expired timer runs before the answer is read
      const late = c.request("echo", [key, "late"], { timeout: 50 });
      const until = Date.now() + 300;
      while (Date.now() < until) { /* hold the event loop */ }
      await assert.rejects(late, TimeoutError);
      assert.deepEqual(await c.request("echo", [key, "next"]), ["next"]);
    } finally {
      await c.close();
    }
  });

  test("an unknown path or a dead port rejects connect()", async () => {
    await assert.rejects(LappsClient.connect(`${server.url}/no_such_service`, { reconnect: false }), ConnectionClosed);
    await assert.rejects(LappsClient.connect("ws://127.0.0.1:1/echo", { reconnect: false }), ConnectionClosed);
  });

  test("reconnect after a server restart: pending requests rejected, onreconnect logs in again", async () => {
    const states = [];
    let relogins = 0;
    let key = null;
    const login = async (client) => {
      [key] = await client.request("login", ADMIN);
      await client.request("subscribe", [key]);
      relogins += 1;
    };
    const c = await LappsClient.connect(`${server.url}/echo_lapps`, {
      reconnect: { initialDelay: 100, maxDelay: 1000 },
      onstatechange: (s) => states.push(s),
      onreconnect: login,
    });
    try {
      await login(c);
      server.freeze(); // the request below is never answered...
      const pending = assert.rejects(c.request("echo", [key, "in flight"], { timeout: 30000 }),
        (e) => e instanceof ConnectionClosed && e.code === 1006);
      await new Promise((r) => setTimeout(r, 100));
      await server.kill(); // ...and the connection drops under it
      await pending;
      await waitFor(() => c.state === "reconnecting", 5000, "state reconnecting");
      await assert.rejects(c.request("echo", [key, 1]), ConnectionClosed); // not connected meanwhile
      await server.start();
      await waitFor(() => relogins === 2, 20000, "the second login");
      assert.equal(c.state, "open");
      assert.equal(c.reconnects, 1);
      assert.deepEqual(await c.request("echo", [key, "again"]), ["again"]);
      assert.ok(Number.isInteger((await nextOon(c, 5))[0]), "subscribed again");
      assert.deepEqual(states, ["open", "reconnecting", "open"]);
    } finally {
      await c.close();
    }
    assert.equal(c.state, "closed");
  });
});

test("backoff: exponential, capped, jitter takes at most its share away", () => {
  const policy = { initialDelay: 100, maxDelay: 1000, factor: 2, jitter: 0.5 };
  assert.equal(backoffDelay(0, policy, () => 0), 100);
  assert.equal(backoffDelay(3, policy, () => 0), 800);
  assert.equal(backoffDelay(10, policy, () => 0), 1000);
  assert.equal(backoffDelay(10, policy, () => 1), 500);
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(2, policy);
    assert.ok(d >= 200 && d <= 400, `delay ${d}`);
  }
});
