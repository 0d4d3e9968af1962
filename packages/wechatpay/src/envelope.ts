import { z } from "zod";
import { WechatPayError } from "./errors.ts";
import { describeIssues, parseJsonBytes } from "./json.ts";

/**
 * Largest notification body we parse, in bytes. Real envelopes are 1–3 KiB; the limit only exists so a
 * forged multi-megabyte body is refused before JSON.parse (verification has already failed for it anyway,
 * since ingress verifies first). The workers open queued bodies with it: INGRESS_BODY_LIMIT_BYTES (@wpn/config, at
 * most 64 KiB) stays below it.
 */
export const DEFAULT_MAX_ENVELOPE_BYTES = 256 * 1024;

const resourceSchema = z.looseObject({
  algorithm: z.string().min(1),
  ciphertext: z.string().min(1),
  nonce: z.string().min(1),
  associated_data: z.string().optional(),
  original_type: z.string(),
});

const envelopeSchema = z.looseObject({
  id: z.string().min(1),
  create_time: z.string().min(1),
  event_type: z.string().min(1),
  resource_type: z.string().min(1),
  summary: z.string().optional(),
  resource: resourceSchema,
});

/** The outer JSON of an APIv3 notification (protocol notes §1.7). Unknown fields are kept. */
export interface V3Envelope {
  id: string;
  create_time: string;
  event_type: string;
  resource_type: string;
  summary?: string;
  resource: {
    algorithm: string;
    ciphertext: string;
    nonce: string;
    associated_data?: string;
    original_type: string;
    [extra: string]: unknown;
  };
  [extra: string]: unknown;
}

/** Parses and shape-checks the notification body. Throws BODY_TOO_LARGE or ENVELOPE_INVALID. */
export function parseV3Envelope(body: Buffer | string, limits?: { maxBytes?: number }): V3Envelope {
  const maxBytes = limits?.maxBytes ?? DEFAULT_MAX_ENVELOPE_BYTES;
  const size = typeof body === "string" ? Buffer.byteLength(body, "utf8") : body.length;
  if (size > maxBytes) {
    throw new WechatPayError("BODY_TOO_LARGE", `notification body has ${size} bytes, limit ${maxBytes}`);
  }
  const json = parseJsonBytes(body, "ENVELOPE_INVALID", "notification body");
  const parsed = envelopeSchema.safeParse(json);
  if (!parsed.success) {
    throw new WechatPayError("ENVELOPE_INVALID", `notification envelope: ${describeIssues(parsed.error.issues)}`);
  }
  return parsed.data;
}
