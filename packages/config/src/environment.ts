import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse } from "dotenv";

export type Environment = Readonly<Record<string, string | undefined>>;

/**
 * The process environment with `.env` (from `cwd`) underneath it: a variable set in the real environment
 * always wins over the file. This is the only place in the application that reads `process.env` (the test
 * helpers of packages/testing read their own TEST_DATABASE_URL and TEST_REDIS_URL).
 */
export function readEnvironment(cwd: string = process.cwd()): Environment {
  const file = resolve(cwd, ".env");
  const fromFile = existsSync(file) ? parseDotenv(readFileSync(file, "utf8")) : {};
  return { ...fromFile, ...process.env };
}

/** The variables a `.env` text sets, read by the rules `readEnvironment` applies (dotenv's). */
export function parseDotenv(text: string): Record<string, string> {
  return parse(text);
}
