import { describe, expect, it } from "vitest";
import { errWithoutPayerIds } from "../src/payer-ids.ts";

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
