// A minimal EventLogRemote peer for the end-to-end tests: msgpack frames as
// Effect encodes them (msgpackr, records off), chunking both ways, and an
// awaitable queue of decoded server messages. Every wait is bounded.
import WebSocket from "ws";
import http from "node:http";
import { randomBytes } from "node:crypto";
import { Packr, Unpackr } from "msgpackr";

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });

/** Effect's chunk size: messages over it travel as ChunkedMessage parts. */
export const CHUNK_SIZE = 512_000;

/** How long any single expected event may take. */
export const STEP_TIMEOUT_MS = Number(process.env.EVSYNC_STEP_TIMEOUT_MS ?? 30_000);

export const encode = (value) => packr.pack(value);
export const decode = (bytes) => unpackr.unpack(bytes);

export const entryId = () => new Uint8Array(randomBytes(16));
export const iv = () => new Uint8Array(randomBytes(12));
export const entry = (size = 32) => ({
  entryId: entryId(),
  encryptedEntry: new Uint8Array(randomBytes(size)),
});

function withTimeout(promise, what, ms = STEP_TIMEOUT_MS, onTimeout = () => {}) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * One plain HTTP request (node:http, so that `Upgrade` can be set), answered
 * as { status, headers, body }. A 101 is reported too, and its socket closed.
 * Bounded by `timeoutMs` (one step's bound unless the caller knows better).
 */
export function httpRequest(base, path, headers = {}, timeoutMs = STEP_TIMEOUT_MS) {
  const url = new URL(path, base);
  const req = http.request(url, { method: "GET", headers });
  return withTimeout(
    new Promise((resolve, reject) => {
      req.on("response", (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }),
        );
      });
      req.on("upgrade", (res, socket) => {
        socket.destroy();
        resolve({ status: res.statusCode, headers: res.headers, body: "" });
      });
      req.on("error", reject);
      req.end();
    }),
    `HTTP ${path}`,
    timeoutMs,
    () => req.destroy(),
  );
}

/** Headers of a WebSocket handshake (for raw upgrade requests). */
export const upgradeHeaders = () => ({
  Connection: "Upgrade",
  Upgrade: "websocket",
  "Sec-WebSocket-Version": "13",
  "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
});

export class Peer {
  /**
   * Connects to `${wsBase}/event-log/${tenant}` and waits for the socket to
   * open (rejects with the HTTP status if the upgrade is refused).
   */
  static open(wsBase, tenant, { token, protocols, headers = {} } = {}) {
    const allHeaders = { ...headers };
    if (token) allHeaders.Authorization = `Bearer ${token}`;
    const ws = new WebSocket(`${wsBase}/event-log/${tenant}`, protocols ?? [], {
      headers: allHeaders,
      maxPayload: 64 * 1024 * 1024,
    });
    const peer = new Peer(ws);
    return withTimeout(
      new Promise((resolve, reject) => {
        ws.once("open", () => resolve(peer));
        ws.once("unexpected-response", (_req, res) => {
          const err = new Error(`upgrade refused with ${res.statusCode}`);
          err.status = res.statusCode;
          reject(err);
        });
        ws.once("error", reject);
      }),
      `socket to ${tenant}`,
    );
  }

  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    this.partials = new Map();
    this.closed = null;
    this.nextChunkId = 1;
    ws.on("message", (data) => this.#onFrame(new Uint8Array(data)));
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      for (const w of this.waiters.splice(0)) w.reject(new Error(`socket closed (${code} ${reason})`));
    });
  }

  #onFrame(bytes) {
    const message = decode(bytes);
    if (message._tag !== "ChunkedMessage") return this.#deliver(message);
    const [index, total] = message.part;
    let partial = this.partials.get(message.id);
    if (!partial) this.partials.set(message.id, (partial = { parts: new Array(total), received: 0 }));
    if (!partial.parts[index]) {
      partial.parts[index] = message.data;
      partial.received++;
    }
    if (partial.received === total) {
      this.partials.delete(message.id);
      this.#deliver(decode(Buffer.concat(partial.parts)));
    }
  }

  #deliver(message) {
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(message);
    else this.queue.push(message);
  }

  /** The next server message (reassembled if it came in chunks). */
  next(what = "a message") {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
    if (this.closed) return Promise.reject(new Error(`socket closed (${this.closed.code})`));
    return withTimeout(
      new Promise((resolve, reject) => this.waiters.push({ resolve, reject })),
      what,
    );
  }

  /** The next message, which must carry `tag`. */
  async expect(tag) {
    const message = await this.next(tag);
    if (message._tag !== tag) {
      throw new Error(`expected ${tag}, got ${message._tag}: ${JSON.stringify(message).slice(0, 300)}`);
    }
    return message;
  }

  send(message) {
    this.ws.send(encode(message));
  }

  /** Sends `message` split into ChunkedMessage parts, as Effect does. */
  sendChunked(message) {
    const bytes = encode(message);
    const total = Math.ceil(bytes.length / CHUNK_SIZE);
    const id = this.nextChunkId++;
    for (let index = 0; index < total; index++) {
      const data = bytes.subarray(index * CHUNK_SIZE, (index + 1) * CHUNK_SIZE);
      this.send({ _tag: "ChunkedMessage", id, part: [index, total], data });
    }
    return total;
  }

  /** Writes entries and returns the Ack's sequence numbers. */
  async write(publicKey, id, entries, batchIv = iv()) {
    const message = { _tag: "WriteEntries", publicKey, id, iv: batchIv, encryptedEntries: entries };
    if (encode(message).length > CHUNK_SIZE) this.sendChunked(message);
    else this.send(message);
    const ack = await this.expect("Ack");
    if (ack.id !== id) throw new Error(`Ack for ${ack.id}, expected ${id}`);
    return ack.sequenceNumbers;
  }

  /** Collects Changes for `publicKey` until `count` entries have arrived. */
  async changes(publicKey, count) {
    const entries = [];
    while (entries.length < count) {
      const message = await this.expect("Changes");
      if (message.publicKey !== publicKey) throw new Error(`Changes for ${message.publicKey}`);
      entries.push(...message.entries);
    }
    return entries;
  }

  /** Round-trips a Ping: every frame the server queued before it is read. */
  async ping(id) {
    this.send({ _tag: "Ping", id });
    const pong = await this.expect("Pong");
    if (pong.id !== id) throw new Error(`Pong ${pong.id}, expected ${id}`);
  }

  close() {
    this.ws.close();
  }
}
