/**
 * Load generator for bench/ingress.ts, run as a child process (IPC). It mints correctly signed APIv3
 * notifications itself (signing on the libuv thread pool, before any measurement) and sends them to
 * 127.0.0.1 only, over keep-alive `http.request` agents. Every run is bounded in count and time.
 *
 * Messages in:  { type: "generate", spec, count } → { type: "generated", count, ms }
 *               { type: "run", run: RunSpec } → { type: "result", result: RunResult }
 *               { type: "exit" }
 */
import { createPrivateKey, randomUUID, sign } from "node:crypto";
import { Agent, request } from "node:http";
import { AEAD_AES_256_GCM, buildV3Message, encryptAeadAes256Gcm, randomNonce } from "@wpn/wechatpay";

export interface GenerateSpec {
  privateKeyPem: string;
  apiV3Key: string;
  serial: string;
  mchid: string;
  appid: string;
  /** One notification per out_trade_no (for the synchronous-handler comparison); else random ones. */
  outTradeNos?: string[];
}

export interface RunSpec {
  label: string;
  /** One URL per server process of the target; connections are spread over them round-robin, as a load
   *  balancer in front of N ingress processes would (apps/ingress/README.md, "Running N processes"). */
  urls: string[];
  /** closed: `concurrency` senders, each sends the next request when its previous one was answered.
   *  open: requests are scheduled at `ratePerSecond` whatever the answers (latency counted from the schedule). */
  mode: "closed" | "open";
  concurrency?: number;
  ratePerSecond?: number;
  durationMs: number;
  /** Hard cap on requests sent (and the notifications it consumes). */
  maxRequests: number;
  /** Take notifications from the start of the pool again (for targets that do not care about uniqueness). */
  reuse?: boolean;
  /**
   * Not counted: closed loop, requests answered within the first `warmupMs`; open loop, requests SENT (scheduled)
   * within it — so a stall at the start cannot leak into the measured window through the warm-up's own requests,
   * and the requests sent after it are all counted, however late their answer. The open loop reports the warm-up's
   * worst latency apart (`warmupMaxMs`).
   */
  warmupMs?: number;
}

export interface RunResult {
  label: string;
  sent: number;
  /** Counted (after warm-up) answers by status ("error" = socket error). */
  statuses: Record<string, number>;
  /** 2xx answers per second over the measured window. */
  okPerSecond: number;
  measuredMs: number;
  latencyMs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  /** Open loop: how far behind schedule the sender fell at the end, ms (a sign the generator itself saturated). */
  lagMs?: number;
  /** Open loop: the largest latency among the requests sent during the warm-up (not counted), ms. */
  warmupMaxMs?: number;
}

interface Notification {
  headers: Record<string, string>;
  body: Buffer;
}

let pool: Notification[] = [];
let cursor = 0;

async function generate(spec: GenerateSpec, count: number): Promise<number> {
  const started = performance.now();
  const key = createPrivateKey(spec.privateKeyPem);
  const apiV3Key = Buffer.from(spec.apiV3Key, "utf8");
  const timestamp = String(Math.floor(Date.now() / 1000));
  const make = (i: number): Promise<Notification> => {
    const outTradeNo = spec.outTradeNos?.[i] ?? `BENCH${Date.now()}${i}`;
    const resourceNonce = randomNonce(12);
    const resource = {
      mchid: spec.mchid,
      appid: spec.appid,
      out_trade_no: outTradeNo,
      transaction_id: `4200${String(Date.now()).slice(-10)}${String(i).padStart(14, "0")}`,
      trade_type: "JSAPI",
      trade_state: "SUCCESS",
      trade_state_desc: "支付成功",
      bank_type: "OTHERS",
      success_time: "2026-11-29T10:00:00+08:00",
      payer: { openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" },
      amount: { total: 200, payer_total: 200, currency: "CNY", payer_currency: "CNY" },
    };
    const envelope = {
      id: randomUUID(),
      create_time: "2026-11-29T10:00:01+08:00",
      resource_type: "encrypt-resource",
      event_type: "TRANSACTION.SUCCESS",
      summary: "支付成功",
      resource: {
        original_type: "transaction",
        algorithm: AEAD_AES_256_GCM,
        ciphertext: encryptAeadAes256Gcm({
          key: apiV3Key,
          nonce: resourceNonce,
          associatedData: "transaction",
          plaintext: JSON.stringify(resource),
        }),
        associated_data: "transaction",
        nonce: resourceNonce,
      },
    };
    const body = Buffer.from(JSON.stringify(envelope), "utf8");
    const nonce = randomNonce(32);
    return new Promise((resolve, reject) => {
      // Callback form: RSA signing on the thread pool, so generation uses both cores.
      sign("sha256", buildV3Message(timestamp, nonce, body), key, (error, signature) => {
        if (error) return reject(error);
        resolve({
          body,
          headers: {
            "content-type": "application/json",
            "content-length": String(body.length),
            "wechatpay-timestamp": timestamp,
            "wechatpay-nonce": nonce,
            "wechatpay-signature": signature.toString("base64"),
            "wechatpay-serial": spec.serial,
            "wechatpay-signature-type": "WECHATPAY2-SHA256-RSA2048",
          },
        });
      });
    });
  };
  const next: Notification[] = [];
  const chunk = 256;
  for (let i = 0; i < count; i += chunk) {
    const batch = await Promise.all(Array.from({ length: Math.min(chunk, count - i) }, (_, j) => make(i + j)));
    next.push(...batch);
  }
  pool = next;
  cursor = 0;
  return performance.now() - started;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] ?? Number.NaN;
}

async function run(spec: RunSpec): Promise<RunResult> {
  const targets = spec.urls.map((url) => new URL(url));
  if (targets.length === 0 || targets.some((t) => t.hostname !== "127.0.0.1")) {
    throw new Error("the load generator needs target URLs, on 127.0.0.1 only");
  }
  const sockets = Math.ceil((spec.mode === "closed" ? (spec.concurrency ?? 32) : 512) / targets.length);
  const agent = new Agent({ keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets });
  // Closed loop: sender i always talks to target i mod N (N equal shares of the connections). Open loop: the
  // scheduled requests rotate over the targets.
  let rotation = 0;
  const statuses: Record<string, number> = {};
  const latencies: number[] = [];
  let sent = 0;
  let index = spec.reuse ? 0 : cursor;
  const t0 = performance.now();
  const warmupEnd = t0 + (spec.warmupMs ?? 0);
  const end = t0 + spec.durationMs;
  let firstCounted = Number.POSITIVE_INFINITY;
  let lastCounted = 0;
  let warmupMaxMs = 0;

  const take = (): Notification | undefined => {
    if (sent >= spec.maxRequests) return undefined;
    const n = pool[spec.reuse ? index % pool.length : index];
    if (n === undefined) return undefined;
    index += 1;
    sent += 1;
    return n;
  };

  const send = (n: Notification, startedAt: number, target: URL): Promise<void> =>
    new Promise((resolve) => {
      const req = request(
        { host: "127.0.0.1", port: target.port, path: target.pathname, method: "POST", headers: n.headers, agent },
        (res) => {
          res.resume();
          res.on("end", () => {
            record(String(res.statusCode), startedAt);
            resolve();
          });
        },
      );
      req.on("error", () => {
        record("error", startedAt);
        resolve();
      });
      req.end(n.body);
    });

  const record = (status: string, startedAt: number) => {
    const now = performance.now();
    if (spec.mode === "open" && startedAt < warmupEnd) {
      warmupMaxMs = Math.max(warmupMaxMs, now - startedAt);
      return;
    }
    if (now < warmupEnd) return;
    firstCounted = Math.min(firstCounted, Math.max(startedAt, warmupEnd));
    lastCounted = now;
    statuses[status] = (statuses[status] ?? 0) + 1;
    latencies.push(now - startedAt);
  };

  let lagMs: number | undefined;
  if (spec.mode === "closed") {
    const senders = Array.from({ length: spec.concurrency ?? 32 }, async (_, i) => {
      const target = targets[i % targets.length] as URL;
      while (performance.now() < end) {
        const n = take();
        if (!n) return;
        await send(n, performance.now(), target);
      }
    });
    await Promise.all(senders);
  } else {
    const rate = spec.ratePerSecond ?? 1000;
    const inflight = new Set<Promise<void>>();
    let scheduled = 0;
    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = performance.now();
        const due = Math.min(Math.floor(((Math.min(now, end) - t0) / 1000) * rate), spec.maxRequests);
        while (scheduled < due) {
          const at = t0 + (scheduled / rate) * 1000;
          scheduled += 1;
          const n = take();
          if (!n) break;
          const target = targets[rotation++ % targets.length] as URL;
          const p = send(n, at, target).finally(() => inflight.delete(p));
          inflight.add(p);
        }
        if (now >= end || scheduled >= spec.maxRequests) {
          lagMs = now - (t0 + (scheduled / rate) * 1000);
          resolve();
        } else setTimeout(tick, 1);
      };
      tick();
    });
    await Promise.all([...inflight]);
  }
  if (!spec.reuse) cursor = index;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const ok = Object.entries(statuses)
    .filter(([status]) => status.startsWith("2"))
    .reduce((sum, [, n]) => sum + n, 0);
  const measuredMs = Math.max(1, lastCounted - firstCounted);
  return {
    label: spec.label,
    sent,
    statuses,
    okPerSecond: (ok / measuredMs) * 1000,
    measuredMs,
    latencyMs: {
      p50: percentile(latencies, 50),
      p90: percentile(latencies, 90),
      p99: percentile(latencies, 99),
      p999: percentile(latencies, 99.9),
      max: latencies.at(-1) ?? Number.NaN,
      mean: latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length),
    },
    ...(lagMs === undefined ? {} : { lagMs }),
    ...(spec.mode === "open" ? { warmupMaxMs } : {}),
  };
}

process.on("message", (message: { type: string; spec?: GenerateSpec; count?: number; run?: RunSpec }) => {
  const reply = (value: unknown) => process.send?.(value);
  if (message.type === "generate" && message.spec && message.count !== undefined) {
    generate(message.spec, message.count).then(
      (ms) => reply({ type: "generated", count: pool.length, ms }),
      (error: unknown) => reply({ type: "error", message: String(error) }),
    );
  } else if (message.type === "run" && message.run) {
    run(message.run).then(
      (result) => reply({ type: "result", result }),
      (error: unknown) => reply({ type: "error", message: String(error) }),
    );
  } else if (message.type === "cpu") {
    reply({ type: "cpu", usage: process.cpuUsage() });
  } else if (message.type === "exit") {
    process.exit(0);
  }
});
process.send?.({ type: "ready" });
