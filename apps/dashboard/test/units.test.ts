import { execFileSync } from "node:child_process";
import { createHash, createHmac, generateKeyPairSync } from "node:crypto";
import { ConfigError } from "@wpn/config";
import { createRedisConnection } from "@wpn/queue";
import { deletePrefix, TEST_REDIS_URL, testQueuePrefix } from "@wpn/testing";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { hashCostOf, hashPassword, isPasswordHash, verifyPassword } from "../src/auth/password.ts";
import { type AttemptDecision, clientOf, LoginRateLimiter } from "../src/auth/rate-limit.ts";
import { deriveKey, SessionCodec } from "../src/auth/session.ts";
import { parseUsers } from "../src/auth/users.ts";
import { certificatesFromPems } from "../src/data/keys.ts";
import { parseSearch } from "../src/data/notifications.ts";
import { loginDummies } from "../src/routes/login.ts";
import { safeNext } from "../src/routes/next.ts";
import { lineChart, niceCeiling } from "../src/views/chart.ts";
import { escapeHtml, html, raw } from "../src/views/html.ts";

describe("password hashes", () => {
  const hash = hashPassword("correct horse battery staple");

  it("verifies the right password only", async () => {
    expect(hash).toMatch(/^scrypt\.16384\.8\.1\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{86}$/);
    expect(await verifyPassword("correct horse battery staple", hash)).toBe(true);
    expect(await verifyPassword("correct horse battery stapl", hash)).toBe(false);
    expect(await verifyPassword("", hash)).toBe(false);
  });

  it("salts every hash", () => {
    expect(hashPassword("same")).not.toBe(hashPassword("same"));
  });

  it("contains nothing DASHBOARD_USERS, shells or Compose would split or interpolate", () => {
    expect(hash).not.toMatch(/[:,$\s'"`\\]/);
  });

  it("accepts the scrypt$salt$hash form (N=16384, r=8, p=1, standard base64)", async () => {
    const [, , , , salt, key] = hash.split(".");
    const legacy = `scrypt$${Buffer.from(salt ?? "", "base64url").toString("base64")}$${Buffer.from(key ?? "", "base64url").toString("base64")}`;
    expect(await verifyPassword("correct horse battery staple", legacy)).toBe(true);
    expect(await verifyPassword("wrong", legacy)).toBe(false);
  });

  it("treats malformed or abusive hashes as non-matching", async () => {
    for (const bad of [
      "",
      "plain",
      "scrypt.16384.8.1.x.y",
      hash.replace("16384", "1000"),
      hash.replace("16384", "4194304"),
    ]) {
      expect(isPasswordHash(bad)).toBe(false);
      expect(await verifyPassword("correct horse battery staple", bad)).toBe(false);
    }
  });
});

describe("DASHBOARD_USERS", () => {
  const h = hashPassword("pw-for-parse-tests");

  it("parses name:role:hash entries", () => {
    const users = parseUsers(` alice:operator:${h} , bob:viewer:${h},`);
    expect([...users.values()].map((u) => [u.name, u.role])).toEqual([
      ["alice", "operator"],
      ["bob", "viewer"],
    ]);
    expect(parseUsers(undefined).size).toBe(0);
  });

  it("refuses a hash cheaper than the CLI's (scrypt N=16384, r=8): guessing it offline would cost next to nothing", () => {
    // Well-formed and verifiable, but 2^10 is 16 times cheaper to guess than the default, r=1 eight times, N=2 free.
    for (const cost of [
      { N: 2 ** 10, r: 8, p: 1 },
      { N: 2 ** 14, r: 1, p: 1 },
      { N: 2, r: 1, p: 1 },
    ]) {
      const weak = hashPassword("pw-for-parse-tests", cost);
      expect(() => parseUsers(`alice:viewer:${h},bob:operator:${weak}`), `${cost.N}.${cost.r}`).toThrow(
        /entry 2 \(bob\) hash is too cheap to compute: scrypt N·r below 16384·8/,
      );
    }
    // At the default cost or above (N or r raised), accepted.
    for (const cost of [
      { N: 2 ** 14, r: 8, p: 1 },
      { N: 2 ** 13, r: 16, p: 1 },
      { N: 2 ** 15, r: 8, p: 2 },
    ]) {
      expect(parseUsers(`bob:operator:${hashPassword("pw-for-parse-tests", cost)}`).size).toBe(1);
    }
  });

  it("names the bad entry without echoing its hash", () => {
    const cases: [string, RegExp][] = [
      [`alice:admin:${h}`, /entry 1 \(alice\) role must be viewer or operator/],
      [`alice:viewer:${h},bob:viewer:nothash`, /entry 2 \(bob\) hash is not a scrypt hash/],
      [`alice:viewer`, /entry 1 must be name:role:hash/],
      [`al ice:viewer:${h}`, /entry 1 has an invalid name/],
      [`alice:viewer:${h},alice:operator:${h}`, /user alice is listed twice/],
    ];
    for (const [value, message] of cases) {
      let error: unknown;
      try {
        parseUsers(value);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).variable).toBe("DASHBOARD_USERS");
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).not.toContain(h);
    }
  });
});

describe("sessions", () => {
  const alice = { name: "alice", role: "viewer", passwordHash: "scrypt.16384.8.1.salt.old" } as const;
  /** DASHBOARD_USERS as the verifying process has it: alice with `hash`. */
  const users =
    (hash: string = alice.passwordHash) =>
    (name: string) =>
      name === alice.name ? hash : undefined;
  /** A lifetime of `ttlSeconds` and an idle limit of `idleSeconds` (none shorter than the lifetime, unless given). */
  const lifetime = (ttlSeconds: number, idleSeconds = ttlSeconds) => ({ ttlSeconds, idleSeconds });

  it("round-trips, and refuses tampering, expiry and another secret (logout: logout.test.ts)", () => {
    let now = 1_700_000_000_000;
    const codec = new SessionCodec("s".repeat(32), lifetime(60), () => now);
    const { value, claims } = codec.issue(alice);
    expect(codec.verify(value, users())).toEqual(claims);
    expect(new SessionCodec("t".repeat(32), lifetime(60), () => now).verify(value, users())).toBeUndefined();
    const [v, payload, mac] = value.split(".");
    const elevated = Buffer.from(JSON.stringify({ ...claims, role: "operator" })).toString("base64url");
    expect(codec.verify(`${v}.${elevated}.${mac}`, users())).toBeUndefined();
    expect(codec.verify(`${v}.${payload}.${mac}A`, users())).toBeUndefined();
    now += 61_000;
    expect(codec.verify(value, users())).toBeUndefined();
    now -= 61_000;
    expect(codec.verify(codec.issue(alice).value, users())).toBeDefined();
  });

  it("ends a user's sessions when their password hash changes, without revealing the hash", () => {
    const codec = new SessionCodec("s".repeat(32), lifetime(60), () => 1_700_000_000_000);
    const { value, claims } = codec.issue(alice);
    expect(codec.verify(value, users())).toEqual(claims);
    expect(codec.verify(value, users("scrypt.16384.8.1.salt.new"))).toBeUndefined();
    expect(codec.verify(value, () => undefined)).toBeUndefined();
    // Back to the old hash (a rollback of the configuration): the session is the user's again.
    expect(codec.verify(value, users())).toEqual(claims);
    // The claims are readable by anyone holding the cookie: they must not carry the hash or a plain digest of it.
    const decoded = Buffer.from(value.split(".")[1] ?? "", "base64url").toString();
    expect(decoded).not.toContain("salt");
    expect(decoded).not.toContain(createHash("sha256").update(alice.passwordHash).digest("base64url").slice(0, 22));
  });

  it("applies a shorter DASHBOARD_SESSION_TTL_SECONDS to sessions issued before, and refuses one issued in the future", () => {
    let now = 1_700_000_000_000;
    const eightHours = new SessionCodec("s".repeat(32), lifetime(8 * 3600), () => now);
    const { value } = eightHours.issue(alice);
    // The same secret after a restart with a 15-minute lifetime.
    const fifteenMinutes = new SessionCodec("s".repeat(32), lifetime(900), () => now);
    now += 899_000;
    expect(fifteenMinutes.verify(value, users())).toBeDefined();
    now += 1_000;
    expect(fifteenMinutes.verify(value, users())).toBeUndefined();
    now += 2 * 3600_000;
    expect(fifteenMinutes.verify(value, users())).toBeUndefined();
    // A longer lifetime later does not lengthen a session past the expiry it was issued with.
    const day = new SessionCodec("s".repeat(32), lifetime(24 * 3600), () => now);
    now = 1_700_000_000_000 + 8 * 3600_000;
    expect(day.verify(value, users())).toBeUndefined();

    // Issued by a clock ahead of ours: within a minute (replicas' clocks differ a little) it is taken, beyond not.
    now = 1_700_000_000_000;
    const ahead = (ms: number) => new SessionCodec("s".repeat(32), lifetime(900), () => now + ms).issue(alice).value;
    expect(fifteenMinutes.verify(ahead(30_000), users())).toBeDefined();
    expect(fifteenMinutes.verify(ahead(61_000), users())).toBeUndefined();
    expect(fifteenMinutes.verify(ahead(3600_000), users())).toBeUndefined();
  });
});

describe("the idle limit", () => {
  const alice = { name: "alice", role: "viewer", passwordHash: "scrypt.16384.8.1.salt.old" } as const;
  const users = (name: string) => (name === alice.name ? alice.passwordHash : undefined);
  const start = 1_700_000_000_000;

  it("ends a session unused for the limit (idle, told apart from invalid); a touch re-stamps it, keeping sid and expiry", () => {
    let now = start;
    const codec = new SessionCodec("s".repeat(32), { ttlSeconds: 3600, idleSeconds: 900 }, () => now);
    const { value, claims } = codec.issue(alice);
    expect(claims.act).toBe(claims.iat);
    now += 899_000;
    expect(codec.check(value, users)).toEqual({ state: "live", claims });
    now += 1_000;
    expect(codec.check(value, users)).toEqual({ state: "idle", claims });
    expect(codec.verify(value, users)).toBeUndefined();
    // Used 60 s after the login: re-stamped, the same session otherwise; 900 s later that copy is idle in turn.
    now = start + 60_000;
    const touched = codec.touch(claims);
    expect(touched?.claims).toEqual({ ...claims, act: claims.iat + 60 });
    now = start + 959_000;
    expect(codec.check(value, users).state).toBe("idle");
    expect(codec.check(touched?.value, users)).toEqual({ state: "live", claims: touched?.claims });
    expect(codec.sessionIdOf(touched?.value)).toBe(claims.sid);
    now = start + 960_000;
    expect(codec.check(touched?.value, users).state).toBe("idle");
    // An idle session whose password changed is just invalid; one past its lifetime is expired, however fresh its stamp.
    expect(codec.check(touched?.value, () => "scrypt.16384.8.1.salt.new")).toEqual({ state: "invalid" });
    now = start + 3600_000;
    const used = codec.touch(claims);
    expect(codec.check(used?.value, users)).toEqual({ state: "expired", claims: used?.claims });
    expect(codec.check(used?.value, () => "scrypt.16384.8.1.salt.new")).toEqual({ state: "invalid" });
  });

  it("re-issues only once the stamp is a thirtieth of the limit old; the cookie keeps what is left of the lifetime", () => {
    let now = start;
    const codec = new SessionCodec("s".repeat(32), { ttlSeconds: 3600, idleSeconds: 900 }, () => now);
    const { claims } = codec.issue(alice);
    expect(codec.slideAfterSeconds).toBe(30);
    now += 29_999;
    expect(codec.touch(claims)).toBeUndefined();
    now += 1;
    const touched = codec.touch(claims);
    expect(touched?.claims.act).toBe(claims.iat + 30);
    expect(touched && codec.maxAgeSeconds(touched.claims)).toBe(3600 - 30);
    expect(new SessionCodec("s".repeat(32), { ttlSeconds: 60, idleSeconds: 60 }).slideAfterSeconds).toBe(2);
  });

  it("counts a cookie without a stamp (issued before the idle limit existed) from its issue time", () => {
    let now = start;
    const codec = new SessionCodec("s".repeat(32), { ttlSeconds: 3600, idleSeconds: 900 }, () => now);
    const { claims } = codec.issue(alice);
    const { act: _, ...unstamped } = claims;
    const old = signed(unstamped);
    expect(codec.check(old, users)).toEqual({ state: "live", claims: unstamped });
    now += 900_000;
    expect(codec.check(old, users).state).toBe("idle");
    // A stamp before the issue time, or ahead of this clock by more than the replicas' difference, is no stamp of ours.
    now = start;
    expect(codec.check(signed({ ...claims, act: claims.iat - 1 }), users)).toEqual({ state: "invalid" });
    expect(codec.check(signed({ ...claims, act: claims.iat + 61 }), users)).toEqual({ state: "invalid" });
    expect(codec.check(signed({ ...claims, act: claims.iat + 60 }), users).state).toBe("live");
  });
});

/** `claims` as a cookie value signed with the secret "s"×32, as SessionCodec signs them (`v1.<claims>.<mac>`). */
function signed(claims: object): string {
  const payload = Buffer.from(JSON.stringify(claims)).toString("base64url");
  const mac = createHmac("sha256", deriveKey("s".repeat(32), "session"))
    .update(payload)
    .digest("base64url");
  return `v1.${payload}.${mac}`;
}

describe("the dummy hashes a login verifies", () => {
  it("one at the most expensive configured cost; for an unknown name one at a configured user's cost, the same each time", () => {
    const users = new Map([
      [
        "olga",
        { name: "olga", role: "operator" as const, passwordHash: hashPassword("a", { N: 2 ** 15, r: 8, p: 1 }) },
      ],
      ["victor", { name: "victor", role: "viewer" as const, passwordHash: hashPassword("b") }],
    ]);
    const dummies = loginDummies(users);
    expect(hashCostOf(dummies.strongest)).toEqual({ N: 2 ** 15, r: 8, p: 1 });
    const costs = new Set(
      ["a", "b", "nobody", "mallory", "x1", "x2", "x3"].map((n) => hashCostOf(dummies.likeUser(n))?.N),
    );
    expect([...costs].sort()).toEqual([2 ** 14, 2 ** 15]);
    expect(dummies.likeUser("nobody")).toBe(dummies.likeUser("nobody"));
    expect(hashCostOf(loginDummies(new Map()).strongest)).toEqual({ N: 2 ** 14, r: 8, p: 1 });
  });
});

describe("login rate limiter", () => {
  const prefix = testQueuePrefix("login_limit");
  const redis = createRedisConnection(TEST_REDIS_URL, "admin");
  afterAll(async () => {
    redis.disconnect();
    await deletePrefix(prefix);
  });
  const counted = (d: AttemptDecision) => ("attempt" in d ? d.attempt : expect.unreachable("refused"));

  it("allows `limit` failures per minute per IP", async () => {
    let now = 0;
    const limiter = new LoginRateLimiter(redis, prefix, 3, 60_000, () => now);
    for (let i = 0; i < 3; i++) {
      expect(await limiter.attempt("192.0.2.1")).toHaveProperty("attempt");
      now += 1_000;
    }
    expect(await limiter.attempt("192.0.2.1")).toEqual({ retryAfterSeconds: 57 });
    expect(await limiter.attempt("192.0.2.2")).toHaveProperty("attempt");
    now = 60_001;
    await limiter.recordSuccess(counted(await limiter.attempt("192.0.2.1")));
    expect(await limiter.attempt("192.0.2.1")).toHaveProperty("attempt");
  });

  it("a success takes back only its own attempt: a login of one's own does not reset guesses at another's", async () => {
    let now = 0;
    const limiter = new LoginRateLimiter(redis, prefix, 5, 60_000, () => now);
    for (let i = 0; i < 3; i++) await limiter.attempt("10.0.0.7");
    now += 1;
    await limiter.recordSuccess(counted(await limiter.attempt("10.0.0.7")));
    expect(await limiter.attempt("10.0.0.7")).toHaveProperty("attempt");
    expect(await limiter.attempt("10.0.0.7")).toHaveProperty("attempt");
    expect(await limiter.attempt("10.0.0.7")).toHaveProperty("retryAfterSeconds");
  });

  it("refuses with LOGIN_LIMIT_UNAVAILABLE when Redis does not answer", async () => {
    const down = createRedisConnection("redis://127.0.0.1:1", "admin");
    down.on("error", () => {}); // the refused connection, expected here
    try {
      const limiter = new LoginRateLimiter(down, prefix, 5);
      await expect(limiter.attempt("192.0.2.3")).rejects.toMatchObject({ code: "LOGIN_LIMIT_UNAVAILABLE" });
    } finally {
      down.disconnect();
    }
  });

  it("counts an IPv6 /64 as one client, an IPv4-mapped address as its IPv4 address", async () => {
    expect(clientOf("2001:db8:1:2::5")).toBe("2001:0db8:0001:0002::/64");
    expect(clientOf("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).toBe("2001:0db8:0001:0002::/64");
    expect(clientOf("2001:db8::1")).toBe("2001:0db8:0000:0000::/64");
    expect(clientOf("::1")).toBe("0000:0000:0000:0000::/64");
    expect(clientOf("::ffff:192.0.2.1")).toBe("192.0.2.1");
    expect(clientOf("192.0.2.1")).toBe("192.0.2.1");
    const limiter = new LoginRateLimiter(redis, prefix, 2);
    await limiter.attempt("2001:db8:1:2::1");
    await limiter.attempt("2001:db8:1:2::2");
    expect(await limiter.attempt("2001:db8:1:2::3")).toHaveProperty("retryAfterSeconds");
    expect(await limiter.attempt("2001:db8:1:3::1")).toHaveProperty("attempt");
  });
});

describe("html", () => {
  it("escapes interpolated values, nested templates stay markup", () => {
    const inner = html`<b>${"<i>"}</b>`;
    expect(html`<p title="${`"x'`}">${inner}${["<a>", 1]}${null}${undefined}${false}</p>`.toString()).toBe(
      '<p title="&quot;x&#39;"><b>&lt;i&gt;</b>&lt;a&gt;1</p>',
    );
    expect(escapeHtml("&<>\"'`")).toBe("&amp;&lt;&gt;&quot;&#39;&#96;");
    expect(html`${raw("<br>")}`.toString()).toBe("<br>");
  });
});

describe("svg chart", () => {
  it("rounds the axis up and breaks lines at missing values", () => {
    expect([0, 0.3, 1, 7, 12, 180, 2_000].map(niceCeiling)).toEqual([1, 0.5, 1, 10, 20, 200, 2_000]);
    const svg = lineChart({
      title: "t <x>",
      start: Date.UTC(2026, 10, 11, 10, 0),
      stepMs: 60_000,
      series: [{ name: "s", color: "#000", values: [1, 2, null, 4, 5, null, 7] }],
    }).toString();
    expect(svg.match(/<polyline/g)?.length).toBe(2);
    expect(svg.match(/<circle/g)?.length).toBe(1);
    expect(svg).toContain("<title>t &lt;x&gt;</title>");
    expect(svg).toContain(">10:00<");
  });
});

describe("login redirect target", () => {
  it("keeps same-site paths only", () => {
    expect(safeNext("/notifications?q=1")).toBe("/notifications?q=1");
    for (const bad of [
      "//evil.example",
      "/\\evil.example",
      "https://evil.example",
      "evil",
      "/x\nSet-Cookie: a",
      undefined,
      42,
    ]) {
      expect(safeNext(bad)).toBe("/");
    }
  });

  it("percent-encodes what a Location header cannot carry, as UTF-8, leaving existing escapes alone", () => {
    expect(safeNext("/notifications?q=订单")).toBe("/notifications?q=%E8%AE%A2%E5%8D%95");
    expect(safeNext("/\u0100")).toBe("/%C4%80");
    expect(safeNext("/%C4%80?q=%25")).toBe("/%C4%80?q=%25");
    expect(safeNext("/notifications?q=a b&mchid=é")).toBe("/notifications?q=a%20b&mchid=%C3%A9");
    expect(safeNext("/x\ud800")).toBe("/x%EF%BF%BD");
  });
});

describe("search form", () => {
  it("reads datetime-local values as UTC and rejects bad input", () => {
    const { search, errors } = parseSearch({
      from: "2026-11-11T08:00",
      to: "2026-11-11T09:30:15",
      status: "DEAD",
      q: "  abc ",
    });
    expect(errors).toEqual([]);
    expect(search.from?.toISOString()).toBe("2026-11-11T08:00:00.000Z");
    expect(search.to?.toISOString()).toBe("2026-11-11T09:30:15.000Z");
    expect(search.q).toBe("abc");
    expect(parseSearch({ status: "dead" }).errors).toHaveLength(1);
    expect(parseSearch({ q: "x".repeat(129) }).errors).toHaveLength(1);
  });

  describe("in a process whose local zone is not UTC", () => {
    afterEach(() => {
      vi.unstubAllEnvs();
    });

    it("reads every time without an offset as UTC, with T or a space and any fraction; an offset as given", () => {
      // Node applies a TZ change at once; the page says UTC, so the server's zone must not matter.
      vi.stubEnv("TZ", "Asia/Shanghai");
      expect(new Date(2024, 4, 1).getTimezoneOffset()).toBe(-480);
      const cases: [string, string][] = [
        ["2024-05-01T10:00", "2024-05-01T10:00:00.000Z"],
        ["2024-05-01 10:00", "2024-05-01T10:00:00.000Z"],
        ["2024-05-01 10:00:00", "2024-05-01T10:00:00.000Z"],
        ["2024-05-01T10:00:00.1", "2024-05-01T10:00:00.100Z"],
        ["2024-05-01T10:00:00.1234", "2024-05-01T10:00:00.123Z"],
        ["2024-05-01 10:00:00.999999", "2024-05-01T10:00:00.999Z"],
        ["2024-05-01", "2024-05-01T00:00:00.000Z"],
        ["2024-05-01T10:00:00Z", "2024-05-01T10:00:00.000Z"],
        ["2024-05-01T10:00:00.000Z", "2024-05-01T10:00:00.000Z"],
        ["2024-05-01T10:00:00+08:00", "2024-05-01T02:00:00.000Z"],
        ["2024-05-01 10:00-05:30", "2024-05-01T15:30:00.000Z"],
      ];
      for (const [value, iso] of cases) {
        const { search, errors } = parseSearch({ from: value });
        expect(errors, value).toEqual([]);
        expect(search.from?.toISOString(), value).toBe(iso);
      }
    });

    it("rejects every other form with the same message", () => {
      vi.stubEnv("TZ", "America/New_York");
      for (const value of [
        "2024-05-01T10",
        "2024-05-01T10:00:00.",
        "2024-05-01  10:00",
        "2024-02-30T10:00",
        "2024-05-01T24:00",
        "2024-05-01T10:60",
        "2024-05-01T10:00:60",
        "2024-05-01T10:00+24:00",
        "2024-05-01T10:00+0800",
        "2024-05-01Z",
        "May 1, 2024 10:00",
        "2024-05-01T10:00:00 GMT+0800",
        "1714557600000",
      ]) {
        expect(parseSearch({ from: value }).errors, value).toEqual([
          "From is not a date and time (YYYY-MM-DDTHH:MM, UTC)",
        ]);
      }
    });
  });

  it("refuses an instant outside years 1–9999, which PostgreSQL's timestamp cannot take (22008: it was a 500)", () => {
    for (const value of ["0000-01-01", "0000-12-31T23:59:59.999", "0001-01-01T00:30+01:00", "9999-12-31T23:30-01:00"]) {
      expect(parseSearch({ from: value }).errors, value).toEqual([
        "From is not a date and time (YYYY-MM-DDTHH:MM, UTC)",
      ]);
    }
    for (const [value, iso] of [
      ["0001-01-01", "0001-01-01T00:00:00.000Z"],
      ["0001-01-01T01:00+01:00", "0001-01-01T00:00:00.000Z"],
      ["9999-12-31T23:59:59.999", "9999-12-31T23:59:59.999Z"],
      ["9999-12-31T23:59+00:00", "9999-12-31T23:59:00.000Z"],
    ] as const) {
      const { search, errors } = parseSearch({ to: value });
      expect(errors, value).toEqual([]);
      expect(search.to?.toISOString(), value).toBe(iso);
    }
  });

  it("reports a page that is not 1–6 digits and a repeated parameter instead of ignoring them", () => {
    expect(parseSearch({ page: "3" })).toMatchObject({ search: { page: 3 }, errors: [] });
    expect(parseSearch({ page: "0" })).toMatchObject({ search: { page: 0 }, errors: [] });
    for (const page of ["-1", "1.5", "two", "1234567", "0x10"]) {
      expect(parseSearch({ page }).errors, page).toEqual(["Page must be a whole number of 1 to 6 digits"]);
    }
    expect(parseSearch({ status: ["DEAD", "FAILED"] }).errors).toEqual(["Status is given more than once"]);
    expect(parseSearch({ q: ["a", "b"], page: ["1", "2"] }).errors).toEqual([
      "Page is given more than once",
      "Search is given more than once",
    ]);
  });
});

describe("configured platform certificate files (the Keys page)", () => {
  const now = new Date();
  const cert = (days: number) =>
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "/dev/null",
        "-days",
        `${days}`,
        "-subj",
        "/CN=Tenpay.com sign",
      ],
      {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      },
    );

  it("lists every certificate of a file, and names a block that is not one, as the ingress refuses that file", () => {
    const two = `${cert(10)}${cert(20)}`;
    const key = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" });
    const { certificates, errors } = certificatesFromPems([two, `${cert(30)}${key}`], now);
    expect(certificates.map((c) => c.notAfter.getTime() - c.notBefore.getTime())).toEqual(
      [10, 20, 30].map((days) => days * 86_400_000),
    );
    expect(errors).toEqual([
      'WECHATPAY_PLATFORM_CERT_PATHS file 2: PEM block 2 of 2 is a "PRIVATE KEY", not a certificate (the ingress refuses this file)',
    ]);
  });
});
