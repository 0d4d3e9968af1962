export { type Environment, readEnvironment } from "./environment.ts";
export { ConfigError } from "./errors.ts";
export { type Config, loadConfig, loadConfigOrExit } from "./load.ts";
export { type Env, envSchema } from "./schema.ts";
