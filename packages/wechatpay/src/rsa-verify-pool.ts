import type { KeyObject } from "node:crypto";
import { Worker } from "node:worker_threads";
import { WechatPayError } from "./errors.ts";
import { verifyRsaSha256Bytes } from "./verify.ts";

export interface RsaVerifyPoolOptions {
  /** Worker threads; default 1 (one RSA-2048 check is ~25 µs: one thread covers ~30,000 checks/s). */
  threads?: number;
  /** Most checks sent to a thread in one message; default 256. */
  maxBatch?: number;
  /**
   * Batches smaller than this are checked on the calling thread; default 4. At low load a batch is one or two
   * checks, and a hand-over to a thread and back (two thread wake-ups) cost more latency than the check itself:
   * at 2,000 requests/s the ingress's median answer time doubled with every check on a thread
   * (bench/ingress-report.md). Under load the batches grow and go to the threads. 1 sends every batch.
   */
  inlineBelow?: number;
  /** The thread's script; default rsa-verify-worker.mjs next to this file (tests substitute one that dies). */
  workerUrl?: URL;
}

interface Check {
  key: KeyObject;
  keyId: number;
  message: Uint8Array;
  signature: Uint8Array;
  resolve(valid: boolean): void;
  reject(error: unknown): void;
}

interface Thread {
  worker: Worker;
  /** Key ids this thread has received (it keeps those keys: a handful, new ones only when keys rotate). */
  keys: Set<number>;
  /** Batches sent and not answered, by sequence number. */
  waiting: Map<number, Check[]>;
}

/** Result codes of rsa-verify-worker.mjs (2: a key id the thread was never sent, a bug on this side). */
const VALID = 1;
const INVALID = 0;

const WORKER_URL = new URL("./rsa-verify-worker.mjs", import.meta.url);

/**
 * RSASSA-PKCS1-v1_5/SHA-256 signature checks on worker threads, for a server whose event loop is its bottleneck.
 *
 * Why not `crypto.verify`'s callback form (libuv thread pool): every call is its own thread-pool job whose set-up
 * (key and digest contexts, copies) runs on the calling thread, and OpenSSL 3 serialises part of it across
 * threads, so the event loop kept spending about as long per check as when verifying inline
 * (bench/ingress-report.md). Here the event loop only copies each message and signature into one buffer per
 * batch: checks requested during one turn of the event loop go to a thread together, as ONE message whose
 * buffer is transferred, not cloned; the thread answers with one byte per check. Keys are sent to a thread
 * once and named by a number afterwards. A batch smaller than `inlineBelow` (light load) is checked on the
 * calling thread instead, where it costs less latency than two thread hand-overs.
 *
 * A thread that dies fails its unanswered checks with `VERIFIER_UNAVAILABLE` (nothing was decided about those
 * signatures: the caller must not treat it as an invalid signature) and is replaced on the next batch.
 */
export class RsaVerifyPool {
  readonly #threads: (Thread | undefined)[];
  readonly #maxBatch: number;
  readonly #inlineBelow: number;
  readonly #workerUrl: URL;
  /** Weak: a key dropped by its KeyStore (rotation) is not kept alive by this side. */
  readonly #keyIds = new WeakMap<KeyObject, number>();
  #nextKeyId = 1;
  #queued: Check[] = [];
  #scheduled = false;
  #seq = 0;
  #closed = false;

  constructor(options: RsaVerifyPoolOptions = {}) {
    const threads = options.threads ?? 1;
    if (!Number.isInteger(threads) || threads < 1)
      throw new RangeError(`threads must be an integer ≥ 1, got ${threads}`);
    this.#threads = Array.from({ length: threads }, () => undefined);
    this.#maxBatch = options.maxBatch ?? 256;
    this.#inlineBelow = options.inlineBelow ?? 4;
    this.#workerUrl = options.workerUrl ?? WORKER_URL;
  }

  /**
   * Resolves true when `signature` is valid for `message` under `key`, false when it is not (also when the key
   * cannot do RSA-SHA256); rejects only with VERIFIER_UNAVAILABLE (thread died, pool closed).
   */
  verify(message: Uint8Array, signature: Uint8Array, key: KeyObject): Promise<boolean> {
    if (this.#closed) return Promise.reject(unavailable("the verification pool is closed"));
    let keyId = this.#keyIds.get(key);
    if (keyId === undefined) {
      keyId = this.#nextKeyId++;
      this.#keyIds.set(key, keyId);
    }
    const id = keyId;
    return new Promise((resolve, reject) => {
      this.#queued.push({ key, keyId: id, message, signature, resolve, reject });
      if (this.#queued.length >= this.#maxBatch) this.#flush();
      else if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          this.#flush();
        });
      }
    });
  }

  /** Stops the threads; checks not answered yet fail with VERIFIER_UNAVAILABLE. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#flush();
    await Promise.all(this.#threads.map((thread) => thread?.worker.terminate()));
  }

  #flush(): void {
    const checks = this.#queued;
    if (checks.length === 0) return;
    this.#queued = [];
    if (this.#closed) {
      for (const check of checks) check.reject(unavailable("the verification pool is closed"));
      return;
    }
    if (checks.length < this.#inlineBelow) {
      for (const check of checks) check.resolve(verifyRsaSha256Bytes(check.message, check.signature, check.key));
      return;
    }
    const thread = this.#leastBusy();
    let bytes = 0;
    for (const check of checks) bytes += check.message.length + check.signature.length;
    const data = new ArrayBuffer(bytes);
    const view = new Uint8Array(data);
    const meta = new Int32Array(5 * checks.length);
    const keys: [number, KeyObject][] = [];
    let offset = 0;
    checks.forEach((check, i) => {
      if (!thread.keys.has(check.keyId)) {
        thread.keys.add(check.keyId);
        keys.push([check.keyId, check.key]);
      }
      meta[5 * i] = check.keyId;
      meta[5 * i + 1] = offset;
      meta[5 * i + 2] = check.message.length;
      view.set(check.message, offset);
      offset += check.message.length;
      meta[5 * i + 3] = offset;
      meta[5 * i + 4] = check.signature.length;
      view.set(check.signature, offset);
      offset += check.signature.length;
    });
    const seq = ++this.#seq;
    thread.waiting.set(seq, checks);
    if (thread.waiting.size === 1) thread.worker.ref();
    thread.worker.postMessage({ seq, keys, meta, data }, [data, meta.buffer]);
  }

  #leastBusy(): Thread {
    let best = 0;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (let i = 0; i < this.#threads.length; i++) {
      const load = this.#threads[i]?.waiting.size ?? 0;
      if (load < bestLoad) {
        best = i;
        bestLoad = load;
      }
    }
    const existing = this.#threads[best];
    if (existing) return existing;
    const thread = this.#start(best);
    this.#threads[best] = thread;
    return thread;
  }

  #start(slot: number): Thread {
    const worker = new Worker(this.#workerUrl);
    const thread: Thread = { worker, keys: new Set(), waiting: new Map() };
    worker.unref();
    worker.on("message", ({ seq, results }: { seq: number; results: Uint8Array }) => {
      const checks = thread.waiting.get(seq);
      if (!checks) return;
      thread.waiting.delete(seq);
      if (thread.waiting.size === 0) worker.unref();
      checks.forEach((check, i) => {
        const result = results[i];
        if (result === VALID) check.resolve(true);
        else if (result === INVALID) check.resolve(false);
        else check.reject(unavailable(`verification thread answered ${result} for check ${i}`));
      });
    });
    const fail = (reason: string) => {
      if (this.#threads[slot] === thread) this.#threads[slot] = undefined;
      for (const checks of thread.waiting.values()) for (const check of checks) check.reject(unavailable(reason));
      thread.waiting.clear();
    };
    worker.on("error", (error) => fail(`verification thread failed: ${error.message}`));
    worker.on("exit", (code) => fail(`verification thread exited with code ${code}`));
    return thread;
  }
}

function unavailable(message: string): WechatPayError {
  return new WechatPayError("VERIFIER_UNAVAILABLE", message);
}
