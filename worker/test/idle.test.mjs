// The idle-socket timeout across hibernation (worker/src/idle.rs), against
// the `idle` instance scripts/worker-test starts: Durable Object SQLite with
// SYNC_IDLE_SOCKET_TIMEOUT set. Environment:
//   EVSYNC_BASE             http://127.0.0.1:<port>
//   EVSYNC_RUN              unique id of this run (tenant names)
//   EVSYNC_LOG              the instance's wrangler log
//   EVSYNC_IDLE_TIMEOUT_MS  the instance's timeout
//
// A hibernating object loses the engine's last-heard times while its
// sockets stay open; the object keeps them coarsely in its SQLite and its
// alarm wakes it to close a quiet socket. Promised: never before the
// timeout, at most a quarter of it late. A clock restarted at the wake-up
// instead would close the socket only at twice the timeout (the alarm
// wakes it at the timeout), and no alarm would leave it open for good.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Peer } from "./peer.mjs";
import { logLine } from "./worker-log.mjs";

const WS_BASE = process.env.EVSYNC_BASE.replace(/^http/, "ws");
const RUN = process.env.EVSYNC_RUN ?? Date.now().toString(36);
const TIMEOUT_MS = Number(process.env.EVSYNC_IDLE_TIMEOUT_MS);

test("a quiet socket is closed after the idle timeout although its object hibernated", { timeout: 4 * TIMEOUT_MS }, async () => {
  assert.ok(TIMEOUT_MS > 0, "EVSYNC_IDLE_TIMEOUT_MS is not set");
  const tenant = `idle-${RUN}`;
  const opened = Date.now();
  const peer = await Peer.open(WS_BASE, tenant, { token: "shared-token" });
  await peer.expect("Hello");
  // When the server's close frame arrives. The socket's "close" event
  // comes only once the TCP connection ends, which local workerd does
  // seconds after its close frame: the frame is what the server decided.
  const closeFrame = new Promise((resolve) =>
    peer.ws._receiver.once("conclude", (code, reason) =>
      resolve({ code, reason: reason.toString(), afterMs: Date.now() - opened }),
    ),
  );
  const closed = await closeFrame;
  assert.equal(closed.code, 1000);
  assert.equal(closed.reason, `idle: no frame received for ${TIMEOUT_MS / 1000} s`);
  assert.ok(closed.afterMs >= TIMEOUT_MS, `closed ${closed.afterMs} ms after opening: before the timeout`);
  // The bound promised is 1.25 x; the margin is for a busy machine, and
  // stays well under the 2 x a clock restarted at the wake-up would give.
  assert.ok(closed.afterMs < 1.6 * TIMEOUT_MS, `closed ${closed.afterMs} ms after opening (timeout ${TIMEOUT_MS} ms)`);
  // The object really hibernated with the socket open, and its alarm woke
  // it with the socket restored, before the close.
  const woke = await logLine(
    (l) => l.fields.message === "woke with open sockets" && l.fields.tenant === tenant && l.fields.sockets === 1,
    "woke with open sockets",
  );
  const closing = await logLine(
    (l) => l.fields.message === "closing connection" && l.fields.tenant === tenant && l.fields.code === 1000,
    "closing connection (idle)",
  );
  assert.ok(woke.timestamp <= closing.timestamp, "the object woke before it closed the socket");
  console.log(`idle close frame after ${closed.afterMs} ms (timeout ${TIMEOUT_MS} ms)`);
});
