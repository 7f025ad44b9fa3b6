// Type declarations of lapps.js (for editors; lapps.js itself needs no build step).

/** Anything the LAppS protocol carries: integers (number, or bigint past 2**53), floats,
 *  text, bytes, null, booleans, arrays and string-keyed maps. `undefined` is refused by the server. */
export type LappsValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | LappsValue[]
  | { [key: string]: LappsValue };

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface ReconnectPolicy {
  /** ms before the first attempt (250) */
  initialDelay?: number;
  /** the cap of the delay, ms (10000) */
  maxDelay?: number;
  /** growth per failed attempt (2) */
  factor?: number;
  /** share of each delay taken away at random, 0..1 (0.5) */
  jitter?: number;
  /** attempts before the client gives up and is "closed" (Infinity) */
  maxAttempts?: number;
}

export interface LappsClientOptions {
  /** a raw service: send()/onmessage instead of request()/notify() (false) */
  raw?: boolean;
  /** ms: the connect, and the default of every request (10000; 0 or Infinity: none for requests) */
  timeout?: number;
  /** reconnect by itself after a drop (true) */
  reconnect?: boolean | ReconnectPolicy;
  /** runs after each reconnect, before the client is used again: log in, subscribe */
  onreconnect?: (client: LappsClient) => void | Promise<void>;
  onstatechange?: (state: ConnectionState) => void;
  onclose?: (code: number, reason: string) => void;
  /** raw mode: each message, text as a string, binary as a Uint8Array */
  onmessage?: (data: string | Uint8Array) => void;
  /** a message that is not LAppS, or an onreconnect that threw */
  onerror?: (error: Error) => void;
  /** Sec-WebSocket-Protocol values to offer */
  protocols?: string | string[];
  /** the WebSocket constructor (default globalThis.WebSocket) */
  WebSocket?: typeof WebSocket;
}

export class LappsError extends Error {
  readonly code: number;
  readonly message: string;
  readonly data: LappsValue | undefined;
  constructor(code: number, message: string, data?: LappsValue);
}

export class ConnectionClosed extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason?: string);
}

export class TimeoutError extends Error {}

export class LappsProtocolError extends Error {}

export type OonCallback = (message: LappsValue[] | LappsError, envelope: { [key: string]: LappsValue }) => void;

export class LappsClient {
  /** Open a connection; resolves once it is open, rejects (ConnectionClosed, TimeoutError) if it cannot. */
  static connect(url: string, options?: LappsClientOptions): Promise<LappsClient>;
  constructor(url: string, options?: LappsClientOptions);

  readonly url: string;
  readonly raw: boolean;
  readonly state: ConnectionState;
  /** successful reconnects so far */
  readonly reconnects: number;
  timeout: number;
  onreconnect: LappsClientOptions["onreconnect"] | null;
  onstatechange: LappsClientOptions["onstatechange"] | null;
  onclose: LappsClientOptions["onclose"] | null;
  onmessage: LappsClientOptions["onmessage"] | null;
  onerror: LappsClientOptions["onerror"] | null;

  /** Call `method`; resolves with the response's result. Rejects with LappsError (an error
   *  object), TimeoutError, ConnectionClosed (a drop, or not connected), TypeError (misuse). */
  request(method: string, params?: LappsValue[] | null, options?: { timeout?: number }): Promise<LappsValue>;
  /** A client notification about channel `cid`: never answered. */
  notify(method: string, params: LappsValue[] | null | undefined, cid: number): void;
  /** Every OON on channel `cid` (an error object there: a LappsError). Returns the remover. */
  on(cid: number, fn: OonCallback): () => void;
  off(cid: number, fn: OonCallback): void;
  /** Raw mode: one text (string) or binary message. */
  send(data: string | ArrayBuffer | ArrayBufferView): void;
  /** Close for good (no reconnect); resolves when the close handshake is over. */
  close(code?: number, reason?: string): Promise<void>;
}

/** The delay (ms) before reconnect attempt `attempt` (0-based). */
export function backoffDelay(attempt: number, policy?: ReconnectPolicy, random?: () => number): number;
export function encodeMessage(message: { [key: string]: LappsValue }): Uint8Array;
export function decodeMessage(bytes: ArrayBuffer | Uint8Array): LappsValue;
