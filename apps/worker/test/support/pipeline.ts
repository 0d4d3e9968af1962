import { createQueue, createRedisConnection, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { createWorld, seedSkus, type World } from "./fixtures.ts";

/** A test file's world (own schema and queue prefix) with its parse, apply and dead queues on one admin connection. */
export interface Pipeline {
  world: World;
  redis: Redis;
  parseQueue: Queue;
  applyQueue: Queue;
  deadQueue: Queue;
}

/** Opens a Pipeline with `skus` seeded (for a file's beforeAll). */
export async function openPipeline(label: string, skus: Record<string, number>): Promise<Pipeline> {
  const world = await createWorld(label);
  await seedSkus(world.prisma, skus);
  const redis = createRedisConnection(TEST_REDIS_URL, "admin");
  return {
    world,
    redis,
    parseQueue: createQueue(QueueName.Parse, redis, world.prefix),
    applyQueue: createQueue(QueueName.Apply, redis, world.prefix),
    deadQueue: createQueue(QueueName.Dead, redis, world.prefix),
  };
}

/** Closes what openPipeline opened (for a file's afterAll; a beforeAll that failed leaves it undefined). */
export async function closePipeline(p: Pipeline | undefined): Promise<void> {
  if (!p) return;
  await Promise.all([p.parseQueue, p.applyQueue, p.deadQueue].map((q) => q.close()));
  p.redis.disconnect();
  await p.world.cleanup();
}

/** A notification with its events, oldest first. */
export function notificationWithEvents(world: World, id: string) {
  return world.prisma.notification.findUnique({ where: { id }, include: { events: { orderBy: { id: "asc" } } } });
}
