import { createQueue, createRedisConnection, DEAD_JOB_NAME, type DeadLetter, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createWorld, type World } from "./support/fixtures.ts";
import { runReplayCli } from "./support/replay-cli.ts";

// The replay CLI takes letter ids or --all, nothing else: an option it does not know (an operator trying --dry-run)
// or an argument no letter id can be must stop it before it replays anything — not be taken for a letter id while
// the real ids beside it are replayed.
let world: World;
let redis: Redis;
beforeAll(async () => {
  world = await createWorld("wcliuse");
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
});
afterAll(async () => {
  redis?.disconnect();
  await world?.cleanup();
});

/** A DEAD notification and its apply letter waiting in notify.dead; the letter's id. */
async function waitingLetter(notificationId: string): Promise<string> {
  await world.prisma.notification.create({
    data: { id: notificationId, eventType: "TRANSACTION.SUCCESS", receivedAt: new Date(), body: "{}", status: "DEAD" },
  });
  const letter: DeadLetter = {
    v: 1,
    queue: QueueName.Apply,
    jobName: "apply",
    jobId: notificationId,
    notificationId,
    outTradeNo: null,
    code: "ORDER_NOT_FOUND",
    message: "no order",
    attemptsMade: 20,
    failedAt: Date.now(),
    data: { v: 1, notificationId },
  };
  const letterId = `apply.${notificationId}.1000`;
  const dead = createQueue(QueueName.Dead, redis, world.prefix);
  await dead.add(DEAD_JOB_NAME, letter, { jobId: letterId });
  await dead.close();
  return letterId;
}

it.each([
  ["an unknown option before the id", (id: string) => ["--dry-run", id]],
  ["an unknown option after the id", (id: string) => [id, "--dry-run"]],
  ["an unknown short option", (id: string) => ["-n", id]],
  ["an unknown option with --all", () => ["--all", "--dry-run"]],
  ["an empty argument", (id: string) => [id, ""]],
  ["an argument that is no letter id", (id: string) => [id, "dry-run"]],
])(
  "%s: usage, exit 64, nothing replayed",
  async (name, args) => {
    const notificationId = `cli-usage-${name.replaceAll(" ", "-")}`;
    const letterId = await waitingLetter(notificationId);
    const { code, out } = await runReplayCli(args(letterId), world.env);
    expect(code, out).toBe(64);
    expect(out).toContain("usage: replay <dead-letter-id>... | --all");
    expect(out).not.toMatch(/letter\(s\)/);
    const dead = createQueue(QueueName.Dead, redis, world.prefix);
    const apply = createQueue(QueueName.Apply, redis, world.prefix);
    try {
      expect(await dead.getJob(letterId)).toBeDefined();
      expect(await apply.getJob(notificationId)).toBeUndefined();
    } finally {
      await Promise.all([dead.close(), apply.close()]);
    }
    const n = await world.prisma.notification.findUniqueOrThrow({
      where: { id: notificationId },
      include: { events: true },
    });
    expect(n.status).toBe("DEAD");
    expect(n.events.map((e) => e.kind)).toEqual([]);
  },
  30_000,
);

it.each([
  ["--help", (id: string) => ["--help", id]],
  ["-h", (id: string) => [id, "-h"]],
])(
  "%s: the usage on stdout, exit 0, nothing replayed",
  async (flag, args) => {
    const notificationId = `cli-usage-help${flag}`;
    const letterId = await waitingLetter(notificationId);
    const { code, out, stdout } = await runReplayCli(args(letterId), world.env);
    expect(code, out).toBe(0);
    expect(stdout).toBe("usage: replay <dead-letter-id>... | --all\n");
    expect(out).toBe(stdout);
    const dead = createQueue(QueueName.Dead, redis, world.prefix);
    try {
      expect(await dead.getJob(letterId)).toBeDefined();
    } finally {
      await dead.close();
    }
  },
  30_000,
);
