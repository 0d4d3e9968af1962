/**
 * Load generator for bench/ingress.ts, run as a child process (IPC). It mints correctly signed APIv3
 * notifications itself (signing on the libuv thread pool, before any measurement) and sends them to
 * 127.0.0.1 only, over keep-alive HTTP/1.1 connections of its own (`Connection` below), one request at a time on
 * each. Every run is bounded in count and time.
 *
 * Why not `http.request`: the load generator shares the machine's 2 CPUs with the servers it measures and with
 * Redis, so every µs it spends per request is taken from them. Through `http.request` and a keep-alive Agent it spent
 * 19–27 µs of CPU per request (ClientRequest and IncomingMessage objects, header objects serialised per request,
 * the Agent's socket bookkeeping); writing each notification's request bytes, built once when it is minted, and
 * reading only the status line and the length of the answer costs a fraction of that. The requests on the wire are
 * the same (method, path, headers, body), and so are the answers the servers send.
 *
 * Messages in:  { type: "generate", spec, count } → { type: "generated", count, ms }
 *               { type: "run", run: RunSpec } → { type: "result", result: RunResult }
 *               { type: "exit" }
 */
import { createPrivateKey, randomUUID, sign } from "node:crypto";
import { connect, type Socket } from "node:net";
import { AEAD_AES_256_GCM, buildV3Message, encryptAeadAes256Gcm, randomNonce } from "@wpn/wechatpay";
import { percentile } from "./percentile.ts";

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
  /** Also return every counted latency (sorted, ms), for a caller that pools several runs into one distribution. */
  keepLatencies?: boolean;
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
  /**
   * Open loop, counted requests: how late the load generator itself wrote each request, from its scheduled time to
   * its write, ms. It shares the CPUs with the server it measures, so part of the latency above can be its own
   * lateness (a timer that fired late, a turn it waited for a CPU); WeChat's senders share nothing with the ingress.
   */
  sendLagMs?: { p50: number; p99: number; max: number };
  /** With `keepLatencies`: every counted latency, sorted, ms. */
  latenciesMs?: number[];
}

interface Notification {
  /** The request after its request line (headers, blank line, body), as sent: built once when minted. */
  rest: Buffer;
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
        const headers = {
          host: "127.0.0.1",
          "content-type": "application/json",
          "content-length": String(body.length),
          "wechatpay-timestamp": timestamp,
          "wechatpay-nonce": nonce,
          "wechatpay-signature": signature.toString("base64"),
          "wechatpay-serial": spec.serial,
          "wechatpay-signature-type": "WECHATPAY2-SHA256-RSA2048",
        };
        const head = Object.entries(headers)
          .map(([name, value]) => `${name}: ${value}\r\n`)
          .join("");
        resolve({ rest: Buffer.concat([Buffer.from(`${head}\r\n`, "latin1"), body]) });
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

/** `\r\n\r\n`: the end of an answer's head. */
const HEAD_END = Buffer.from("\r\n\r\n", "latin1");
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i;
const CHUNKED = /\r\ntransfer-encoding:[ \t]*chunked/i;
const CLOSE = /\r\nconnection:[ \t]*close/i;
const LAST_CHUNK = Buffer.from("0\r\n\r\n", "latin1");

/**
 * One keep-alive HTTP/1.1 connection carrying one request at a time (no pipelining: WeChat does not pipeline
 * either). It reads an answer's status code and frames it by Content-Length (or chunked encoding); a socket that
 * fails or closes with a request outstanding answers "error", and the next request opens a new socket.
 */
class Connection {
  #socket: Socket | undefined;
  #buffer: Buffer = Buffer.alloc(0);
  #pending: ((status: string) => void) | undefined;

  constructor(private readonly port: number) {}

  send(request: Buffer): Promise<string> {
    return new Promise((resolve) => {
      this.#pending = resolve;
      (this.#socket ?? this.#open()).write(request);
    });
  }

  destroy(): void {
    this.#socket?.destroy();
  }

  #open(): Socket {
    const socket = connect({ host: "127.0.0.1", port: this.port, noDelay: true });
    socket.on("data", (chunk: Buffer) => this.#read(chunk));
    // Counted by the "close" that follows every error.
    socket.on("error", () => undefined);
    socket.on("close", () => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      this.#buffer = Buffer.alloc(0);
      this.#settle("error");
    });
    this.#socket = socket;
    return socket;
  }

  #read(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const headEnd = this.#buffer.indexOf(HEAD_END);
    if (headEnd < 0) return;
    const head = this.#buffer.toString("latin1", 0, headEnd);
    const bodyStart = headEnd + HEAD_END.length;
    if (CHUNKED.test(head)) {
      if (this.#buffer.indexOf(LAST_CHUNK, bodyStart) < 0) return;
    } else if (this.#buffer.length < bodyStart + Number(CONTENT_LENGTH.exec(head)?.[1] ?? 0)) {
      return;
    }
    this.#buffer = Buffer.alloc(0);
    if (CLOSE.test(head)) {
      const socket = this.#socket;
      this.#socket = undefined;
      socket?.destroy();
    }
    // "HTTP/1.1 204 No Content": the status code is characters 9–11.
    this.#settle(head.slice(9, 12));
  }

  #settle(status: string): void {
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.(status);
  }
}

/** The connections to one server process: at most `max` open, idle ones reused, requests beyond that wait. */
class ConnectionPool {
  readonly #idle: Connection[] = [];
  readonly #all: Connection[] = [];
  readonly #waiting: ((connection: Connection) => void)[] = [];

  constructor(
    private readonly port: number,
    private readonly max: number,
  ) {}

  async send(request: Buffer): Promise<string> {
    const connection =
      this.#idle.pop() ?? this.#create() ?? (await new Promise<Connection>((r) => this.#waiting.push(r)));
    try {
      return await connection.send(request);
    } finally {
      const next = this.#waiting.shift();
      if (next) next(connection);
      else this.#idle.push(connection);
    }
  }

  destroy(): void {
    for (const connection of this.#all) connection.destroy();
  }

  #create(): Connection | undefined {
    if (this.#all.length >= this.max) return undefined;
    const connection = new Connection(this.port);
    this.#all.push(connection);
    return connection;
  }
}

async function run(spec: RunSpec): Promise<RunResult> {
  const targets = spec.urls.map((url) => new URL(url));
  if (targets.length === 0 || targets.some((t) => t.hostname !== "127.0.0.1")) {
    throw new Error("the load generator needs target URLs, on 127.0.0.1 only");
  }
  const sockets = Math.ceil((spec.mode === "closed" ? (spec.concurrency ?? 32) : 512) / targets.length);
  const pools = targets.map((target) => ({
    pool: new ConnectionPool(Number(target.port), sockets),
    line: Buffer.from(`POST ${target.pathname} HTTP/1.1\r\n`, "latin1"),
  }));
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

  const send = async (n: Notification, startedAt: number, target: number): Promise<void> => {
    const { pool, line } = pools[target] as (typeof pools)[number];
    record(await pool.send(Buffer.concat([line, n.rest])), startedAt);
  };

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
  let sendLagMs: RunResult["sendLagMs"];
  if (spec.mode === "closed") {
    const senders = Array.from({ length: spec.concurrency ?? 32 }, async (_, i) => {
      const target = i % targets.length;
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
    const sendLags: number[] = [];
    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = performance.now();
        const due = Math.min(Math.floor(((Math.min(now, end) - t0) / 1000) * rate), spec.maxRequests);
        while (scheduled < due) {
          const at = t0 + (scheduled / rate) * 1000;
          scheduled += 1;
          const n = take();
          if (!n) break;
          const target = rotation++ % targets.length;
          if (at >= warmupEnd) sendLags.push(now - at);
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
    sendLags.sort((a, b) => a - b);
    sendLagMs = { p50: percentile(sendLags, 50), p99: percentile(sendLags, 99), max: sendLags.at(-1) ?? Number.NaN };
  }
  if (!spec.reuse) cursor = index;
  for (const { pool } of pools) pool.destroy();
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
    ...(sendLagMs === undefined ? {} : { sendLagMs }),
    ...(spec.keepLatencies ? { latenciesMs: latencies } : {}),
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
