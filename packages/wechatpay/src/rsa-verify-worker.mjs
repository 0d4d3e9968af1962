// Worker thread of RsaVerifyPool (rsa-verify-pool.ts): RSASSA-PKCS1-v1_5/SHA-256 checks, a batch per message.
// Plain JavaScript so that it loads in any runtime the package runs in (node, tsx, vitest) without a loader.
// In:  { seq, keys: [[id, KeyObject]...], meta: Int32Array (5 per item: key id, message offset, message length,
//        signature offset, signature length), data: ArrayBuffer (messages and signatures) }
// Out: { seq, results: Uint8Array } with 1 = valid, 0 = invalid (also: the key cannot do RSA-SHA256, as
// verifyRsaSha256Bytes answers), 2 = unknown key id.
import { verify } from "node:crypto";
import { parentPort } from "node:worker_threads";

const keys = new Map();
parentPort.on("message", ({ seq, keys: added, meta, data }) => {
  for (const [id, key] of added) keys.set(id, key);
  const count = meta.length / 5;
  const results = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const key = keys.get(meta[5 * i]);
    if (key === undefined) {
      results[i] = 2;
      continue;
    }
    const message = new Uint8Array(data, meta[5 * i + 1], meta[5 * i + 2]);
    const signature = new Uint8Array(data, meta[5 * i + 3], meta[5 * i + 4]);
    try {
      results[i] = verify("sha256", message, key, signature) ? 1 : 0;
    } catch {
      results[i] = 0;
    }
  }
  parentPort.postMessage({ seq, results }, [results.buffer]);
});
