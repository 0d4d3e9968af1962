import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse } from "dotenv";
import { ConfigError } from "./errors.ts";

export type Environment = Readonly<Record<string, string | undefined>>;

/**
 * The process environment with `.env` (from `cwd`) underneath it: a variable set in the real environment
 * always wins over the file. This is the only place in the application that reads `process.env` (the test
 * helpers of packages/testing read their own TEST_DATABASE_URL and TEST_REDIS_URL). A `.env` that exists but cannot be
 * read — a directory (Docker's bind mount of a missing file makes one), a file this user may not read — is a
 * ConfigError, as a malformed setting is: the entry points print it in one line and exit 78.
 */
export function readEnvironment(cwd: string = process.cwd()): Environment {
  const file = resolve(cwd, ".env");
  const fromFile = existsSync(file) ? parseDotenv(readEnvFile(file)) : {};
  return { ...fromFile, ...process.env };
}

/**
 * The text of the `.env` at `file` (which exists), or the ConfigError an unreadable one is (a directory, no
 * permission): for `npm start`, which reads the file to complete it, as readEnvironment reads it.
 */
export function readEnvFile(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "unknown error";
    throw new ConfigError(".env", `.env file ${file} cannot be read (${code})`);
  }
}

/** The variables a `.env` text sets, read by the rules `readEnvironment` applies (dotenv's). */
export function parseDotenv(text: string): Record<string, string> {
  return parse(text);
}
