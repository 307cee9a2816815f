// The Worker's log lines (worker/src/log.rs), read from the wrangler log
// named by EVSYNC_LOG: one JSON object each, in the native server's
// `--log-format json` shape. wrangler dev wraps warnings and errors in
// colour codes and a "▲ [WARNING]" prefix; the object is taken from the
// line. Lines that are not the Worker's (wrangler's own) have no
// `{"timestamp":`.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

export const workerLogLines = async () =>
  readFileSync(process.env.EVSYNC_LOG, "utf8")
    .replace(/\x1b\[[0-9;]*m/g, "")
    .split("\n")
    .filter((line) => line.includes('{"timestamp":'))
    .map((line) => JSON.parse(line.slice(line.indexOf('{"timestamp":'))));

/** Polls the log (written asynchronously) until a line satisfies `pred`. */
export const logLine = async (pred, what) => {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const found = (await workerLogLines()).find(pred);
    if (found) return found;
    assert.ok(Date.now() < deadline, `no log line ${what} within 15 s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
};
