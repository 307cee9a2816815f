// A raw Effect v4 EventLog RPC client for the auth scenarios (PROTOCOL-V4.md §6.6): Effect's own
// `RpcClient.make(EventLogRemoteRpcs)` over the same socket stack as a replica (SchemaBinary,
// Socket.layerWebSocket, NodeWS's constructor), without EventLogRemote, so a test sends exactly
// the requests it means to: a Hello, a hand-made Authenticate, a WriteSingle before any
// Authenticate. Every call resolves with Effect's Exit (`{ ok, value }` or `{ ok: false, error }`)
// and never retries: a refusal is what the tests look at.
import * as NodeWS from "@effect/platform-node/NodeWS"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as EventLog from "effect/eventlog/EventLog"
import * as EventLogMessage from "effect/eventlog/EventLogMessage"
import * as EventLogSessionAuth from "effect/eventlog/EventLogSessionAuth"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as Socket from "effect/socket/Socket"
import * as Stream from "effect/Stream"
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign } from "node:crypto"

const RawClient = Context.Service("evsync-interop-v4/RawClient")

// ---------------------------------------------------------------------------------------------
// Ed25519 keys (node:crypto), the same derivation as Effect's identities
// ---------------------------------------------------------------------------------------------

// PKCS#8 DER of an Ed25519 private key, before its 32-byte seed (RFC 8410)
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex")

const keyPair = (privateKey) => ({
  privateKey,
  publicKey: new Uint8Array(Buffer.from(createPublicKey(privateKey).export({ format: "jwk" }).x, "base64url"))
})

/**
 * The signing key of an identity string, derived as Effect does (PROTOCOL-V4.md §2.3):
 * seed = SHA-256("effect/eventlog/identity/v1/signing" ‖ 0x00 ‖ root secret).
 */
export const signingKeyOf = (identityString) => {
  const root = Redacted.value(EventLog.decodeIdentityString(identityString).privateKey)
  const seed = createHash("sha256").update("effect/eventlog/identity/v1/signing").update(Buffer.from([0]))
    .update(root).digest()
  return keyPair(createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: "der", type: "pkcs8" }))
}

/** A fresh Ed25519 key, nobody's identity. */
export const randomSigningKey = () => keyPair(generateKeyPairSync("ed25519").privateKey)

/**
 * A hand-made Authenticate: the canonical payload of `hello` and `publicKey` (Effect's own
 * encodeSessionAuthPayload) naming `signingPublicKey`, signed with `signer`'s private key.
 */
export const makeAuthenticate = async ({ hello, publicKey, signingPublicKey, signer }) => {
  const payload = await Effect.runPromise(EventLogSessionAuth.encodeSessionAuthPayload({
    remoteId: hello.remoteId,
    challenge: hello.challenge,
    publicKey,
    signingPublicKey
  }))
  const signature = new Uint8Array(sign(null, payload, signer.privateKey))
  return new EventLogMessage.Authenticate({ publicKey, signingPublicKey, signature, algorithm: "Ed25519" })
}

/** The data of a WriteSingle: a WriteEntries frame of one opaque batch of `count` fresh entry ids. */
export const writeEntriesData = ({ publicKey, storeId = "default", count = 1 }) =>
  Effect.runPromise(
    new EventLogMessage.WriteEntries({
      publicKey,
      storeId: EventLogMessage.StoreId.make(storeId),
      batches: [{
        entryIds: Array.from({ length: count }, () => new Uint8Array(randomBytes(16))),
        iv: new Uint8Array(randomBytes(12)),
        encryptedBatch: new Uint8Array(randomBytes(64))
      }]
    }).encoded
  )

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

const toResult = (exit) => {
  if (Exit.isSuccess(exit)) return { ok: true, value: exit.value }
  const fail = exit.cause.reasons.find((r) => r._tag === "Fail")
  return { ok: false, error: fail?.error, cause: Cause.pretty(exit.cause) }
}

/**
 * Opens a raw EventLog RPC client on `url` (one WebSocket, opened with the first request).
 * @param {string} url ws://host:port/v4/event-log/<tenant>
 * @param {{ protocols?: string | string[], headers?: Record<string, string> }} [options]
 */
export const openRawClient = async (url, options = {}) => {
  const layer = Layer.effect(RawClient)(
    RpcClient.make(EventLogMessage.EventLogRemoteRpcs, { disableTracing: true })
  ).pipe(
    Layer.provide(RpcClient.layerProtocolSocket()),
    Layer.provide(RpcSerialization.layerSchemaBinary()),
    Layer.provide(Socket.layerWebSocket(url, { protocols: options.protocols, headers: options.headers })),
    Layer.provide(NodeWS.layerWebSocketConstructor)
  )
  const runtime = ManagedRuntime.make(layer)
  const call = (f, timeoutMs = 15_000) =>
    runtime.runPromise(
      Effect.gen(function*() {
        const client = yield* RawClient
        return yield* Effect.exit(f(client).pipe(Effect.timeout(timeoutMs)))
      })
    ).then(toResult)
  return {
    /** EventLog.Hello: { remoteId, challenge, firstSequence?, compaction? } */
    hello: () => call((c) => c["EventLog.Hello"]()),
    authenticate: (authenticate) => call((c) => c["EventLog.Authenticate"](authenticate)),
    writeSingle: (data) => call((c) => c["EventLog.WriteSingle"]({ data })),
    /** The first Chunk of a Changes stream (its values), or the failure that ends the stream. */
    changesHead: ({ publicKey, storeId = "default", startSequence = 0 }) =>
      call((c) =>
        Stream.runHead(c["EventLog.Changes"]({ publicKey, storeId: EventLogMessage.StoreId.make(storeId), startSequence }))
      ),
    close: () => runtime.dispose()
  }
}
