// The live dashboard in a real browser: starts `evsync serve`, opens /dashboard in Debian's
// headless Chromium (through playwright-core, no browser download), drives writes through the
// evsync client CLI (`evsync tail` keeps a replica connected, `evsync write` appends entries) and
// checks that the page shows them as they happen. Saves docs/images/dashboard.png.
//
// Run it with scripts/dashboard-test (installs Chromium and the npm packages, builds the binary).
// Environment: EVSYNC_BIN (default target/debug/evsync), CHROMIUM (default /usr/bin/chromium),
// DASHBOARD_DEBUG=1 (server and browser output on stderr).
import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { spawn } from "node:child_process"
import { once } from "node:events"
import { connect } from "node:net"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { randomBytes } from "node:crypto"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { chromium } from "playwright-core"

const repo = fileURLToPath(new URL("../..", import.meta.url))
const bin = process.env.EVSYNC_BIN || join(repo, "target/debug/evsync")
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium"
const screenshot = join(repo, "docs/images/dashboard.png")
const debug = process.env.DASHBOARD_DEBUG === "1"
const WAIT = { timeout: 20_000 }

const cleanups = []
after(async () => {
  for (const fn of cleanups.reverse()) await fn().catch((e) => console.error("cleanup:", e))
})

// ---- processes -----------------------------------------------------------------------------

/** Starts `evsync serve` on a free port; resolves once its startup line names the port. */
async function startServer({ adminToken, perTenant = false } = {}) {
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || "info" }
  delete env.SYNC_ADMIN_TOKEN
  delete env.SYNC_METRICS_PER_TENANT
  if (adminToken) env.SYNC_ADMIN_TOKEN = adminToken
  if (perTenant) env.SYNC_METRICS_PER_TENANT = "true"
  const child = spawn(bin, ["serve", "--storage", "memory", "--listen", "127.0.0.1:0"], {
    env,
    stdio: ["ignore", "ignore", "pipe"],
  })
  let log = ""
  const port = await new Promise((resolve, reject) => {
    child.stderr.setEncoding("utf8")
    child.stderr.on("data", (chunk) => {
      log += chunk
      if (debug) process.stderr.write(`[serve] ${chunk}`)
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(log)
      if (m) resolve(Number(m[1]))
    })
    child.once("exit", (code) => reject(new Error(`evsync serve exited with ${code} before listening:\n${log}`)))
    child.once("error", reject)
  })
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill("SIGTERM")
    await once(child, "exit")
  }
  cleanups.push(stop)
  const http = `http://127.0.0.1:${port}`
  return { port, http, ws: `ws://127.0.0.1:${port}/event-log`, stop, log: () => log }
}

/** Runs the evsync CLI to completion; resolves with stdout. */
function cli(args, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
    let out = "", err = ""
    child.stdout.setEncoding("utf8").on("data", (c) => (out += c))
    child.stderr.setEncoding("utf8").on("data", (c) => (err += c))
    child.once("error", reject)
    // "close", not "exit": stdout's last bytes may still be unread when the process exits.
    child.once("close", (code) =>
      code === 0 ? resolve(out) : reject(new Error(`evsync ${args[0]} exited with ${code}:\n${err}`)))
  })
}

/** `evsync tail --json`: one replica that stays connected; resolves once it follows the log. */
async function startTail(server, tenant, identity) {
  const child = spawn(bin, ["tail", "--json", "--url", server.ws, "--tenant", tenant], {
    env: { ...process.env, EVSYNC_IDENTITY: identity },
    stdio: ["ignore", "pipe", "pipe"],
  })
  const entries = []
  const waiters = []
  let buf = ""
  child.stdout.setEncoding("utf8").on("data", (c) => {
    buf += c
    let i
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i).trim()
      buf = buf.slice(i + 1)
      if (line) entries.push(JSON.parse(line))
    }
    for (const w of waiters.filter((w) => entries.length >= w.n)) {
      waiters.splice(waiters.indexOf(w), 1)
      w.resolve()
    }
  })
  /** Resolves once the replica has printed `n` entries. */
  const received = (n) =>
    entries.length >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }))
  let err = ""
  await new Promise((resolve, reject) => {
    child.stderr.setEncoding("utf8").on("data", (c) => {
      err += c
      if (debug) process.stderr.write(`[tail] ${c}`)
      if (err.includes("tail: following")) resolve()
    })
    child.once("exit", (code) => reject(new Error(`evsync tail exited with ${code}:\n${err}`)))
  })
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill("SIGTERM")
    await once(child, "exit")
  }
  cleanups.push(stop)
  return { entries, received, stop }
}

async function write(server, tenant, identity, n, label) {
  const out = await cli([
    "write", "--url", server.ws, "--tenant", tenant, "--event", "Note",
    "--primary-key", `${label}-${n}`, "--payload-json", JSON.stringify({ label, n, text: "hello from the dashboard test" }),
  ], { EVSYNC_IDENTITY: identity })
  return JSON.parse(out.trim().split("\n").pop())
}

/**
 * A client that breaks the protocol: a raw WebSocket that sends a frame that is not MessagePack.
 * Resolves with the close frame the server answers ({ code, reason }).
 */
async function protocolBreaker(server, tenant) {
  const sock = connect(server.port, "127.0.0.1")
  await once(sock, "connect")
  sock.write(
    `GET /event-log/${tenant} HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  )
  let buf = Buffer.alloc(0)
  let upgraded = false
  return await new Promise((resolve, reject) => {
    sock.on("error", reject)
    sock.on("end", () => reject(new Error("the server ended the socket without a close frame")))
    sock.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk])
      if (!upgraded) {
        const end = buf.indexOf("\r\n\r\n")
        if (end < 0) return
        const head = buf.subarray(0, end).toString("latin1")
        if (!head.startsWith("HTTP/1.1 101")) return reject(new Error(`no upgrade: ${head}`))
        upgraded = true
        buf = buf.subarray(end + 4)
        // One masked binary frame: 0xc1 is a byte MessagePack never uses.
        const payload = Buffer.from([0xc1, 0xc1, 0xc1])
        const mask = randomBytes(4)
        sock.write(Buffer.concat([
          Buffer.from([0x82, 0x80 | payload.length]), mask, payload.map((b, i) => b ^ mask[i % 4]),
        ]))
      }
      // Server frames (unmasked): skip the Hello, stop at the close frame.
      while (buf.length >= 2) {
        const opcode = buf[0] & 0x0f
        let len = buf[1] & 0x7f, off = 2
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4 }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10 }
        if (buf.length < off + len) return
        const payload = buf.subarray(off, off + len)
        buf = buf.subarray(off + len)
        if (opcode === 0x8) {
          sock.destroy()
          return resolve({ code: payload.readUInt16BE(0), reason: payload.subarray(2).toString("utf8") })
        }
      }
    })
  })
}

// ---- browser -------------------------------------------------------------------------------

async function openBrowser(httpCredentials) {
  const userDataDir = mkdtempSync(join(tmpdir(), "evsync-dashboard-chromium-"))
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    viewport: { width: 1280, height: 800 },
    colorScheme: "light",
    httpCredentials,
  })
  const close = async () => {
    await context.close()
    rmSync(userDataDir, { recursive: true, force: true })
  }
  cleanups.push(close)
  const page = context.pages()[0] ?? (await context.newPage())
  const pageErrors = []
  page.on("pageerror", (e) => pageErrors.push(e))
  if (debug) page.on("console", (m) => process.stderr.write(`[page] ${m.text()}\n`))
  return { context, page, pageErrors, close }
}

const byId = (id) => `[data-testid="${id}"]`
/** The raw number behind a figure on the page (its data-value). */
const value = (page, id) => page.locator(byId(id)).getAttribute("data-value").then((v) => (v === "" || v == null ? null : Number(v)))

/** Waits until the figure `id` (its data-value) is `op` `n`: op is one of ==, >=, >. */
function waitValue(page, id, op, n) {
  return page.waitForFunction(
    ({ sel, op, n }) => {
      const raw = document.querySelector(sel)?.getAttribute("data-value")
      if (raw == null || raw === "") return false
      const v = Number(raw)
      return op === "==" ? v === n : op === ">=" ? v >= n : op === ">" ? v > n : false
    },
    { sel: byId(id), op, n },
    WAIT,
  )
}

/** Resolves after the page has rendered `n` more snapshots than now. */
async function nextSnapshots(page, n = 1) {
  const seen = Number(await page.evaluate(() => document.body.dataset.snapshots || 0))
  await page.waitForFunction((want) => Number(document.body.dataset.snapshots || 0) >= want, seen + n, WAIT)
}

const basic = (user, password) => "Basic " + Buffer.from(`${user}:${password}`).toString("base64")

// ---- the tests -----------------------------------------------------------------------------

describe("evsync dashboard in Chromium", () => {
  const adminToken = randomBytes(24).toString("base64url")
  let server

  before(async () => {
    server = await startServer({ adminToken, perTenant: true })
  })

  test("the routes ask for the admin token and answer the snapshot shape", async () => {
    let res = await fetch(`${server.http}/dashboard`)
    assert.equal(res.status, 401)
    assert.match(res.headers.get("www-authenticate") || "", /^Basic realm="evsync"/)
    res = await fetch(`${server.http}/dashboard/stats`, { headers: { authorization: basic("x", "wrong-" + adminToken) } })
    assert.equal(res.status, 401)
    res = await fetch(`${server.http}/dashboard/stats`, { headers: { authorization: `Bearer ${adminToken}x` } })
    assert.equal(res.status, 401)

    res = await fetch(`${server.http}/dashboard/stats`, { headers: { authorization: `Bearer ${adminToken}` } })
    assert.equal(res.status, 200)
    const snap = await res.json()
    assert.deepEqual(Object.keys(snap).sort(), [
      "busiestTenants", "commitSeconds", "connections", "deliveryLagSeconds", "perTenant", "ready",
      "readyReason", "recentCloses", "storage", "tenantsLoaded", "totals", "uptimeSeconds", "version",
    ])
    assert.deepEqual(Object.keys(snap.totals).sort(), [
      "authFailures", "bytesReceived", "bytesSent", "catchupReads", "connectionsClosed",
      "entriesAppended", "framesReceived", "storageErrors",
    ])
    assert.equal(snap.storage, "memory")
    assert.equal(snap.ready, true)
    assert.equal(snap.readyReason, null)
    assert.equal(snap.perTenant, true)
    assert.ok(Array.isArray(snap.busiestTenants))
    assert.ok(Array.isArray(snap.recentCloses))
    assert.equal(snap.totals.entriesAppended, 0)
    for (const h of [snap.commitSeconds, snap.deliveryLagSeconds]) {
      assert.deepEqual(h, { count: 0, p50: null, p90: null, p99: null })
    }
    // The three refused requests above (no token, two wrong ones) were counted.
    assert.ok(snap.totals.authFailures >= 3, `authFailures ${snap.totals.authFailures}`)

    // Basic with any user name and the token as password; the event stream is SSE.
    const ctl = new AbortController()
    res = await fetch(`${server.http}/dashboard/events`, { headers: { authorization: basic("anyone", adminToken) }, signal: ctl.signal })
    assert.equal(res.status, 200)
    assert.match(res.headers.get("content-type") || "", /^text\/event-stream/)
    const reader = res.body.getReader()
    let text = ""
    while (!/\n\n/.test(text)) {
      const { done, value } = await reader.read()
      if (done) break
      text += new TextDecoder().decode(value)
    }
    ctl.abort()
    const first = /^data: (.*)$/m.exec(text)
    assert.ok(first, `an SSE data line, got ${JSON.stringify(text.slice(0, 200))}`)
    assert.equal(typeof JSON.parse(first[1]).uptimeSeconds, "number")
  })

  test("writes through a real client show up live on the page", async () => {
    const { page, pageErrors } = await openBrowser({ username: "operator", password: adminToken })
    const res = await page.goto(`${server.http}/dashboard`)
    assert.equal(res.status(), 200)
    assert.equal(await page.title(), "evsync dashboard")

    // The stream is live and the server is idle.
    await page.waitForFunction((sel) => document.querySelector(sel)?.dataset.value === "live", byId("stream-state"), WAIT)
    await waitValue(page, "entries-total", "==", 0)
    await waitValue(page, "connections-total", "==", 0)
    assert.equal(await page.locator(byId("ready-state")).getAttribute("data-value"), "ready")
    assert.equal(await page.locator(byId("storage")).textContent(), "memory")
    assert.ok(await page.locator(byId("busiest-tenants")).isVisible())
    assert.ok(await page.locator(byId("per-tenant-note")).isHidden())

    // Remember the highest entries/s the page ever shows (it falls back to 0 once writes stop).
    await page.evaluate((sel) => {
      window.__maxEntriesRate = 0
      const target = document.querySelector(sel)
      const seen = () => {
        const v = Number(target.dataset.value || 0)
        if (v > window.__maxEntriesRate) window.__maxEntriesRate = v
      }
      new MutationObserver(seen).observe(target, { attributes: true, childList: true, characterData: true, subtree: true })
    }, byId("entries-rate"))

    // A replica that stays connected: a v3 connection and a loaded tenant appear.
    const identities = {}
    for (const tenant of ["acme", "globex", "initech"]) identities[tenant] = (await cli(["identity", "new"])).trim()
    const tail = await startTail(server, "acme", identities.acme)
    await waitValue(page, "connections-v3", ">=", 1)
    await waitValue(page, "connections-total", ">=", 1)
    await waitValue(page, "tenants-loaded", ">=", 1)

    // Batches of writes; after each, the entries counter reaches the number written so far.
    const batches = [["acme", 3], ["globex", 2], ["acme", 5], ["globex", 1], ["acme", 4], ["acme", 2]]
    let written = 0
    const perTenant = { acme: 0, globex: 0, initech: 0 }
    const writeMany = async (tenant, count) => {
      for (let i = 0; i < count; i++) {
        await write(server, tenant, identities[tenant], perTenant[tenant], tenant)
        perTenant[tenant]++
        written++
      }
    }
    for (const [tenant, count] of batches) {
      await writeMany(tenant, count)
      await waitValue(page, "entries-total", "==", written)
    }
    assert.equal(await page.locator(byId("entries-total")).textContent(), String(written))
    await page.waitForFunction(() => window.__maxEntriesRate > 0, null, WAIT)

    // The live replica got acme's entries; commits and deliveries were timed.
    await tail.received(perTenant.acme)
    assert.deepEqual(tail.entries.map((e) => e.primaryKey), Array.from({ length: perTenant.acme }, (_, i) => `acme-${i}`))
    await waitValue(page, "commit-count", ">=", 1)
    await waitValue(page, "commit-p50", ">", 0)
    await waitValue(page, "delivery-count", ">=", 1)
    await waitValue(page, "delivery-p99", ">=", 0)
    await waitValue(page, "bytes-received-total", ">", 0)
    await waitValue(page, "bytes-sent-total", ">", 0)
    await waitValue(page, "frames-received-total", ">=", written)
    await waitValue(page, "tenants-loaded", ">=", 2)

    // Per-tenant statistics: acme is the busiest tenant, with its count.
    await waitValue(page, "tenant-entries-acme", "==", perTenant.acme)
    await waitValue(page, "tenant-entries-globex", "==", perTenant.globex)
    assert.equal(await page.locator('[data-testid="busiest-tenant"]').first().getAttribute("data-tenant"), "acme")

    // Every `evsync write` connected and left: each of its connections was counted as closed.
    await waitValue(page, "connections-closed-total", ">=", written)

    // A client that breaks the protocol is closed with 1002: the close is listed with its reason.
    const close = await protocolBreaker(server, "globex")
    assert.equal(close.code, 1002)
    await page.waitForFunction(
      (sel) => document.querySelector(sel)?.dataset.reason === "protocol_error",
      `${byId("recent-closes")} tr:first-child`,
      WAIT,
    )
    const row = await page.locator(`${byId("recent-closes")} tr`).first().textContent()
    assert.match(row, /1002/)
    assert.ok(row.includes(close.reason), `the close reason ${JSON.stringify(close.reason)} in ${JSON.stringify(row)}`)

    // Steady traffic over a few seconds, a batch between snapshots, then the picture (taken while
    // the last interval's rates are still on screen); the counter then settles on the total.
    for (const [tenant, count] of [["acme", 8], ["globex", 14], ["acme", 10], ["initech", 20], ["acme", 16], ["globex", 24], ["acme", 12], ["initech", 18]]) {
      await writeMany(tenant, count)
      await nextSnapshots(page, 1)
    }
    await waitValue(page, "entries-rate", ">", 0)
    mkdirSync(dirname(screenshot), { recursive: true })
    await page.screenshot({ path: screenshot, fullPage: true })
    await waitValue(page, "entries-total", "==", written)
    await tail.received(perTenant.acme)
    await waitValue(page, "tenant-entries-initech", "==", perTenant.initech)

    // The replica leaves: its connection goes and its close is listed.
    const closedBefore = await value(page, "connections-closed-total")
    await tail.stop()
    await waitValue(page, "connections-total", "==", 0)
    await waitValue(page, "connections-closed-total", ">", closedBefore)

    // The page agrees with the server's own snapshot and its Prometheus metrics.
    const snap = await (await fetch(`${server.http}/dashboard/stats`, { headers: { authorization: `Bearer ${adminToken}` } })).json()
    assert.equal(snap.totals.entriesAppended, written)
    const metrics = await (await fetch(`${server.http}/metrics`)).text()
    assert.match(metrics, new RegExp(`^evsync_entries_appended_total(\\{[^}]*\\})? ${written}$`, "m"))
    assert.deepEqual(pageErrors, [])
  })

  test("a wrong admin token gets 401 and no dashboard", async () => {
    const { page } = await openBrowser({ username: "operator", password: "not-" + adminToken })
    const res = await page.goto(`${server.http}/dashboard`)
    assert.equal(res.status(), 401)
    assert.equal(await page.locator(byId("entries-total")).count(), 0)
    assert.equal(await page.locator(byId("connections-total")).count(), 0)
  })
})

describe("evsync dashboard without per-tenant statistics", () => {
  test("the busiest tenants are replaced by a note on how to turn them on", async () => {
    const adminToken = randomBytes(24).toString("base64url")
    const server = await startServer({ adminToken })
    const { page, pageErrors } = await openBrowser({ username: "admin", password: adminToken })
    assert.equal((await page.goto(`${server.http}/dashboard`)).status(), 200)
    await waitValue(page, "entries-total", "==", 0)
    assert.ok(await page.locator(byId("per-tenant-note")).isVisible())
    assert.ok(await page.locator(byId("busiest-tenants")).isHidden())
    assert.match(await page.locator(byId("per-tenant-note")).textContent(), /--metrics-per-tenant/)
    assert.deepEqual(pageErrors, [])
    await server.stop()
  })

  test("without an admin token a loopback listener serves it openly", async () => {
    const server = await startServer()
    const res = await fetch(`${server.http}/dashboard`)
    assert.equal(res.status, 200)
    assert.match(await res.text(), /data-testid="entries-total"/)
    const snap = await (await fetch(`${server.http}/dashboard/stats`)).json()
    assert.equal(snap.perTenant, false)
    assert.equal(snap.busiestTenants, null)
    await server.stop()
  })
})
