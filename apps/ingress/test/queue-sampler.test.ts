import { EventEmitter } from "node:events";
import type { Queue } from "bullmq";
import { describe, expect, it } from "vitest";
import { createMetrics } from "../src/metrics.ts";
import { parseEvictionSetting, QueueSampler } from "../src/queue-sampler.ts";
import { silentLogger } from "./support/logger.ts";

/** A sampler over a queue and connection that answer what the test says (the real ones: redis-outage.test.ts). */
function sampler(
  memoryInfo: string | (() => Promise<string>),
  role: () => Promise<unknown> = async () => ["master"],
  events = new EventEmitter(),
) {
  const queue = { getWaitingCount: async () => 0 } as unknown as Queue;
  return new QueueSampler(queue, 10, createMetrics({ defaultMetrics: false }), silentLogger, 1_000, Date.now, {
    reopenAfterMs: 10_000,
    reopen: () => undefined,
    role,
    memoryInfo: typeof memoryInfo === "string" ? async () => memoryInfo : memoryInfo,
    persistenceInfo: async () => "# Persistence\r\naof_enabled:1\r\n",
    write: async () => "OK",
    writeTimeoutMs: 1_000,
    events,
  });
}

describe("the sampler's eviction check", () => {
  it("reads maxmemory and maxmemory_policy out of INFO memory", () => {
    const info =
      "# Memory\r\nused_memory:1024\r\nmaxmemory:1073741824\r\nmaxmemory_human:1.00G\r\nmaxmemory_policy:allkeys-lru\r\n";
    expect(parseEvictionSetting(info)).toEqual({ policy: "allkeys-lru", maxmemory: 1_073_741_824 });
    expect(parseEvictionSetting("# Memory\r\nused_memory:1024\r\n")).toBeUndefined();
  });

  it("a Redis-compatible server whose INFO leaves the fields out stays up: the policy is 'unknown', not evicting", async () => {
    const s = sampler("# Memory\r\nused_memory:1024\r\n");
    await s.sample();
    expect(s.snapshot).toMatchObject({ redisUp: true, eviction: "unknown", evictsJobs: false });
  });

  it("allkeys-* with a maxmemory evicts jobs; without a maxmemory nothing is evicted", async () => {
    const limited = sampler("maxmemory:1000\r\nmaxmemory_policy:allkeys-random\r\n");
    await limited.sample();
    expect(limited.snapshot).toMatchObject({ redisUp: true, eviction: "allkeys-random", evictsJobs: true });
    const unlimited = sampler("maxmemory:0\r\nmaxmemory_policy:allkeys-random\r\n");
    await unlimited.sample();
    expect(unlimited.snapshot).toMatchObject({ eviction: "allkeys-random (no maxmemory)", evictsJobs: false });
  });
});

describe("before a sample read the eviction policy and the role", () => {
  const NOEVICTION = "maxmemory:0\r\nmaxmemory_policy:noeviction\r\n";

  it("refuses (unkeptBecause) until one did: a Redis down at start is unread until a sample after it is back", async () => {
    let down = true;
    const s = sampler(async () => {
      if (down) throw new Error("Connection is closed.");
      return NOEVICTION;
    });
    expect(s.unkeptBecause).toMatch(/^redis not sampled yet/);
    await s.sample();
    expect(s.snapshot.checked).toBe(false);
    expect(s.unkeptBecause).toMatch(/^redis not sampled yet/);
    down = false;
    await s.sample();
    expect(s.snapshot.checked).toBe(true);
    expect(s.unkeptBecause).toBeUndefined();
  });

  it("a Redis user that may not ask ROLE counts as checked once the policy was read", async () => {
    const s = sampler(NOEVICTION, async () => {
      throw new Error("NOPERM User wpn-ingress has no permissions to run the 'role' command");
    });
    await s.sample();
    expect(s.unkeptBecause).toBeUndefined();
  });
});

describe("across a reconnect", () => {
  const NOEVICTION = "maxmemory:0\r\nmaxmemory_policy:noeviction\r\n";
  const ALLKEYS = "maxmemory:1000\r\nmaxmemory_policy:allkeys-lru\r\n";

  it("a close unchecks the snapshot; a sample sent before it records nothing; 'ready' samples the new server at once", async () => {
    const events = new EventEmitter();
    let answer: (info: string) => void = () => undefined;
    let info: () => Promise<string> = async () => NOEVICTION;
    const s = sampler(() => info(), undefined, events);
    s.start();
    try {
      await s.sample();
      expect(s.snapshot).toMatchObject({ checked: true, redisUp: true, write: "ok" });

      // Sent on the old connection, answered only once the new one is up: ioredis resends it there.
      const asked = new Promise<void>((sent) => {
        info = () => {
          sent();
          return new Promise((resolve) => (answer = resolve));
        };
      });
      const stale = s.sample();
      await asked;
      events.emit("close");
      expect(s.snapshot).toMatchObject({ checked: false, redisUp: false });
      expect(s.unkeptBecause).toBe("redis reconnected: its eviction policy and role are not sampled yet");
      answer(NOEVICTION);
      await stale;
      expect(s.snapshot).toMatchObject({ checked: false, redisUp: false, eviction: "noeviction (no maxmemory)" });

      info = async () => ALLKEYS;
      events.emit("ready");
      // The sample 'ready' queued, then this one: the first already read the new server.
      await s.sample();
      expect(s.snapshot).toMatchObject({ checked: true, redisUp: true, write: "ok", evictsJobs: true });
      expect(s.unkeptBecause).toBe("redis may evict jobs (maxmemory-policy allkeys-lru)");
    } finally {
      s.stop();
    }
  });
});
