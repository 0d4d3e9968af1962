export { buildApp, type IngressDeps, type IngressHandle } from "./app.ts";
export { INGRESS_ERRORS, IngressError, type IngressErrorCode } from "./errors.ts";
export { prismaMerchantSource } from "./merchants/prisma-source.ts";
export {
  defaultMerchantFromConfig,
  type MerchantKeys,
  type MerchantRecord,
  MerchantRegistry,
  type MerchantSource,
} from "./merchants/registry.ts";
export { createMetrics, type IngressMetrics } from "./metrics.ts";
export { type IngressSettings, ingressSettings } from "./settings.ts";
