/**
 * Exit codes (documented in README and `--help`), stable for scripts:
 * 0 ok — every notification acknowledged / scenario passed / check passed;
 * 1 the receiver answered wrong (not acknowledged, scenario step failed, database check failed);
 * 2 usage error (bad flag, missing keys folder);
 * 3 network/connection error (notify URL or database unreachable);
 * 4 unexpected error (a bug, or the environment: unwritable folder, …);
 * 130 interrupted (Ctrl-C).
 */
export const EXIT = {
  OK: 0,
  WRONG_ANSWER: 1,
  USAGE: 2,
  NETWORK: 3,
  UNEXPECTED: 4,
  INTERRUPTED: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export interface Writer {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Everything a command touches of the outside world, so tests can run commands in-process. */
export interface Io {
  stdout: Writer;
  stderr: Writer;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
}

export function println(w: Writer, line = ""): void {
  w.write(`${line}\n`);
}

/** Error of the command line itself (exit 2); `flag` names the offending flag. */
export class UsageError extends Error {
  override readonly name = "UsageError";
  readonly flag: string | undefined;
  constructor(message: string, flag?: string) {
    super(message);
    this.flag = flag;
  }
}

/**
 * The machine refused what the command needs — a file it cannot read or write (exit 4, as the README's "unwritable
 * folder"): its message says which and why, so it is printed alone, without the stack trace of a bug.
 */
export class EnvironmentError extends Error {
  override readonly name = "EnvironmentError";
}

/** A connection problem that is not an answer of the receiver (exit 3): database down, URL unreachable. */
export class ConnectionError extends Error {
  override readonly name = "ConnectionError";
}

const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "57P01", // PostgreSQL admin shutdown
  "3D000", // database does not exist
  "28P01", // authentication failed
  "28000",
]);

/** True for errors that mean "could not reach/talk to a server" (exit 3). */
export function isConnectionError(err: unknown): boolean {
  if (err instanceof ConnectionError) return true;
  if (typeof err !== "object" || err === null) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && CONNECTION_CODES.has(code)) return true;
  const errors = (err as { errors?: unknown }).errors;
  if (Array.isArray(errors)) return errors.some(isConnectionError);
  const message = (err as { message?: unknown }).message;
  return typeof message === "string" && /connection terminated|timeout expired|connect ECONNREFUSED/i.test(message);
}
