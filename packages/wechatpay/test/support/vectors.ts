import { readFileSync } from "node:fs";

/**
 * The protocol test vectors V1–V12, read from this package's own copy
 * (test/fixtures/wechatpay-vectors.json), never from ../shared.
 */

interface Negative {
  description: string;
  expect: "fail";
  [key: string]: unknown;
}

export interface Vectors {
  V1: {
    header_names: { timestamp: string; nonce: string; serial: string; signature: string };
    timestamp: string;
    nonce: string;
    serial: string;
    signature: string;
    body: string;
    body_len: number;
    message_sha256: string;
    certificate: string;
    certificate_serial: string;
    now: number;
    apiv3_key: string;
    apiv3_key_len: number;
    resource_nonce: string;
    resource_associated_data: string;
    expected_plaintext: string;
    negative: Negative[];
  };
  V2: {
    message: string;
    signature: string;
    serial: string;
    public_key: string;
    negative: Array<Negative & { message: string }>;
  };
  V3: { message: string; signature: string; serial: string; public_key: string };
  V4: {
    key: string;
    nonce: string;
    associated_data: string;
    ciphertext: string;
    plaintext: string;
    negative: Array<Negative & { key: string }>;
  };
  V5: {
    key: string;
    nonce: string;
    associated_data: string;
    ciphertext: string;
    plaintext: string;
    negative: Array<Negative & { associated_data?: string; nonce?: string }>;
  };
  V6: {
    key: string;
    nonce: string;
    associated_data: string;
    serial_no: string;
    effective_time: string;
    expire_time: string;
    ciphertext: string;
    plaintext_len: number;
    plaintext_sha256: string;
    expected_certificate: { serial: string; subject_contains: string; issuer_contains: string };
  };
  V7: { key: string; iv: string; cases: Array<{ case: string; aad: string; ciphertext: string; plaintext: string }> };
  V8: { key: string; string: string; md5: string; hmac_sha256: string };
  V9: { key: string; string: string; md5: string; hmac_sha256: string; negative: Array<Negative & { md5: string }> };
  V10: { cases: Array<{ string: string; md5: string }> };
  V11: { key: string; plaintext: string; ciphertext: string };
  V12: {
    api_key: string;
    aes_key: string;
    req_info: string;
    plaintext_len: number;
    plaintext_sha256: string;
    expected_fields: Record<string, string>;
  };
}

export const vectors = JSON.parse(
  readFileSync(new URL("../fixtures/wechatpay-vectors.json", import.meta.url), "utf8"),
) as Vectors;

/** `a=1&b=2` → `{ a: "1", b: "2" }` (values in the vectors contain no `&` or `=`). */
export function parseSignString(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const pair of text.split("&")) {
    const at = pair.indexOf("=");
    fields[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return fields;
}
