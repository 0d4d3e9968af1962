// @wpn/wechatpay — WeChat Pay notification protocol (APIv3 JSON and APIv2 XML): bytes and headers in,
// typed values or WechatPayError out. No HTTP framework, queue or database here.
export * from "./aead.ts";
export * from "./base64.ts";
export * from "./certificates.ts";
export * from "./envelope.ts";
export * from "./errors.ts";
export * from "./headers.ts";
export * from "./key-store.ts";
export * from "./keys.ts";
export * from "./message.ts";
export * from "./notification.ts";
export * from "./payloads.ts";
export * from "./reply.ts";
export * from "./resource.ts";
export * from "./rsa-verify-pool.ts";
export * from "./sign.ts";
export * from "./v2/notify.ts";
export * from "./v2/refund.ts";
export * from "./v2/reply.ts";
export * from "./v2/sign.ts";
export * from "./v2/xml.ts";
export * from "./verify.ts";
