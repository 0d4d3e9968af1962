import { describe, expect, it, vi } from "vitest";
import { createRedisConnection } from "../src/index.ts";

describe("createRedisConnection: READONLY (a demoted primary) reconnects, at most once a second", () => {
  it("reconnects on READONLY, not on other errors, and not again within the second", () => {
    vi.useFakeTimers({ toFake: ["performance"] });
    const redis = createRedisConnection("redis://127.0.0.1:6379", "worker", { lazyConnect: true });
    try {
      const decide = redis.options.reconnectOnError?.bind(redis.options);
      if (!decide) throw new Error("no reconnectOnError");
      const readonly = new Error("READONLY You can't write against a read only replica.");
      expect(decide(new Error("ERR wrong number of arguments"))).toBe(false);
      expect(decide(readonly)).toBe(true);
      expect(decide(readonly)).toBe(false);
      vi.advanceTimersByTime(999);
      expect(decide(readonly)).toBe(false);
      vi.advanceTimersByTime(2);
      expect(decide(readonly)).toBe(true);
    } finally {
      redis.disconnect();
      vi.useRealTimers();
    }
  });

  it("each connection has its own second: a duplicate (BullMQ's blocking connection) is not held back by its original", () => {
    const redis = createRedisConnection("redis://127.0.0.1:6379", "worker", { lazyConnect: true });
    const blocking = redis.duplicate();
    try {
      const readonly = new Error("READONLY You can't write against a read only replica.");
      // Called as ioredis calls it: a method of the connection's options.
      expect(redis.options.reconnectOnError?.(readonly)).toBe(true);
      expect(blocking.options.reconnectOnError?.(readonly)).toBe(true);
      expect(redis.options.reconnectOnError?.(readonly)).toBe(false);
    } finally {
      redis.disconnect();
      blocking.disconnect();
    }
  });
});
