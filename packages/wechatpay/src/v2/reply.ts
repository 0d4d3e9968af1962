import { cdata } from "./xml.ts";

/**
 * APIv2 answers (protocol notes §2.4): always HTTP 200 with this exact XML. Anything else (plain "success",
 * JSON, a stray byte before `<xml>`) counts as failure and WeChat retries.
 */
export const V2_REPLY_CONTENT_TYPE = "text/xml; charset=utf-8";
export const V2_REPLY_STATUS = 200;

export function v2Reply(ok: true): string;
export function v2Reply(ok: false, message: string): string;
export function v2Reply(ok: boolean, message?: string): string {
  if (ok) return "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";
  const text = message === undefined || message.trim() === "" ? "FAIL" : message;
  return `<xml><return_code><![CDATA[FAIL]]></return_code><return_msg>${cdata(text)}</return_msg></xml>`;
}
