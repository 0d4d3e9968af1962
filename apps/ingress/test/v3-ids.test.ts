import { readFileSync } from "node:fs";
import { NOTIFICATION_ID_MAX_LENGTH, parseJobSchema } from "@wpn/queue";
import { createTestMerchant, type TestMerchant } from "@wpn/testing";
import { signV3Headers } from "@wpn/wechatpay";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MerchantRecord } from "../src/merchants/registry.ts";
import { createIngressFixture, type IngressFixture, post, signedV3 } from "./support/fixture.ts";

/**
 * APIv3 notification ids in a multi-merchant deployment. Tenants supply their own key material, so a Merchant row's
 * key proves only that the notification is that tenant's: the envelope id it signs is an outside value. It must
 * neither name one of the queue's own Redis keys nor take another merchant's notification id.
 */

/** Tenant B: a Merchant row whose key material its own operator supplied. */
const tenantB = createTestMerchant({ mchid: "1900000333", appid: "wx0000000000000333" });
const recordOf = (tenant: TestMerchant): MerchantRecord => ({
  mchid: tenant.mchid,
  appid: tenant.appid,
  apiV2Key: tenant.apiV2Key,
  publicKeyId: tenant.publicKeyId,
  publicKeyPem: readFileSync(tenant.publicKeyPath, "utf8"),
  certificates: [],
  download: null,
});
/** A row whose mchid is no merchant number (90 digits; the route parameter allows 100 characters). */
const tenantLong = createTestMerchant({ mchid: "1".repeat(90), appid: "wx0000000000000444" });
/** A row with the longest mchid there is (32 digits). */
const tenantMax = createTestMerchant({ mchid: "9".repeat(32), appid: "wx0000000000000555" });

let f: IngressFixture;

beforeAll(async () => {
  f = await createIngressFixture({
    label: "ingress-v3-ids",
    source: { load: async () => [tenantB, tenantLong, tenantMax].map(recordOf) },
  });
});
afterAll(async () => {
  await f?.close();
});

/** The job id, receipt key and payload id of an APIv3 notification: the verifying merchant, then WeChat's id. */
const idOf = (mchid: string, envelopeId: string) => `v3:${mchid}:${envelopeId}`;
const fail = (message: string) => ({ code: "FAIL", message });

/** BullMQ's own keys of a queue (`<prefix>:<queue>:<name>`) and the Redis type each must keep. */
const QUEUE_KEYS = ["wait", "paused", "active", "marker", "prioritized", "meta", "events", "id", "completed"];

describe("APIv3 notification ids", () => {
  it("are the verifying merchant and WeChat's id: job id, payload id and receipt key `v3:<mchid>:<id>`", async () => {
    const n = signedV3(f.merchant);
    expect((await post(f.app, "/notify/v3", n)).statusCode).toBe(204);
    const id = idOf(f.merchant.mchid, n.id);
    expect((await f.queue.getJob(id))?.data).toMatchObject({ id, mchid: f.merchant.mchid });
    expect(await f.receipt(id)).toMatchObject({ count: 1 });
    // A resend is found by the same id.
    const resend = {
      headers: signV3Headers(n.body, {
        privateKey: f.merchant.platformPrivateKey,
        serial: n.headers["Wechatpay-Serial"] ?? "",
      }),
      body: n.body,
    };
    expect((await post(f.app, "/notify/v3", resend)).statusCode).toBe(204);
    expect(await f.receipt(id)).toMatchObject({ count: 2 });
  });

  it("an envelope id that is the name of a queue key ('wait', 'meta', …) never becomes that key", async () => {
    const types = async () =>
      Object.fromEntries(
        await Promise.all(QUEUE_KEYS.map(async (k) => [k, await f.admin.type(`${f.prefix}:notify.parse:${k}`)])),
      );
    // Some traffic first, so the queue's keys exist with their own types.
    expect((await post(f.app, "/notify/v3", signedV3(f.merchant))).statusCode).toBe(204);
    const before = await types();
    for (const name of QUEUE_KEYS) {
      const evil = await post(f.app, `/notify/v3/${tenantB.mchid}`, signedV3(tenantB, { id: name }));
      expect(evil.statusCode, name).toBe(204);
      expect(await f.queue.getJob(idOf(tenantB.mchid, name)), name).toBeDefined();
    }
    expect(await types()).toEqual(before);
    // The queue still works for every merchant: a genuine notification is added and waits to be processed.
    const genuine = signedV3(f.merchant);
    expect((await post(f.app, "/notify/v3", genuine)).statusCode).toBe(204);
    const waiting = await f.admin.lrange(`${f.prefix}:notify.parse:wait`, 0, -1);
    expect(waiting).toContain(idOf(f.merchant.mchid, genuine.id));
  });

  it("another merchant's notification carrying the same envelope id does not make the genuine one a duplicate", async () => {
    const genuine = signedV3(f.merchant);
    const forged = await post(f.app, `/notify/v3/${tenantB.mchid}`, signedV3(tenantB, { id: genuine.id }));
    expect(forged.statusCode).toBe(204);
    const added = await f.jobsEverAdded();
    expect((await post(f.app, "/notify/v3", genuine)).statusCode).toBe(204);
    expect(await f.jobsEverAdded()).toBe(added + 1);
    expect((await f.queue.getJob(idOf(f.merchant.mchid, genuine.id)))?.data).toMatchObject({ mchid: f.merchant.mchid });
    expect((await f.queue.getJob(idOf(tenantB.mchid, genuine.id)))?.data).toMatchObject({ mchid: tenantB.mchid });
  });

  it("400 ENVELOPE_INVALID for an envelope id that is not 1–64 ASCII letters, digits, '-' or '_'", async () => {
    const invalid = ["wait:x", "v2:pay:x", "a.b", "a b", "wait\n", "../wait", "ä", "x".repeat(65), "", "{wait}"];
    const added = await f.jobsEverAdded();
    for (const id of invalid) {
      const response = await post(f.app, `/notify/v3/${tenantB.mchid}`, signedV3(tenantB, { id }));
      expect(response.statusCode, JSON.stringify(id)).toBe(400);
      expect(response.json()).toEqual(fail("ENVELOPE_INVALID: notification envelope is invalid"));
    }
    expect(await f.jobsEverAdded()).toBe(added);
    // What WeChat sends (UUID-like, or its documented `EV-…` example) and the longest accepted id pass.
    for (const id of [
      "3119dfba-e649-5eec-ab1e-3412bc4d2e17",
      "EV-2018022511223320873",
      "A_b-9".repeat(12).slice(0, 64),
    ]) {
      const response = await post(f.app, `/notify/v3/${tenantB.mchid}`, signedV3(tenantB, { id }));
      expect(response.statusCode, id).toBe(204);
    }
  });

  it("a Merchant row whose mchid is not 6–32 digits is not served: 404 MERCHANT_UNKNOWN, nothing queued", async () => {
    // Its id `v3:<90 digits>:<WeChat's 36-character id>` is 130 characters: it was answered 204 and queued, and the
    // workers refused the job (JOB_INVALID, over the parse schema's 128) — dead-lettered, and again on every replay.
    const n = signedV3(tenantLong, { id: "3119dfba-e649-5eec-ab1e-3412bc4d2e17" });
    const added = await f.jobsEverAdded();
    const response = await post(f.app, `/notify/v3/${tenantLong.mchid}`, n);
    expect(response.statusCode).toBe(404);
    expect(response.json()).toEqual(fail("MERCHANT_UNKNOWN: unknown merchant"));
    expect(await f.jobsEverAdded()).toBe(added);
    expect(await f.queue.getJob(idOf(tenantLong.mchid, n.id))).toBeUndefined();
  });

  it("the longest mchid and envelope id make an id the workers accept", async () => {
    const n = signedV3(tenantMax, { id: "e".repeat(64) });
    expect((await post(f.app, `/notify/v3/${tenantMax.mchid}`, n)).statusCode).toBe(204);
    const id = idOf(tenantMax.mchid, n.id);
    expect(id.length).toBeLessThanOrEqual(NOTIFICATION_ID_MAX_LENGTH);
    expect(parseJobSchema.parse((await f.queue.getJob(id))?.data)).toMatchObject({ id, mchid: tenantMax.mchid });
  });
});
