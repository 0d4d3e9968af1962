import type { z } from "zod";

/** A job payload schema (zod), for code that validates payloads without depending on zod itself. */
export type JobSchema<T> = z.ZodType<T>;

/**
 * Result of checking a job payload against its schema. `VERSION_UNSUPPORTED` is kept apart from `INVALID`
 * so an operator sees at once that a newer producer wrote a payload this worker does not know (deploy the
 * newer worker, then replay) rather than a bug.
 */
export type DecodedJob<T> =
  | { ok: true; value: T }
  | { ok: false; code: "JOB_VERSION_UNSUPPORTED" | "JOB_INVALID"; message: string };

/**
 * Validates `data` with `schema`, whose `v` field is a literal version. Never throws; the caller turns a
 * failure into BullMQ's UnrecoverableError (a malformed payload does not get better with retries).
 */
export function decodeJob<T>(
  schema: z.ZodType<T>,
  data: unknown,
  knownVersions: readonly number[] = [1],
): DecodedJob<T> {
  const version = typeof data === "object" && data !== null ? (data as { v?: unknown }).v : undefined;
  if (typeof version !== "number" || !knownVersions.includes(version)) {
    return {
      ok: false,
      code: "JOB_VERSION_UNSUPPORTED",
      message: `payload version ${JSON.stringify(version) ?? "undefined"} is not one of ${knownVersions.join(", ")}`,
    };
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 3)
      .map((i) => `${i.path.map(String).join(".") || "(root)"}: ${i.message}`)
      .join("; ");
    return { ok: false, code: "JOB_INVALID", message: `payload does not match its schema: ${issues}` };
  }
  return { ok: true, value: parsed.data };
}
