export { createTestDatabase, TEST_DATABASE_BASE_URL, type TestDatabase, withSchema } from "./database.ts";
export { type DbProxy, startDbProxy } from "./db-proxy.ts";
export { createTestMerchant, type TestMerchant } from "./merchant.ts";
export { deletePrefix, TEST_REDIS_URL, testQueuePrefix } from "./redis.ts";
export { freePort, TestRedisServer } from "./redis-server.ts";
export { waitsForLock, whileRowChanges } from "./row-lock.ts";
export { type RsaKeyPair, testRsaKeyPair } from "./rsa-keys.ts";
