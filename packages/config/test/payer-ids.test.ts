import { describe, expect, it } from "vitest";
import { errWithoutPayerIds, withoutPayerIds } from "../src/payer-ids.ts";

/** pino.stdSerializers.err's way (the apps' tests use pino's own): an object of its own prototype, with the
 * error's enumerable own fields copied, an Error among them serialized alike. */
class SerializedError {
  [field: string]: unknown;
  constructor(err: Error) {
    this.type = err.name;
    this.message = err.message;
    for (const [key, value] of Object.entries(err))
      this[key] = value instanceof Error ? new SerializedError(value) : value;
  }
}
const serialize = errWithoutPayerIds((err: unknown) => (err instanceof Error ? new SerializedError(err) : err));

describe("errWithoutPayerIds (an err serializer, censored)", () => {
  it("returns the serialized error itself when it holds no payer id (it runs on every error logged)", () => {
    const out = serialize(Object.assign(new Error("db down"), { code: "DB_ERROR", detail: { table: "Order" } }));
    expect(out).toBeInstanceOf(SerializedError);
    expect(out).toMatchObject({ message: "db down", code: "DB_ERROR", detail: { table: "Order" } });
    const unchanged = new SerializedError(new Error("x"));
    expect(errWithoutPayerIds(() => unchanged)(new Error("x"))).toBe(unchanged);
  });

  it("censors one in the error's fields or an error among them, down to four levels below the log object", () => {
    const err = Object.assign(new Error("parse failed"), {
      transaction: { payer: { openid: "oPAYER" } },
      inner: Object.assign(new Error("inner"), { sub_openid: "oPAYER-sub" }),
      deep: { a: { b: { c: { openid: "beyond the bound" } } } },
    });
    const out = serialize(err) as SerializedError;
    // Copied with its prototype: pino's keeps its `raw`.
    expect(out).toBeInstanceOf(SerializedError);
    expect(out.inner).toBeInstanceOf(SerializedError);
    expect(out).toMatchObject({ message: "parse failed", transaction: { payer: "[redacted]" } });
    expect(out.inner).toMatchObject({ message: "inner", sub_openid: "[redacted]" });
    // `err` is level one, `deep` two, `c` five: past the bound, as in withoutPayerIds.
    expect(JSON.stringify(out.deep)).toContain("beyond the bound");
    expect(err.transaction.payer.openid).toBe("oPAYER");
  });

  it("passes what is not an error through as it came (formatters.log walked it already)", () => {
    const notAnError = { openid: "oPAYER" };
    expect(serialize(notAnError)).toBe(notAnError);
  });
});

describe("withoutPayerIds (formatters.log) on an Error pino does not serialize", () => {
  class ApplyError extends Error {}

  it("returns the log object itself when no Error in it holds a payer id (it runs on every line)", () => {
    const line = { cause: Object.assign(new Error("db down"), { code: "DB_ERROR" }), errors: [new Error("x")] };
    expect(withoutPayerIds(line)).toBe(line);
  });

  it("leaves the top-level `err` Error to the err serializer, which needs the Error itself", () => {
    const err = Object.assign(new Error("apply failed"), { openid: "oPAYER" });
    const line = { err };
    expect(withoutPayerIds(line)).toBe(line);
    // Only the top level's: pino serializes no other.
    const nested = withoutPayerIds({ job: { err } }) as { job: { err: Record<string, unknown> } };
    expect(nested.job.err.openid).toBe("[redacted]");
  });

  it("censors a copy that JSON.stringify writes as the original, the payer fields aside, even of a frozen Error", () => {
    const cause = Object.freeze(
      Object.assign(new ApplyError("apply failed"), {
        mchid: "1900000109",
        transaction: { payer: { openid: "oPAYER" } },
      }),
    );
    const out = withoutPayerIds({ cause }) as { cause: ApplyError & Record<string, unknown> };
    expect(out.cause).not.toBe(cause);
    expect(out.cause).toBeInstanceOf(ApplyError);
    expect(out.cause.message).toBe("apply failed");
    expect(out.cause.stack).toBe(cause.stack);
    expect(Object.keys(out.cause)).toEqual(Object.keys(cause));
    expect(JSON.parse(JSON.stringify(out))).toEqual({
      cause: { mchid: "1900000109", transaction: { payer: "[redacted]" } },
    });
    expect(cause.transaction.payer.openid).toBe("oPAYER");
  });
});
