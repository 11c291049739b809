// Many small tus uploads at once: each a POST and one PATCH of the whole body, over
// keep-alive connections, `concurrency` uploads in flight.
// Usage: node small_uploads.mjs <creation url> <token or -> <warm-up> <uploads> <concurrency> <size>
// After the warm-up (it opens the connections and fills the servers' pools; not
// counted) prints "ready" and waits for a line on stdin, so that the caller can read
// the servers' CPU time; then runs the timed uploads and prints one JSON line of
// them: uploads, seconds, failed and the client's own CPU seconds.
//
// undici's Pool.request, not fetch: fetch is undici too, but its WHATWG layer cost
// this client about 1 ms of CPU per upload, close to what a server spends, so it
// measured itself (about 500-850 uploads/s against bench/bare_splice.py, where
// Pool.request sends over 2,000/s at a fifth of the CPU).
import { randomFillSync } from "node:crypto";
import { Pool } from "undici";

const [url, token, warmup, uploads, concurrency, size] = process.argv.slice(2);
const body = randomFillSync(Buffer.alloc(Number(size))); // incompressible, like media
const base = new URL(url);
const pool = new Pool(base.origin, { connections: Number(concurrency) });
const auth = token === "-" ? {} : { authorization: `Bearer ${token}` };

async function upload() {
  const created = await pool.request({
    method: "POST",
    path: base.pathname,
    headers: { "tus-resumable": "1.0.0", "upload-length": String(body.length), ...auth },
  });
  await created.body.dump(); // read to the end: the connection goes back to the pool
  if (created.statusCode !== 201) throw new Error(`POST answered ${created.statusCode}`);
  const patched = await pool.request({
    method: "PATCH",
    path: new URL(created.headers.location, url).pathname,
    headers: {
      "tus-resumable": "1.0.0",
      "upload-offset": "0",
      "content-type": "application/offset+octet-stream",
      ...auth,
    },
    body,
  });
  await patched.body.dump();
  if (patched.statusCode !== 204) throw new Error(`PATCH answered ${patched.statusCode}`);
}

async function run(count) {
  let started = 0;
  let failed = 0;
  async function lane() {
    while (started < count) {
      started += 1;
      try {
        await upload();
      } catch {
        failed += 1;
      }
    }
  }
  await Promise.all(Array.from({ length: Number(concurrency) }, lane));
  return failed;
}

await run(Number(warmup));
console.log("ready");
await new Promise((resolve) => process.stdin.once("data", resolve));
process.stdin.pause();
const cpu = process.cpuUsage();
const started = performance.now();
const failed = await run(Number(uploads));
const seconds = (performance.now() - started) / 1000;
const used = process.cpuUsage(cpu);
console.log(
  JSON.stringify({
    uploads: Number(uploads),
    seconds,
    failed,
    client_cpu_seconds: (used.user + used.system) / 1e6,
  }),
);
await pool.close();
