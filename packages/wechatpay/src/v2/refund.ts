import { createCipheriv, createDecipheriv, createHash } from "node:crypto";
import { decodeStrictBase64 } from "../base64.ts";
import { WechatPayError } from "../errors.ts";
import { buildFlatXml, parseFlatXml, parseV2Xml, type V2XmlLimits } from "./xml.ts";

/**
 * APIv2 refund notifications carry no `sign`; their authenticity rests on `req_info` decrypting under a key
 * derived from the APIv2 key (protocol notes §2.3): AES-256-ECB, PKCS#7, key = the 32 ASCII characters of
 * the lower-case hex MD5 of the APIv2 key. ECB has no integrity tag, so we are strict about what comes out:
 * valid padding, valid UTF-8 and a well-formed flat `<root>` document, else DECRYPT_FAILED.
 */

/** `md5(apiV2Key)` as lower-case hex; its ASCII bytes are the AES-256 key (vector V10). */
export function v2RefundKey(apiV2Key: string): Buffer {
  if (typeof apiV2Key !== "string" || apiV2Key.length === 0) {
    throw new WechatPayError("KEY_INVALID", "APIv2 key must be a non-empty string");
  }
  return Buffer.from(createHash("md5").update(apiV2Key, "utf8").digest("hex"), "ascii");
}

const AES_BLOCK_BYTES = 16;

/** AES-256-ECB with PKCS#7 padding; returns the plaintext or throws DECRYPT_FAILED. */
export function decryptAes256Ecb(ciphertextBase64: string, key: Buffer): Buffer {
  const data = decodeStrictBase64(ciphertextBase64);
  if (data === undefined) throw new WechatPayError("DECRYPT_FAILED", "req_info is not base64");
  if (data.length === 0 || data.length % AES_BLOCK_BYTES !== 0) {
    throw new WechatPayError(
      "DECRYPT_FAILED",
      `req_info has ${data.length} bytes, not a positive multiple of ${AES_BLOCK_BYTES}`,
    );
  }
  try {
    const decipher = createDecipheriv("aes-256-ecb", key, null); // autoPadding: PKCS#7 is checked by final()
    return Buffer.concat([decipher.update(data), decipher.final()]);
  } catch (cause) {
    throw new WechatPayError("DECRYPT_FAILED", "req_info did not decrypt (wrong APIv2 key or damaged data)", { cause });
  }
}

export function encryptAes256Ecb(plaintext: Buffer | string, key: Buffer): string {
  const cipher = createCipheriv("aes-256-ecb", key, null);
  const data = typeof plaintext === "string" ? Buffer.from(plaintext, "utf8") : plaintext;
  return Buffer.concat([cipher.update(data), cipher.final()]).toString("base64");
}

/** Decrypts a refund notification's `req_info` into its fields (all strings, vector V12). */
export function decryptV2ReqInfo(reqInfo: string, apiV2Key: string): Record<string, string> {
  const plaintext = decryptAes256Ecb(reqInfo, v2RefundKey(apiV2Key));
  try {
    return parseFlatXml(plaintext, "root");
  } catch (cause) {
    throw new WechatPayError("DECRYPT_FAILED", "req_info decrypted to something that is not a <root> document", {
      cause,
    });
  }
}

/**
 * The reverse, for the simulator: `<root>\n<a><![CDATA[…]]></a>\n…</root>` (WeChat's layout, V12) encrypted
 * and base64-encoded.
 */
export function encryptV2ReqInfo(fields: Record<string, string>, apiV2Key: string): string {
  return encryptAes256Ecb(buildFlatXml(fields, "root", "\n"), v2RefundKey(apiV2Key));
}

export interface V2RefundNotification {
  /** The outer fields: return_code, appid, mch_id, nonce_str, req_info, … */
  outer: Record<string, string>;
  /** The decrypted `req_info`: out_refund_no, refund_id, refund_status (SUCCESS | CHANGE | REFUNDCLOSE), … */
  refund: Record<string, string>;
}

/** Parses a refund notification body and decrypts its `req_info`. */
export function openV2RefundNotification(
  body: Buffer | string,
  apiV2Key: string,
  limits?: V2XmlLimits,
): V2RefundNotification {
  const outer = parseV2Xml(body, limits);
  const reqInfo = outer.req_info;
  if (reqInfo === undefined || reqInfo === "") {
    throw new WechatPayError(
      "XML_INVALID",
      `refund notification has no req_info (return_code=${outer.return_code ?? "?"})`,
    );
  }
  return { outer, refund: decryptV2ReqInfo(reqInfo, apiV2Key) };
}
