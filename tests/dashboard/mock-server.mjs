// A stand-in for evsync's dashboard routes, for working on the page without building the server:
//
//   node tests/dashboard/mock-server.mjs [--port 8788] [--per-tenant] [--no-sse] [--token T]
//
// Serves crates/evsync-server/src/dashboard/page.html at /dashboard (read again on every request,
// so a reload shows edits), and made-up snapshots in the server's JSON shape at /dashboard/stats
// and /dashboard/events (SSE, one a second). --no-sse answers the stream with 404, to see the
// page fall back to polling. --token T asks for the admin token like the server does (Bearer, or
// Basic with the token as the password; 401 with WWW-Authenticate: Basic realm="evsync").
import { createServer } from "node:http"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"

const page = fileURLToPath(new URL("../../crates/evsync-server/src/dashboard/page.html", import.meta.url))
const { values: opts } = parseArgs({
  options: {
    port: { type: "string", default: "8788" },
    "per-tenant": { type: "boolean", default: false },
    "no-sse": { type: "boolean", default: false },
    token: { type: "string" },
  },
})

const started = Date.now()
const reasons = [
  ["peer", null, "connection reset"],
  ["idle", 1000, "idle: no frame received for 300 s"],
  ["policy_violation", 1008, "token expired"],
  ["going_away", 1001, "server shutting down"],
  ["protocol_error", 1002, "bad frame"],
]
const tenants = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne"]
const state = {
  totals: { entriesAppended: 0, bytesReceived: 0, bytesSent: 0, framesReceived: 0, storageErrors: 0, authFailures: 1, catchupReads: 0, connectionsClosed: 0 },
  v3: 3,
  perTenant: new Map(tenants.map((t) => [t, { entriesAppended: 0, connections: 0 }])),
  closes: [],
  commits: 0,
}

function step() {
  const t = (Date.now() - started) / 1000
  const burst = Math.max(0, Math.round(40 + 35 * Math.sin(t / 6) + Math.random() * 15))
  state.totals.entriesAppended += burst
  state.totals.framesReceived += Math.ceil(burst / 4)
  state.totals.bytesReceived += burst * 380
  state.totals.bytesSent += burst * 380 * state.v3
  state.commits += Math.ceil(burst / 4)
  if (Math.random() < 0.2) state.totals.catchupReads++
  state.v3 = Math.max(1, state.v3 + (Math.random() < 0.5 ? -1 : 1))
  tenants.forEach((name, i) => {
    const s = state.perTenant.get(name)
    s.entriesAppended += Math.round(burst / (i + 1.5))
    s.connections = Math.max(0, Math.round(state.v3 / (i + 1)))
  })
  if (Math.random() < 0.25) {
    const [reason, code, detail] = reasons[Math.floor(Math.random() * reasons.length)]
    state.closes.unshift({ atMs: Date.now(), reason, code, detail, tenant: Math.random() < 0.7 ? tenants[Math.floor(Math.random() * 3)] : null })
    state.closes.length = Math.min(state.closes.length, 20)
    state.totals.connectionsClosed++
  }
}
setInterval(step, 1000)

function snapshot() {
  const uptime = (Date.now() - started) / 1000
  const hist = (count, base) => count === 0
    ? { count, p50: null, p90: null, p99: null }
    : { count, p50: base, p90: base * 2.4, p99: base * 5.1 }
  return {
    version: "0.1.0-mock", uptimeSeconds: uptime, storage: "sqlite",
    ready: true, readyReason: null,
    connections: { v3: state.v3 }, tenantsLoaded: 4,
    totals: { ...state.totals },
    commitSeconds: hist(state.commits, 0.0011),
    deliveryLagSeconds: hist(state.commits, 0.00009),
    recentCloses: state.closes,
    perTenant: opts["per-tenant"],
    busiestTenants: opts["per-tenant"]
      ? [...state.perTenant].map(([tenant, s]) => ({ tenant, ...s })).sort((a, b) => b.entriesAppended - a.entriesAppended).slice(0, 10)
      : null,
  }
}

function authorized(req) {
  if (!opts.token) return true
  const h = req.headers.authorization || ""
  if (h === `Bearer ${opts.token}`) return true
  if (h.startsWith("Basic ")) {
    const decoded = Buffer.from(h.slice(6), "base64").toString()
    return decoded.slice(decoded.indexOf(":") + 1) === opts.token
  }
  return false
}

createServer((req, res) => {
  const path = new URL(req.url, "http://x").pathname
  if (!path.startsWith("/dashboard")) return res.writeHead(404).end("Not found")
  if (!authorized(req)) {
    return res.writeHead(401, { "www-authenticate": 'Basic realm="evsync"', "content-type": "text/plain" }).end("Unauthorized")
  }
  if (path === "/dashboard") {
    return res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" }).end(readFileSync(page))
  }
  if (path === "/dashboard/stats") {
    return res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" }).end(JSON.stringify(snapshot()))
  }
  if (path === "/dashboard/events" && !opts["no-sse"]) {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" })
    const send = () => res.write(`data: ${JSON.stringify(snapshot())}\n\n`)
    send()
    const timer = setInterval(send, 1000)
    req.on("close", () => clearInterval(timer))
    return
  }
  res.writeHead(404).end("Not found")
}).listen(Number(opts.port), "127.0.0.1", function () {
  console.error(`mock dashboard on http://127.0.0.1:${this.address().port}/dashboard`)
})
