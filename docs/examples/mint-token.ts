// Mints an evsync signed token in an app's backend (Node.js), without the evsync CLI.
// The format is docs/tokens.md; `secret` is the server's SYNC_TOKEN_SECRET (>= 32 bytes).
import { createHmac } from "node:crypto"

export interface TokenOptions {
  readonly tenant: string
  readonly readOnly?: boolean // reads only: a write closes the socket (1008)
  readonly expiresInMs?: number // omitted: valid until revoked
  readonly publicKey?: string // only this identity's log
}

export const mintToken = (secret: string, options: TokenOptions, now: number = Date.now()): string => {
  const payload: Record<string, string | number> = { t: options.tenant, s: options.readOnly ? "ro" : "rw", iat: now }
  if (options.expiresInMs !== undefined) payload.exp = now + options.expiresInMs
  if (options.publicKey !== undefined) payload.pk = options.publicKey
  const signed = "evs1." + Buffer.from(JSON.stringify(payload)).toString("base64url")
  return signed + "." + createHmac("sha256", secret).update(signed).digest("base64url")
}

// `tsx mint-token.ts <tenant> [ro|rw] [expiresInMs]` prints one (the test suite runs this).
const [tenant, scope, expires] = process.argv.slice(2)
if (tenant !== undefined) {
  const options = { tenant, readOnly: scope === "ro", expiresInMs: expires ? Number(expires) : undefined }
  console.log(mintToken(process.env.SYNC_TOKEN_SECRET ?? "", options))
}
