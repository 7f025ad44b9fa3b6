// lapps.js: a client for LAppS services, raw and LAppS-protocol (DESIGN §4), for browsers and
// Node 20 (run node with --experimental-websocket, or pass `WebSocket` in the options).
// An ES module with no build step; CBOR through cbor-x.
//
//   import { LappsClient } from "./lapps.js";
//   const c = await LappsClient.connect("ws://127.0.0.1:5083/echo_lapps", {
//     onreconnect: async (c) => { await c.request("login", [{ user: "admin", password: "admin" }]); },
//   });
//   const [{ authkey }] = await c.request("login", [{ user: "admin", password: "admin" }]);
//   c.on(5, (message) => console.log("server time", message[0]));
//   await c.request("subscribe", [{ authkey }]);
//
// Theory of operation. Channel 0 carries requests and their responses, in order: the server
// answers requests in the order it got them, so the oldest pending request takes the next
// response. A request that timed out stays in that queue, marked, so its late response is
// dropped and never taken for the answer to a later one (as the Python client does). Every
// other channel carries out-of-order notifications (OONs) to the callbacks of `on(cid, fn)`.
//
// A dropped connection rejects every pending request with `ConnectionClosed`; with
// `reconnect` on (the default) the client then reconnects by itself, with an exponential
// backoff (capped) and jitter, and calls `onreconnect(client)` before anyone else may use the
// new connection: that is the place to log in and subscribe again, since a session lives
// and dies with its connection. `close()` ends it for good.
//
// Numbers. The server sends integers as CBOR integers and non-integral numbers as float64.
// Here an integer arrives as a Number when it is a safe integer (|n| < 2**53), else as a
// BigInt (never rounded); a float arrives as a Number. Going out, a safe integer Number or a
// BigInt is sent as a CBOR integer (cbor-x alone would send integers past 32 bits as float64),
// other numbers as float64. JavaScript cannot tell 2.0 from 2: both go out as the integer 2.

import { Decoder, Encoder } from "cbor-x";

const CBOR_OPTIONS = {
  useRecords: false, // plain CBOR maps, no cbor-x record tags: the server refuses every tag
  mapsAsObjects: true,
  useTag259ForMaps: false,
  tagUint8Array: false, // a Uint8Array is a CBOR byte string, untagged
  variableMapSize: true,
};
const encoder = new Encoder(CBOR_OPTIONS);
const decoder = new Decoder(CBOR_OPTIONS);

const CLOSE_NORMAL = 1000;
const CLOSE_ABNORMAL = 1006;
const UINT32_LIMIT = 0x100000000;

/** The server answered a request with an error object (status 0), or sent one on a channel. */
export class LappsError extends Error {
  constructor(code, message, data) {
    super(`${code}: ${message}`);
    this.name = "LappsError";
    this.code = code;
    this.message = message;
    this.data = data;
  }
}

/** The connection ended (or was not open) while a request waited or a message was sent. */
export class ConnectionClosed extends Error {
  constructor(code, reason) {
    super(`connection closed: ${code} ${reason || ""}`.trimEnd());
    this.name = "ConnectionClosed";
    this.code = code;
    this.reason = reason || "";
  }
}

/** No answer within the request's (or the connect's) timeout. */
export class TimeoutError extends Error {
  constructor(message) {
    super(message);
    this.name = "TimeoutError";
  }
}

/** A message on a LAppS connection that is not a LAppS message (text, not CBOR, no cid). */
export class LappsProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = "LappsProtocolError";
  }
}

// BigInts that fit a Number become Numbers, in place (the decoded message is ours); the rest
// is left as it is.
function fromWire(value) {
  if (typeof value === "bigint") {
    return value >= -Number.MAX_SAFE_INTEGER && value <= Number.MAX_SAFE_INTEGER ? Number(value) : value;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = fromWire(value[i]);
  } else if (value !== null && typeof value === "object" && !ArrayBuffer.isView(value)) {
    for (const key of Object.keys(value)) value[key] = fromWire(value[key]);
  }
  return value;
}

// Integer Numbers past 32 bits become BigInts, so that cbor-x writes them as CBOR integers.
// Copies only the containers on the way to such a number; the caller's objects stay untouched.
function toWire(value) {
  if (typeof value === "number") {
    return Number.isSafeInteger(value) && (value >= UINT32_LIMIT || value < -UINT32_LIMIT) ? BigInt(value) : value;
  }
  if (Array.isArray(value)) {
    let out = value;
    for (let i = 0; i < value.length; i++) {
      const v = toWire(value[i]);
      if (v !== value[i]) {
        if (out === value) out = value.slice();
        out[i] = v;
      }
    }
    return out;
  }
  if (value !== null && typeof value === "object" && !ArrayBuffer.isView(value) && !(value instanceof ArrayBuffer)) {
    let out = value;
    for (const key of Object.keys(value)) {
      const v = toWire(value[key]);
      if (v !== value[key]) {
        if (out === value) out = { ...value };
        out[key] = v;
      }
    }
    return out;
  }
  return value;
}

/** Encode one LAppS message (exported for tests and tools). */
export function encodeMessage(message) {
  return encoder.encode(toWire(message));
}

/** Decode one LAppS message (exported for tests and tools). */
export function decodeMessage(bytes) {
  return fromWire(decoder.decode(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)));
}

function errorOf(message) {
  const error = message.error;
  if (error === null || typeof error !== "object") {
    return new LappsError(-32603, `error response without an error object: ${JSON.stringify(message)}`);
  }
  return new LappsError(error.code, error.message ?? "", error.data);
}

function checkMethod(method) {
  if (typeof method !== "string" || method === "" || method.includes(".") || method.startsWith("_")) {
    throw new TypeError(`invalid LAppS method name ${JSON.stringify(method)} (no '.', no leading '_')`);
  }
}

const DEFAULT_RECONNECT = { initialDelay: 250, maxDelay: 10000, factor: 2, jitter: 0.5, maxAttempts: Infinity };

/** The delay before reconnect attempt `attempt` (0-based): capped exponential, with jitter
 *  that takes up to `jitter` of it away (so many clients do not come back in step). */
export function backoffDelay(attempt, policy = DEFAULT_RECONNECT, random = Math.random) {
  const p = { ...DEFAULT_RECONNECT, ...policy };
  const base = Math.min(p.maxDelay, p.initialDelay * p.factor ** attempt);
  return base * (1 - p.jitter * random());
}

export class LappsClient {
  /**
   * Open a connection and wait until it is open (or failed: the promise rejects).
   * options: raw (false), timeout (ms, 10000: connect and every request), reconnect (true,
   * false, or {initialDelay, maxDelay, factor, jitter, maxAttempts}), onreconnect(client),
   * onstatechange(state), onclose(code, reason), onmessage(data) (raw), protocols,
   * WebSocket (the constructor; default globalThis.WebSocket).
   */
  static async connect(url, options = {}) {
    const client = new LappsClient(url, options);
    await client._open();
    return client;
  }

  constructor(url, options = {}) {
    this.url = url;
    this.raw = Boolean(options.raw);
    this.timeout = options.timeout ?? 10000;
    this.reconnect = options.reconnect === false ? null : { ...DEFAULT_RECONNECT, ...(options.reconnect === true || options.reconnect === undefined ? {} : options.reconnect) };
    this.onreconnect = options.onreconnect ?? null;
    this.onstatechange = options.onstatechange ?? null;
    this.onclose = options.onclose ?? null;
    this.onmessage = options.onmessage ?? null;
    this.onerror = options.onerror ?? null;
    this.protocols = options.protocols;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.WebSocket !== "function") {
      throw new TypeError("no WebSocket: pass options.WebSocket, or run Node with --experimental-websocket");
    }
    this.state = "connecting"; // connecting, open, reconnecting, closed
    this.reconnects = 0; // successful reconnects so far
    this._ws = null;
    this._pending = []; // channel-0 requests in the order they were sent
    this._handlers = new Map(); // cid -> Set of callbacks
    this._retryTimer = null;
    this._closing = false;
  }

  _setState(state) {
    if (state !== this.state) {
      this.state = state;
      if (this.onstatechange) this.onstatechange(state);
    }
  }

  // One WebSocket: resolves when it is open, rejects when it fails first.
  _open() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = this.protocols === undefined ? new this.WebSocket(this.url) : new this.WebSocket(this.url, this.protocols);
      } catch (e) {
        reject(e);
        return;
      }
      ws.binaryType = "arraybuffer";
      let opened = false;
      const timer = setTimeout(() => {
        if (!opened) {
          ws.close();
          reject(new TimeoutError(`no connection to ${this.url} within ${this.timeout} ms`));
        }
      }, this.timeout);
      let failed = false;
      const fail = (code, reason) => {
        clearTimeout(timer);
        if (!failed) {
          failed = true;
          reject(new ConnectionClosed(code || CLOSE_ABNORMAL, reason || `cannot connect to ${this.url}`));
        }
      };
      ws.onopen = () => {
        if (this._closing) { // close() came while this attempt was on its way
          ws.onclose = null;
          ws.close(CLOSE_NORMAL);
          fail(CLOSE_NORMAL, "closed by the client");
          return;
        }
        opened = true;
        clearTimeout(timer);
        this._ws = ws;
        this._setState("open");
        resolve();
      };
      ws.onmessage = (event) => this._receive(event.data);
      ws.onclose = (event) => {
        if (!opened) fail(event.code, event.reason);
        else this._dropped(event.code || CLOSE_ABNORMAL, event.reason);
      };
      // Before the open, an error is the end (Node 20's WebSocket fires no close event after
      // a refused upgrade); after it, the close event that follows says how it ended.
      ws.onerror = () => {
        if (!opened) fail(CLOSE_ABNORMAL, `cannot connect to ${this.url} (refused, or not a WebSocket)`);
      };
    });
  }

  _dropped(code, reason) {
    this._ws = null;
    const error = new ConnectionClosed(code, reason);
    const pending = this._pending;
    this._pending = [];
    for (const entry of pending) {
      clearTimeout(entry.timer);
      if (!entry.done) entry.reject(error);
    }
    if (this.onclose) this.onclose(code, reason);
    if (this._closing || !this.reconnect) {
      this._setState("closed");
      return;
    }
    this._setState("reconnecting");
    this._retry(0);
  }

  _retry(attempt) {
    if (attempt >= this.reconnect.maxAttempts) {
      this._setState("closed");
      return;
    }
    this._retryTimer = setTimeout(async () => {
      this._retryTimer = null;
      if (this._closing) return;
      try {
        await this._open();
      } catch {
        if (!this._closing) this._retry(attempt + 1);
        return;
      }
      this.reconnects += 1;
      if (this.onreconnect) {
        try {
          await this.onreconnect(this);
        } catch (e) {
          // a failed re-login: report it; the connection stays, the caller decides
          if (this.onerror) this.onerror(e);
        }
      }
    }, backoffDelay(attempt, this.reconnect));
  }

  _receive(data) {
    if (this.raw) {
      if (this.onmessage) this.onmessage(typeof data === "string" ? data : new Uint8Array(data));
      return;
    }
    let message;
    try {
      if (typeof data === "string") throw new LappsProtocolError(`text message on a LAppS connection: ${data.slice(0, 100)}`);
      message = decodeMessage(data);
      if (message === null || typeof message !== "object" || !Number.isInteger(message.cid)) {
        throw new LappsProtocolError(`message without an integer cid: ${JSON.stringify(message)}`);
      }
    } catch (e) {
      if (this.onerror) this.onerror(e instanceof LappsProtocolError ? e : new LappsProtocolError(`message is not CBOR: ${e.message}`));
      return;
    }
    if (message.cid === 0) {
      const entry = this._pending.shift();
      if (entry === undefined || entry.done) return; // the late answer of a request that timed out
      entry.done = true;
      clearTimeout(entry.timer);
      if (message.status === 1) entry.resolve(message.result);
      else if (message.status === 0) entry.reject(errorOf(message));
      else entry.reject(new LappsProtocolError(`response with status ${message.status}`));
      return;
    }
    const handlers = this._handlers.get(message.cid);
    if (handlers) {
      const item = message.status === 0 ? errorOf(message) : message.message;
      for (const fn of [...handlers]) fn(item, message);
    }
  }

  _sendBytes(bytes) {
    if (this.state !== "open" || this._ws === null) {
      throw new ConnectionClosed(CLOSE_ABNORMAL, `not connected (${this.state})`);
    }
    this._ws.send(bytes);
  }

  _lapps(method, params, cid) {
    if (this.raw) throw new TypeError("request/notify need a LAppS service; this client is raw (use send)");
    checkMethod(method);
    const message = { lapps: 1, method };
    if (params !== undefined && params !== null) {
      if (!Array.isArray(params)) throw new TypeError(`params must be an array, not ${typeof params}`);
      message.params = params;
    }
    if (cid !== undefined) message.cid = cid;
    this._sendBytes(encodeMessage(message));
  }

  /** Call `method` and resolve with the response's result; reject with LappsError for an
   *  error object, TimeoutError after `options.timeout` ms, ConnectionClosed on a drop. */
  request(method, params, options = {}) {
    return new Promise((resolve, reject) => {
      try {
        this._lapps(method, params);
      } catch (e) {
        reject(e);
        return;
      }
      const entry = { resolve, reject, done: false, timer: null };
      const timeout = options.timeout ?? this.timeout;
      if (timeout > 0 && timeout !== Infinity) {
        entry.timer = setTimeout(() => {
          entry.done = true; // stays queued: its response, when it comes, is skipped
          reject(new TimeoutError(`no answer to ${method} within ${timeout} ms`));
        }, timeout);
      }
      this._pending.push(entry);
    });
  }

  /** A client notification about channel `cid`: never answered. */
  notify(method, params, cid) {
    if (!Number.isInteger(cid)) throw new TypeError(`cid must be an integer, not ${cid}`);
    this._lapps(method, params, cid);
  }

  /** Call `fn(message, envelope)` for every OON on channel `cid` (an error object on that
   *  channel comes as a LappsError). Returns the function that removes `fn`. */
  on(cid, fn) {
    if (cid === 0) throw new RangeError("channel 0 carries responses, not notifications");
    if (!this._handlers.has(cid)) this._handlers.set(cid, new Set());
    this._handlers.get(cid).add(fn);
    return () => this.off(cid, fn);
  }

  off(cid, fn) {
    const handlers = this._handlers.get(cid);
    if (handlers) {
      handlers.delete(fn);
      if (handlers.size === 0) this._handlers.delete(cid);
    }
  }

  /** Raw mode: send a text (string) or binary (ArrayBuffer, typed array) message. */
  send(data) {
    if (!this.raw) throw new TypeError("send() is for raw services; use request/notify (or connect with raw: true)");
    this._sendBytes(data);
  }

  /** Close for good (no reconnect); resolves when the close handshake is over. */
  close(code = CLOSE_NORMAL, reason = "") {
    this._closing = true;
    if (this._retryTimer !== null) {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
    const ws = this._ws;
    if (ws === null) {
      this._setState("closed");
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const previous = ws.onclose;
      ws.onclose = (event) => {
        previous(event);
        resolve();
      };
      ws.close(code, reason);
    });
  }
}
