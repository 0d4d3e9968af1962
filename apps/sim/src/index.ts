// @wpn/sim — the wechatpay-sim command line as a library (for `npm start` and tests).
export { main, runCli } from "./cli.ts";
export { ANSWER_TIMEOUT_MS, deliver, judgeV2, judgeV3, send, V2_RETRY_DELAYS_S, V3_RETRY_DELAYS_S } from "./deliver.ts";
export { type FakeApi, startFakeApi } from "./fake-api.ts";
export { EXIT } from "./io.ts";
export {
  DEFAULT_KEYS_DIR,
  type GenerateSimKeysOptions,
  generateSimKeys,
  hasSimKeys,
  KEY_FILES,
  loadSimKeys,
  type SimKeys,
} from "./keys.ts";
