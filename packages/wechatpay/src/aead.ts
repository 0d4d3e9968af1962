import { createCipheriv, createDecipheriv } from "node:crypto";
import { decodeStrictBase64 } from "./base64.ts";
import { WechatPayError } from "./errors.ts";

/** AEAD_AES_256_GCM (RFC 5116 name) as WeChat uses it for `resource` and `encrypt_certificate`. */
export const AEAD_AES_256_GCM = "AEAD_AES_256_GCM";
/** The APIv3 key is 32 ASCII characters used as 32 raw key bytes (not hex- or base64-decoded). */
export const APIV3_KEY_BYTES = 32;
/** GCM tag length in bytes; WeChat appends it to the ciphertext before base64. */
export const GCM_TAG_BYTES = 16;

function requireKey(key: Buffer): void {
  if (!(key instanceof Uint8Array) || key.length !== APIV3_KEY_BYTES) {
    const got = key instanceof Uint8Array ? `${key.length} bytes` : typeof key;
    throw new WechatPayError(
      "KEY_INVALID",
      `APIv3 key must be ${APIV3_KEY_BYTES} bytes for AES-256-GCM, got ${got} (AES-128/192 are not WeChat Pay APIv3)`,
    );
  }
}

/** Real nonces are 12 ASCII chars; other lengths are legal GCM IVs (vector V7 uses 16), empty is not. */
function nonceBytes(nonce: string): Buffer | undefined {
  return typeof nonce === "string" && nonce.length > 0 ? Buffer.from(nonce, "utf8") : undefined;
}

/**
 * Decrypts `base64(ciphertext || tag)`; the key is the 32-byte APIv3 key, the IV the UTF-8 bytes of
 * `nonce`, the AAD the UTF-8 bytes of `associatedData` (may be ""). Throws KEY_INVALID for a key that is
 * not 32 bytes, DECRYPT_FAILED for anything that fails authentication or is too short to hold a tag.
 */
export function decryptAeadAes256Gcm(args: {
  key: Buffer;
  nonce: string;
  associatedData: string;
  ciphertext: string;
}): Buffer {
  requireKey(args.key);
  const iv = nonceBytes(args.nonce);
  if (iv === undefined) throw new WechatPayError("DECRYPT_FAILED", "AES-GCM nonce is empty");
  const data = decodeStrictBase64(args.ciphertext);
  if (data === undefined) throw new WechatPayError("DECRYPT_FAILED", "ciphertext is not base64");
  // An empty plaintext is legal (ciphertext = tag only, vector V7b), so ">= 16", not "> 16".
  if (data.length < GCM_TAG_BYTES) {
    throw new WechatPayError(
      "DECRYPT_FAILED",
      `ciphertext has ${data.length} bytes, shorter than the ${GCM_TAG_BYTES}-byte tag`,
    );
  }
  try {
    const decipher = createDecipheriv("aes-256-gcm", args.key, iv, { authTagLength: GCM_TAG_BYTES });
    decipher.setAAD(Buffer.from(args.associatedData, "utf8"));
    decipher.setAuthTag(data.subarray(data.length - GCM_TAG_BYTES));
    return Buffer.concat([decipher.update(data.subarray(0, data.length - GCM_TAG_BYTES)), decipher.final()]);
  } catch (cause) {
    throw new WechatPayError(
      "DECRYPT_FAILED",
      "AES-256-GCM authentication failed (wrong key, nonce, AAD or tampered data)",
      {
        cause,
      },
    );
  }
}

/** The reverse of `decryptAeadAes256Gcm`: returns `base64(ciphertext || tag)`. For simulators and tests. */
export function encryptAeadAes256Gcm(args: {
  key: Buffer;
  nonce: string;
  associatedData: string;
  plaintext: Buffer | string;
}): string {
  requireKey(args.key);
  const iv = nonceBytes(args.nonce);
  if (iv === undefined) throw new RangeError("AES-GCM nonce must be a non-empty string");
  const cipher = createCipheriv("aes-256-gcm", args.key, iv, { authTagLength: GCM_TAG_BYTES });
  cipher.setAAD(Buffer.from(args.associatedData, "utf8"));
  const plaintext = typeof args.plaintext === "string" ? Buffer.from(args.plaintext, "utf8") : args.plaintext;
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([body, cipher.getAuthTag()]).toString("base64");
}
