export { type Environment, parseDotenv, readEnvFile, readEnvironment } from "./environment.ts";
export { ConfigError } from "./errors.ts";
export { type ListenAddress, type ListenFailure, listenFailure } from "./listen.ts";
export {
  type Config,
  type LoadOptions,
  loadConfig,
  loadConfigOrExit,
  loadDatabaseUrl,
  loadMigrateSettings,
  loadQueueSettings,
  type MigrateSettings,
  readEnvironmentOrExit,
  readMerchantPrivateKeyPem,
} from "./load.ts";
export { type ParentWatchLogger, reportedStopSignal, reportStopSignal, stopWhenParentExits } from "./parent.ts";
export { errWithoutPayerIds, PAYER_CENSOR, PAYER_FIELDS, withoutPayerIds } from "./payer-ids.ts";
export {
  DEFAULT_DATABASE_URL,
  DEFAULT_PORT,
  DEFAULT_REDIS_URL,
  ENV_NAMES,
  type Env,
  envSchema,
  MCHID_PATTERN,
} from "./schema.ts";
export { SECRET_FIELDS, secretRedactPaths } from "./secrets.ts";
export {
  APP_SHUTDOWN_DEADLINE_MS,
  INGRESS_CLOSE_MAX_MS,
  INGRESS_SHUTDOWN_DRAIN_MAX_MS,
  WORKER_CLOSE_STEP_MS,
  WORKER_CLOSE_STEPS,
} from "./shutdown.ts";
export { decodesAsUriComponent } from "./uri-component.ts";
export { PASSWORD_PLACEHOLDER, withoutQueryPasswords } from "./url-passwords.ts";
