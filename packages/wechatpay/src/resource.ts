import { AEAD_AES_256_GCM, decryptAeadAes256Gcm } from "./aead.ts";
import type { V3Envelope } from "./envelope.ts";
import { WechatPayError } from "./errors.ts";
import { parseJsonBytes } from "./json.ts";

/**
 * Decrypts `envelope.resource` with the APIv3 key and parses the plaintext as JSON.
 * Order: algorithm (ALGORITHM_UNSUPPORTED, naming it) → key length (KEY_INVALID) → AES-GCM (DECRYPT_FAILED)
 * → UTF-8/JSON (PAYLOAD_INVALID). An empty plaintext (ciphertext = tag only: legal GCM, vector V7b) authenticates
 * and is PAYLOAD_INVALID here, "is empty". The result is untyped; `openV3Notification` validates it per event type.
 */
export function decryptResource(envelope: V3Envelope, apiV3Key: Buffer): unknown {
  const { resource } = envelope;
  if (resource.algorithm !== AEAD_AES_256_GCM) {
    throw new WechatPayError(
      "ALGORITHM_UNSUPPORTED",
      `resource.algorithm "${resource.algorithm}" is not supported (only ${AEAD_AES_256_GCM})`,
    );
  }
  const plaintext = decryptAeadAes256Gcm({
    key: apiV3Key,
    nonce: resource.nonce,
    associatedData: resource.associated_data ?? "",
    ciphertext: resource.ciphertext,
  });
  return parseJsonBytes(plaintext, "PAYLOAD_INVALID", "decrypted resource");
}
