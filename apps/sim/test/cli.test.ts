import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createTestDatabase, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { COMMANDS } from "../src/cli.ts";
import { findOrder } from "../src/journal.ts";
import { runSim, tempKeys } from "./support/cli.ts";
import { type Receiver, startReceiver } from "./support/receiver.ts";

const repo = fileURLToPath(new URL("../../..", import.meta.url));
const temp = tempKeys();
let receiver: Receiver;
let database: TestDatabase;
/** `pay` as the test merchant to the receiver's APIv3 route, with `options` added. */
const pay = (...options: string[]) => runSim(["pay", "--keys", temp.keys.dir, "--url", receiver.v3, ...options]);

beforeAll(async () => {
  receiver = await startReceiver({ keys: temp.keys });
  database = await createTestDatabase("sim_cli");
});
afterAll(async () => {
  await receiver.close();
  await database.drop();
  temp.cleanup();
});

describe("command line", () => {
  it("prints help for every command with usage and exit codes", async () => {
    expect(COMMANDS.map((c) => c.name)).toEqual(["keys", "pay", "refund", "close", "load", "scenario", "serve"]);
    for (const c of COMMANDS) {
      const r = await runSim([c.name, "--help"]);
      expect(r.code, c.name).toBe(0);
      expect(r.stdout).toContain(`wechatpay-sim ${c.name}`);
      expect(r.stdout).toContain("Usage:");
      expect(r.stdout).toContain("Exit codes:");
      for (const option of Object.keys(c.options)) expect(r.stdout, `${c.name} --${option}`).toContain(`--${option}`);
    }
    const main = await runSim(["--help"]);
    expect(main.code).toBe(0);
    for (const c of COMMANDS) expect(main.stdout).toContain(c.name);
    expect((await runSim(["help", "pay"])).stdout).toContain("wechatpay-sim pay");
    expect((await runSim([])).code).toBe(2);
  });

  it("no command is a usage error on stderr that says so, not the help on stdout", async () => {
    const r = await runSim([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(
      /^wechatpay-sim: no command given \(commands: keys, pay, refund, close, load, scenario, serve\)\n/,
    );
    expect(r.stderr).toContain("Run `wechatpay-sim --help` for usage.");
  });

  it("usage errors exit 2 and name the flag", async () => {
    const cases: [string[], string][] = [
      [["frobnicate"], "unknown command"],
      [["pay", "--keys", temp.keys.dir, "--bogus"], "--bogus"],
      [["pay", "--keys", temp.keys.dir, "--amount", "12.5"], "--amount"],
      [["pay", "--keys", temp.keys.dir, "--amount"], "--amount"],
      [["pay", "--keys", temp.keys.dir, "--url", "ftp://x"], "--url"],
      [["pay", "--keys", temp.keys.dir, "--sign-type", "SHA1", "--v2"], "--sign-type"],
      [["pay", "--keys", temp.keys.dir, "--sign-type", "MD5"], "--v2"],
      [["pay", "--keys", temp.keys.dir, "--time-scale", "0"], "--time-scale"],
      [["pay", "--keys", temp.keys.dir, "--signer", "nobody"], "--signer"],
      [["pay", "--keys", temp.keys.dir, "--mchid", "x1"], "--mchid"],
      [["pay", "--keys", "/nonexistent/keys"], "--keys"],
      [["refund", "--keys", "/nonexistent/keys", "--amount", "x"], "--amount"],
      [["pay", "--no-retry=yes", "--keys", temp.keys.dir], "--no-retry"],
      [["close", "--keys", temp.keys.dir], "--out-trade-no"],
      [["scenario"], "scenario NAME is required"],
    ];
    for (const [args, text] of cases) {
      const r = await runSim(args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr, args.join(" ")).toContain(text);
    }
  });

  it("refuses options it would ignore: --signer with --v2, --time-scale with --no-retry, --skus/--stock with --existing", async () => {
    const k = ["--keys", temp.keys.dir, "--url", receiver.v3, "--no-retry"];
    const cases: [string[], string][] = [
      [["pay", ...k, "--v2", "--signer", "certificate"], "--signer picks the APIv3 signing key"],
      [
        ["pay", ...k, "--time-scale", "0.001"],
        "--time-scale scales the redelivery schedule, which --no-retry turns off",
      ],
      [["refund", ...k, "--out-trade-no", "SIGNER-1", "--amount", "100", "--time-scale", "0.001"], "--time-scale"],
      [["close", ...k, "--out-trade-no", "SIGNER-1", "--then-pay", "--v2", "--signer", "certificate"], "--signer"],
      [
        ["close", "--keys", temp.keys.dir, "--out-trade-no", "IGNORED-1", "--v2"],
        "--v2 is for the payment of --then-pay",
      ],
      [
        ["close", "--keys", temp.keys.dir, "--out-trade-no", "IGNORED-1", "--url", receiver.v3],
        "--url is for the payment",
      ],
      [["close", "--keys", temp.keys.dir, "--out-trade-no", "IGNORED-1", "--signer", "certificate"], "--signer is for"],
      [
        ["load", "--keys", temp.keys.dir, "--url", receiver.v3, "--count", "1", "--v2", "--signer", "certificate"],
        "--signer",
      ],
      [
        [
          "load",
          "--keys",
          temp.keys.dir,
          "--url",
          receiver.v3,
          "--count",
          "1",
          "--existing",
          "--stock",
          "7",
          "--database-url",
          database.url,
        ],
        "--skus/--stock seed new orders",
      ],
      [
        [
          "load",
          "--keys",
          temp.keys.dir,
          "--url",
          receiver.v3,
          "--count",
          "1",
          "--existing",
          "--skus",
          "3",
          "--database-url",
          database.url,
        ],
        "--existing",
      ],
    ];
    const before = receiver.received.length;
    for (const [args, text] of cases) {
      const r = await runSim(args);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(2);
      expect(r.stderr, args.join(" ")).toContain(text);
    }
    expect(receiver.received.length).toBe(before);
  });

  it("a journal that cannot be read or written is named in one line, exit 4, not a stack trace", async () => {
    const broken = tempKeys();
    try {
      // A directory where the journal file belongs: EISDIR on read and on append, even for root (which a
      // read-only mount, EROFS, or another user's file, EACCES, would not stop here).
      mkdirSync(join(broken.keys.dir, "journal.jsonl"));
      const journal = join(broken.keys.dir, "journal.jsonl");
      const paid = await runSim(["pay", "--keys", broken.keys.dir, "--url", receiver.v3, "--no-retry"]);
      expect(paid.code).toBe(4);
      expect(paid.stderr).toBe(`wechatpay-sim pay: cannot read the journal ${journal} (EISDIR)\n`);
      const before = receiver.received.length;
      const loaded = await runSim(["load", "--keys", broken.keys.dir, "--url", receiver.v3, "--count", "1"]);
      expect(receiver.received.length, "load sent before finding the journal unwritable").toBe(before);
      expect(loaded.code).toBe(4);
      expect(loaded.stderr).toContain(
        `wechatpay-sim load: cannot write the journal ${journal} (EISDIR): the keys folder must be writable`,
      );
      expect(loaded.stderr).not.toMatch(/^\s+at /m);
    } finally {
      broken.cleanup();
    }
  });

  // The apps print an unreadable .env in one line (exit 78); the simulator, which reads it for PORT, DATABASE_URL and
  // WECHATPAY_SIM_KEYS, died of the ConfigError with Node's stack trace and status 1, outside its exit codes.
  it("a .env in the working directory that cannot be read is named in one line, exit 4, not a stack trace", () => {
    const cwd = mkdtempSync(join(tmpdir(), "wpn-sim-env-"));
    try {
      // A directory where the file belongs (Docker's bind mount of a missing file): EISDIR, even for root.
      mkdirSync(join(cwd, ".env"));
      const shim = join(repo, "apps/sim/bin/wechatpay-sim.js");
      const run = spawnSync(
        process.execPath,
        [shim, "pay", "--keys", temp.keys.dir, "--url", receiver.v3, "--no-retry"],
        {
          cwd,
          encoding: "utf8",
        },
      );
      expect(run.stderr).toBe(`wechatpay-sim: .env file ${join(cwd, ".env")} cannot be read (EISDIR)\n`);
      expect(run.status).toBe(4);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  // A DATABASE_URL of the wrong kind from the environment or .env was refused as `--database-url must be …`, naming a
  // flag nobody gave, and quoted whole — its password included — where the apps' own check repeats no part of it.
  it("a database URL of the wrong kind names where it came from, flag or DATABASE_URL, without repeating it", async () => {
    const url = "mysql://shop:s3cret-pw@db.internal/shop";
    const fromEnv = await runSim(["pay", "--keys", temp.keys.dir, "--url", receiver.v3, "--seed"], {
      env: { DATABASE_URL: url },
    });
    expect(fromEnv.code).toBe(2);
    expect(fromEnv.stderr).toContain("DATABASE_URL (environment or .env) must be a postgresql:// (or postgres://) URL");
    expect(fromEnv.stderr).not.toContain("s3cret-pw");
    const fromFlag = await runSim(["load", "--keys", temp.keys.dir, "--url", receiver.v3, "--database-url", url]);
    expect(fromFlag.code).toBe(2);
    expect(fromFlag.stderr).toContain("--database-url must be a postgresql:// (or postgres://) URL");
    expect(fromFlag.stderr).not.toContain("s3cret-pw");
  });

  // A WECHATPAY_SIM_KEYS naming a folder without keys was reported as "no --keys given and <dir> holds no simulator
  // keys: … or set WECHATPAY_SIM_KEYS", advice to set the very variable that named the folder.
  it("a WECHATPAY_SIM_KEYS folder without keys is named as the variable's", async () => {
    const empty = mkdtempSync(join(tmpdir(), "wpn-sim-nokeys-"));
    try {
      const run = await runSim(["pay", "--url", receiver.v3, "--no-retry"], { env: { WECHATPAY_SIM_KEYS: empty } });
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(`WECHATPAY_SIM_KEYS (environment or .env) ${empty} holds no simulator keys`);
      expect(run.stderr).not.toContain("set WECHATPAY_SIM_KEYS");
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it("finds the keys folder from WECHATPAY_SIM_KEYS or .dev/keys when --keys is absent", async () => {
    const viaEnv = await runSim(["pay", "--url", receiver.v3, "--no-retry"], {
      env: { WECHATPAY_SIM_KEYS: temp.keys.dir },
    });
    expect(viaEnv.code, viaEnv.stderr).toBe(0);
    const none = await runSim(["pay", "--url", receiver.v3], { cwd: temp.dir });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain(".dev/keys");
    // Empty is unset, as for PORT and DATABASE_URL (and the apps' settings): `WECHATPAY_SIM_KEYS=` in .env took the
    // working directory itself for the keys folder.
    const empty = await runSim(["pay", "--url", receiver.v3], { cwd: temp.dir, env: { WECHATPAY_SIM_KEYS: "" } });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain(`no --keys given and ${join(temp.dir, ".dev/keys")} holds no simulator keys`);
  });

  it("pay --seed inserts the order with two items before paying it", async () => {
    const r = await pay("--seed", "--database-url", database.url, "--out-trade-no", "CREATE-1", "--amount", "700");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("created order CREATE-1");
    const rows = await database.db.pool.query<{ amount: number; items: string; mchid: string }>(
      `SELECT o."amountTotal" AS amount, o."mchid", count(i."id") AS items FROM "Order" o JOIN "OrderItem" i ON i."orderId" = o."id"
       WHERE o."outTradeNo" = 'CREATE-1' GROUP BY o."id"`,
    );
    expect(rows.rows[0]).toEqual({ amount: 700, items: "2", mchid: temp.keys.mchid });
    const again = await pay("--seed", "--database-url", database.url, "--out-trade-no", "CREATE-1");
    expect(again.stdout).toContain("already exists");
  });

  it("close on an order the journal shows paid says what order queries answer: still SUCCESS, not CLOSED", async () => {
    const paid = await pay("--no-retry", "--out-trade-no", "PAID-THEN-CLOSED-1");
    expect(paid.code, paid.stderr).toBe(0);
    const closed = await runSim(["close", "--keys", temp.keys.dir, "--out-trade-no", "PAID-THEN-CLOSED-1"]);
    expect(closed.code, closed.stderr).toBe(0);
    expect(closed.stdout).toContain("WeChat would refuse to close it (ORDERPAID)");
    expect(closed.stdout).toContain("order queries answer trade_state SUCCESS");
    expect(closed.stdout).not.toContain("trade_state CLOSED");
  });

  it("pay and close read the simulated merchant's order, not another merchant's of the same number", async () => {
    const paid = await pay("--no-retry", "--mchid", "1230000109", "--out-trade-no", "OTHER-PAID-1");
    expect(paid.code, paid.stderr).toBe(0);
    const closed = await runSim(["close", "--keys", temp.keys.dir, "--out-trade-no", "OTHER-PAID-1"]);
    expect(closed.code, closed.stderr).toBe(0);
    expect(closed.stdout).not.toContain("ORDERPAID");
    expect(closed.stdout).toContain("order queries answer trade_state CLOSED");
    const own = await pay("--no-retry", "--out-trade-no", "OTHER-PAID-1");
    expect(own.code, own.stderr).toBe(0);
    expect(own.stdout).not.toContain("already paid in the journal");
  });

  it("an --amount beyond WeChat's int fen (2^31 − 1) is a usage error, not the database's crash", async () => {
    for (const command of ["pay", "close", "refund"]) {
      const r = await runSim([
        command,
        "--keys",
        temp.keys.dir,
        // close sends nothing without --then-pay, and refuses the delivery options then.
        ...(command === "close" ? [] : ["--url", receiver.v3, "--no-retry"]),
        ...(command === "refund" ? [] : ["--seed", "--database-url", database.url]),
        "--out-trade-no",
        "HUGE-1",
        "--amount",
        "2147483648",
      ]);
      expect(r.code, `${command}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain("--amount must be a whole number of fen between 1 and 2147483647, got 2147483648");
    }
    const largest = await pay(
      "--no-retry",
      "--seed",
      "--database-url",
      database.url,
      "--out-trade-no",
      "HUGE-2",
      "--amount",
      "2147483647",
    );
    expect(largest.code, largest.stderr).toBe(0);
  });

  it("pay --seed names the database without its password, given in pg's ?password= either", async () => {
    const password = `pg-pw-${randomBytes(8).toString("hex")}`;
    // The test database lets this machine in without a password: pg sends this one to nobody.
    const url = `${database.url}${database.url.includes("?") ? "&" : "?"}password=${password}`;
    const r = await pay("--seed", "--database-url", url);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/created order \S+ .* in postgresql:\/\/\S*password=\*\*\*/);
    expect(`${r.stdout}${r.stderr}`).not.toContain(password);
  });

  it("close and --seed touch only the simulated merchant's order, not another merchant's of the same number", async () => {
    const other = "1230000109";
    await database.db.pool.query(
      `INSERT INTO "Order" ("outTradeNo", "mchid", "appid", "amountTotal") VALUES ('SHARED-1', $1, 'wxother', 100), ('SHARED-2', $1, 'wxother', 100)`,
      [other],
    );
    const closed = await runSim([
      "close",
      "--keys",
      temp.keys.dir,
      "--out-trade-no",
      "SHARED-1",
      "--database-url",
      database.url,
    ]);
    expect(closed.code, closed.stderr).toBe(0);
    expect(closed.stdout).toContain(`no Order SHARED-1 of merchant ${temp.keys.mchid} in`);
    const seeded = await pay("--no-retry", "--seed", "--database-url", database.url, "--out-trade-no", "SHARED-2");
    expect(seeded.code, seeded.stderr).toBe(0);
    expect(seeded.stdout).toContain("created order SHARED-2");
    const rows = await database.db.pool.query<{ no: string; mchid: string; status: string }>(
      `SELECT "outTradeNo" AS no, "mchid", "status"::text AS status FROM "Order" WHERE "outTradeNo" LIKE 'SHARED-%' ORDER BY 1, 2`,
    );
    expect(rows.rows).toEqual([
      { no: "SHARED-1", mchid: other, status: "NOTPAY" },
      { no: "SHARED-2", mchid: other, status: "NOTPAY" },
      { no: "SHARED-2", mchid: temp.keys.mchid, status: "NOTPAY" },
    ]);
  });

  it("close: journal CLOSED, database row NOTPAY → CLOSED, nothing sent without --then-pay", async () => {
    await database.db.pool.query(
      `INSERT INTO "Order" ("outTradeNo", "mchid", "appid", "amountTotal") VALUES ('CLOSE-1', $1, $2, 100)`,
      [temp.keys.mchid, temp.keys.appid],
    );
    const before = receiver.received.length;
    const closed = await runSim([
      "close",
      "--keys",
      temp.keys.dir,
      "--out-trade-no",
      "CLOSE-1",
      "--database-url",
      database.url,
    ]);
    expect(closed.code, closed.stderr).toBe(0);
    expect(closed.stdout).toContain("WeChat Pay sends no notification when an order is closed");
    expect(closed.stdout).toContain("set Order CLOSE-1 from NOTPAY to CLOSED");
    expect(receiver.received.length).toBe(before);
    const row = await database.db.pool.query(`SELECT "status"::text AS s FROM "Order" WHERE "outTradeNo" = 'CLOSE-1'`);
    expect(row.rows[0]?.s).toBe("CLOSED");
    expect(findOrder(temp.keys.dir, temp.keys.mchid, "CLOSE-1")?.tradeState).toBe("CLOSED");
    const twice = await runSim([
      "close",
      "--keys",
      temp.keys.dir,
      "--out-trade-no",
      "CLOSE-1",
      "--database-url",
      database.url,
    ]);
    expect(twice.stdout).toContain("is CLOSED");
  });

  it("close --seed --then-pay: inserts, closes, then pays the closed order (PAID_AFTER_CLOSE)", async () => {
    const before = receiver.received.length;
    const r = await runSim([
      "close",
      "--keys",
      temp.keys.dir,
      "--url",
      receiver.v3,
      "--out-trade-no",
      "LATE-1",
      "--amount",
      "300",
      "--seed",
      "--database-url",
      database.url,
      "--then-pay",
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain("created order LATE-1");
    expect(r.stdout).toContain("set Order LATE-1 from NOTPAY to CLOSED");
    expect(r.stdout).toContain("PAID_AFTER_CLOSE");
    const row = await database.db.pool.query(`SELECT "status"::text AS s FROM "Order" WHERE "outTradeNo" = 'LATE-1'`);
    expect(row.rows[0]?.s).toBe("CLOSED");
    const event = receiver.received[before]?.event;
    if (event?.kind !== "transaction") throw new Error("expected a payment");
    expect(event.transaction.out_trade_no).toBe("LATE-1");
    expect(event.transaction.amount.total).toBe(300);
    const state = findOrder(temp.keys.dir, temp.keys.mchid, "LATE-1");
    expect(state?.tradeState).toBe("SUCCESS");
    expect(state?.closedAt).toBeDefined();
  });

  it("the bin shim and the root npm script run the CLI", { timeout: 60_000 }, () => {
    const shim = spawnSync(process.execPath, ["apps/sim/bin/wechatpay-sim.js", "pay", "--help"], {
      cwd: repo,
      encoding: "utf8",
    });
    expect(shim.status, shim.stderr).toBe(0);
    expect(shim.stdout).toContain("wechatpay-sim pay");
    const bad = spawnSync(
      process.execPath,
      ["apps/sim/bin/wechatpay-sim.js", "pay", "--amount", "x", "--keys", temp.keys.dir],
      {
        cwd: repo,
        encoding: "utf8",
      },
    );
    expect(bad.status).toBe(2);
    const direct = spawnSync(process.execPath, ["--import", "tsx", "apps/sim/src/cli.ts", "keys", "--help"], {
      cwd: repo,
      encoding: "utf8",
    });
    expect(direct.status, direct.stderr).toBe(0);
    expect(direct.stdout).toContain("wechatpay-sim keys");
    if (existsSync(`${repo}/node_modules/.bin/wechatpay-sim`)) {
      const linked = spawnSync(`${repo}/node_modules/.bin/wechatpay-sim`, ["--help"], { cwd: repo, encoding: "utf8" });
      expect(linked.status, linked.stderr).toBe(0);
    }
  });
});
