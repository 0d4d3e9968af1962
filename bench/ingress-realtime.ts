/**
 * Scheduling probe for issue #4: `npx tsx bench/ingress-realtime.ts [--rounds N]` (root; ~12 minutes at 3 rounds).
 *
 * Measures (1) and (2) of bench/ingress.ts for the default ingress (`ingress-threads`), the bare route and the
 * issue's verify-then-add baseline twice, interleaved round by round: with every measured process at normal
 * priority (the main bench's condition), and with the measured server (all its threads), its Redis and the load
 * generator at SCHED_FIFO priority 20 for the run (`chrt -a -f`), the same for every server kind. On this VM a
 * multi-stage server (event loop → RSA thread → Redis → event loop) loses time at each hand-over to CFS's wake-up
 * placement and to the kernel's kdamond, which takes a CPU for ~10 ms at a time (bench/damon.ts); a real-time task
 * that wakes up runs at once on a CPU kdamond does not hold. DAMON keeps running in both conditions.
 * Same server and load-generator processes as bench/ingress.ts (bench/ingress-servers.ts, bench/ingress-loadgen.ts),
 * a bench-owned redis-server; results go to stdout and bench/results/ingress-realtime-<timestamp>.json.
 */
import { type ChildProcess, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { setPriority } from "node:os";
import { resolve } from "node:path";
import { createRedisConnection } from "@wpn/queue";
import { createTestMerchant, freePort } from "@wpn/testing";
import { children, generateSpec, nextMessage, spawnChild, startRedis } from "./children.ts";
import { kdamondCpuMs } from "./damon.ts";
import type { RunResult, RunSpec } from "./ingress-loadgen.ts";
import { percentile } from "./percentile.ts";

const roundsArg = process.argv.indexOf("--rounds");
const ROUNDS = roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : 3;
/** SCHED_FIFO priority of the measured processes in the "realtime" condition (1–99; above every CFS task). */
const FIFO_PRIORITY = 20;
/** Nice value of the load generator during latency runs at normal priority (as bench/ingress.ts). */
const LATENCY_LOADGEN_NICE = -10;
const THROUGHPUT = [
  { kind: "ingress-threads", concurrency: 256 },
  { kind: "bare", concurrency: 64 },
  { kind: "verify-then-add", concurrency: 256 },
] as const;
const LATENCY_KINDS = ["ingress-threads", "bare"] as const;
const CONDITIONS = ["normal", "realtime"] as const;
type Condition = (typeof CONDITIONS)[number];
type Kind = (typeof THROUGHPUT)[number]["kind"];

const here = import.meta.dirname;
const merchant = createTestMerchant();

/** Every thread of `pid` to SCHED_FIFO `FIFO_PRIORITY`, or back to SCHED_OTHER (threads started later inherit it). */
function setRealtime(pid: number, on: boolean): void {
  execFileSync(
    "chrt",
    on ? ["-a", "-f", "-p", String(FIFO_PRIORITY), String(pid)] : ["-a", "-o", "-p", "0", String(pid)],
  );
}

async function main() {
  const redis = await startRedis();
  const admin = createRedisConnection(redis.url, "admin");
  const env = {
    ...merchant.env,
    REDIS_URL: redis.url,
    QUEUE_PREFIX: `bench-realtime-${randomBytes(4).toString("hex")}`,
    LOG_LEVEL: "silent",
    NODE_ENV: "production",
  };
  const servers = new Map<Kind, { child: ChildProcess; url: string }>();
  for (const { kind } of THROUGHPUT) {
    const serverPort = await freePort();
    const child = spawnChild("ingress-servers.ts", [kind], { ...env, PORT: String(serverPort) });
    await nextMessage(child, "listening");
    servers.set(kind, { child, url: `http://127.0.0.1:${serverPort}/notify/v3` });
  }
  const loadgen = spawnChild("ingress-loadgen.ts", [], {});
  await nextMessage(loadgen, "ready");
  const spec = generateSpec(merchant);
  // Minted at normal priority: signing on four libuv threads at SCHED_FIFO would hold both CPUs.
  const generate = async (count: number) => {
    loadgen.send({ type: "generate", spec, count });
    await nextMessage(loadgen, "generated");
  };
  /** One run of `kind` alone (the other servers stopped), under `condition`; then everything back to normal. */
  const run = async (kind: Kind, condition: Condition, spec: Omit<RunSpec, "urls" | "label">) => {
    const server = servers.get(kind);
    if (!server || loadgen.pid === undefined || server.child.pid === undefined) {
      throw new Error(`${kind}: a process has no pid`);
    }
    const measured = [server.child.pid, redis.pid, loadgen.pid];
    const others = [...servers.values()].filter((s) => s !== server);
    for (const { child } of others) child.kill("SIGSTOP");
    setPriority(loadgen.pid, spec.mode === "open" ? LATENCY_LOADGEN_NICE : 0);
    if (condition === "realtime") for (const pid of measured) setRealtime(pid, true);
    const kdamondBefore = kdamondCpuMs();
    try {
      loadgen.send({ type: "run", run: { ...spec, urls: [server.url], label: `${kind} ${condition}` } });
      const { result } = await nextMessage<{ result: RunResult }>(loadgen, "result");
      return { ...result, kdamondMs: kdamondCpuMs() - kdamondBefore };
    } finally {
      for (const pid of measured) setRealtime(pid, false);
      setPriority(loadgen.pid, 0);
      for (const { child } of others) child.kill("SIGCONT");
      await admin.flushall();
    }
  };

  // Warm-up, not counted (JIT, lazily loaded modules and scripts).
  for (const { kind } of THROUGHPUT) {
    await generate(5_000);
    await run(kind, "normal", { mode: "closed", concurrency: 64, durationMs: 2_000, maxRequests: 5_000 });
  }

  const rates = new Map<string, number[]>();
  const latencies = new Map<string, { p99s: number[]; pooled: number[] }>();
  for (let round = 0; round < ROUNDS; round++) {
    // The conditions alternate in order round by round, so drift of the host's speed spreads over both.
    for (const condition of round % 2 === 0 ? CONDITIONS : [...CONDITIONS].reverse()) {
      for (const { kind, concurrency } of THROUGHPUT) {
        const bare = kind === "bare";
        if (!bare) await generate(65_000);
        const result = await run(kind, condition, {
          mode: "closed",
          concurrency,
          durationMs: 5_500,
          warmupMs: 500,
          maxRequests: bare ? 1_000_000 : 65_000,
          reuse: bare,
        });
        rates.set(`${kind} ${condition}`, [...(rates.get(`${kind} ${condition}`) ?? []), result.okPerSecond]);
        console.log(
          `(1) round ${round + 1} ${condition.padEnd(8)} ${`${kind}@${concurrency}`.padEnd(20)} ${result.okPerSecond.toFixed(0).padStart(6)}/s ${JSON.stringify(result.statuses)}`,
        );
      }
      for (const kind of LATENCY_KINDS) {
        await generate(24_000);
        const result = await run(kind, condition, {
          mode: "open",
          ratePerSecond: 2_000,
          durationMs: 12_000,
          warmupMs: 2_000,
          maxRequests: 24_000,
          keepLatencies: true,
        });
        const into = latencies.get(`${kind} ${condition}`) ?? { p99s: [], pooled: [] };
        into.p99s.push(result.latencyMs.p99);
        for (const ms of result.latenciesMs ?? []) into.pooled.push(ms);
        latencies.set(`${kind} ${condition}`, into);
        console.log(
          `(2) round ${round + 1} ${condition.padEnd(8)} ${kind.padEnd(20)} p50 ${result.latencyMs.p50.toFixed(2)} ms p99 ${result.latencyMs.p99.toFixed(2)} ms max ${result.latencyMs.max.toFixed(1)} ms; kdamond ${result.kdamondMs} ms of CPU ${JSON.stringify(result.statuses)}`,
        );
      }
    }
  }

  const mean = (xs: number[] | undefined) => (xs ?? []).reduce((a, b) => a + b, 0) / Math.max(1, xs?.length ?? 0);
  const summary = Object.fromEntries(
    CONDITIONS.map((condition) => {
      const rate = (kind: Kind) => mean(rates.get(`${kind} ${condition}`));
      const p99 = (kind: string) => {
        const { pooled = [], p99s = [] } = latencies.get(`${kind} ${condition}`) ?? {};
        return {
          pooledP99: percentile(
            pooled.sort((a, b) => a - b),
            99,
          ),
          perRun: p99s,
        };
      };
      return [
        condition,
        {
          ratePerSecond: Object.fromEntries(THROUGHPUT.map(({ kind }) => [kind, rate(kind)])),
          ingressToBare: rate("ingress-threads") / rate("bare"),
          verifyThenAddToBare: rate("verify-then-add") / rate("bare"),
          ingressToVerifyThenAdd: rate("ingress-threads") / rate("verify-then-add"),
          latencyMs: Object.fromEntries(LATENCY_KINDS.map((kind) => [kind, p99(kind)])),
        },
      ];
    }),
  );
  console.log("\n=== results ===");
  for (const [condition, s] of Object.entries(summary)) {
    const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
    console.log(
      `${condition}: (1) ingress-threads / bare ${pct(s.ingressToBare)} (${s.ratePerSecond["ingress-threads"]?.toFixed(0)} vs ${s.ratePerSecond.bare?.toFixed(0)}/s); verify-then-add / bare ${pct(s.verifyThenAddToBare)}; ingress ${s.ingressToVerifyThenAdd.toFixed(2)}× verify-then-add` +
        `\n  (2) p99 at 2,000/s pooled: ${LATENCY_KINDS.map((k) => `${k} ${s.latencyMs[k]?.pooledP99.toFixed(2)} ms (per run ${s.latencyMs[k]?.perRun.map((x) => x.toFixed(1)).join(" / ")})`).join("; ")}`,
    );
  }
  mkdirSync(resolve(here, "results"), { recursive: true });
  const file = resolve(here, "results", `ingress-realtime-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ rounds: ROUNDS, fifoPriority: FIFO_PRIORITY, rates: Object.fromEntries(rates), summary }, null, 2)}\n`,
  );
  console.log(`raw results: ${file}`);
  for (const child of children) child.kill("SIGKILL");
  redis.stop();
  admin.disconnect();
}

main().catch((error: unknown) => {
  console.error(error);
  for (const child of children) child.kill("SIGKILL");
  process.exit(1);
});
