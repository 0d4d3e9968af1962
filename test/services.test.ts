import { describe, expect, it } from "vitest";
import { withComposePassword } from "../scripts/services.ts";

describe("npm start with Docker Compose's PostgreSQL", () => {
  it("adds compose's password to a URL without one (the image refuses password-less TCP connections)", () => {
    expect(withComposePassword("postgresql://postgres@127.0.0.1:5432/wechatpay_notify")).toBe(
      "postgresql://postgres:postgres@127.0.0.1:5432/wechatpay_notify",
    );
    expect(withComposePassword("postgresql://127.0.0.1:5432/wechatpay_notify?schema=shop")).toBe(
      "postgresql://postgres:postgres@127.0.0.1:5432/wechatpay_notify?schema=shop",
    );
  });

  it("leaves a URL with a password, or for another user, as it is", () => {
    for (const url of ["postgresql://postgres:secret@127.0.0.1:5432/db", "postgresql://shop@127.0.0.1:5432/db"]) {
      expect(withComposePassword(url)).toBe(url);
    }
  });
});
