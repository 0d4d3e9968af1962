import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig, parseDotenv } from "@wpn/config";
import { generateSimKeys } from "@wpn/sim/keys";
import { testRsaKeyPair } from "@wpn/testing";
import { afterAll, describe, expect, it } from "vitest";
import { developmentSettings, ensureDevelopmentEnv, mergeDevelopmentEnv } from "../scripts/dev-env.ts";

// `npm start`'s development .env. The README says every setting can be a line in .env, and .env.example says
// "Copy to .env": an engineer who writes .env first with a few overrides must still get the development merchant
// (it used to be skipped whenever .env existed: `configuration error: WECHATPAY_MCHID is required`).
const dir = mkdtempSync(join(tmpdir(), "wpn-dev-env-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * A keys folder as `npm start` writes it (developmentSettings calls generateSimKeys), for tests that need one to be
 * there rather than its creation; its RSA pairs are the run's shared ones (@wpn/testing's testRsaKeyPair).
 */
function writeKeysFolder(keysDir: string): void {
  generateSimKeys(keysDir, { keyPairs: { publicKey: testRsaKeyPair(), certificate: testRsaKeyPair() } });
}

const development = [
  "# keys",
  "WECHATPAY_MCHID=1900000109",
  "WECHATPAY_APIV3_KEY=0123456789abcdef0123456789abcdef",
  "DASHBOARD_USERS=admin:operator:hash",
  "# This machine only",
  "HOST=127.0.0.1",
].join("\n");

// The reviewers' reproduction: a .env with only services and ports, written before the first `npm start`.
const overrides =
  "DATABASE_URL=postgresql://postgres@127.0.0.1:5432/review_docs_2\nREDIS_URL=redis://127.0.0.1:6391\nPORT=3310\nDASHBOARD_PORT=3311\nWORKER_HEALTH_PORT=3312\n";

describe("mergeDevelopmentEnv", () => {
  it("writes the development settings when there is no .env", () => {
    const merged = mergeDevelopmentEnv(undefined, development);
    expect(merged?.added).toEqual(["WECHATPAY_MCHID", "WECHATPAY_APIV3_KEY", "DASHBOARD_USERS", "HOST"]);
    expect(merged?.text).toMatch(/^# Development settings written by `npm start` on first run/);
    expect(merged?.text.endsWith(`${development}\n`)).toBe(true);
  });

  it("completes a .env that configures no merchant, keeping its lines as they are", () => {
    const merged = mergeDevelopmentEnv(overrides, development);
    expect(merged?.added).toEqual(["WECHATPAY_MCHID", "WECHATPAY_APIV3_KEY", "DASHBOARD_USERS", "HOST"]);
    expect(merged?.text.startsWith(overrides)).toBe(true);
    const env = parseDotenv(merged?.text ?? "");
    expect(env.DATABASE_URL).toBe("postgresql://postgres@127.0.0.1:5432/review_docs_2");
    expect(env.PORT).toBe("3310");
    expect(env.WECHATPAY_MCHID).toBe("1900000109");
    expect(env.HOST).toBe("127.0.0.1");
  });

  it("adds no name the .env sets, not even one set to an empty value, nor that name's comment", () => {
    const merged = mergeDevelopmentEnv("HOST=0.0.0.0\nDASHBOARD_USERS=\n", development);
    expect(merged?.added).toEqual(["WECHATPAY_MCHID", "WECHATPAY_APIV3_KEY"]);
    expect(merged?.text).not.toContain("This machine only");
    expect(merged?.text.match(/^HOST=/gm)).toHaveLength(1);
    expect(merged?.text.match(/^DASHBOARD_USERS=/gm)).toHaveLength(1);
    expect(parseDotenv(merged?.text ?? "").HOST).toBe("0.0.0.0");
  });

  it("leaves a .env that sets WECHATPAY_MCHID alone", () => {
    expect(mergeDevelopmentEnv("WECHATPAY_MCHID=1230000109\n", development)).toBeUndefined();
    expect(mergeDevelopmentEnv("# mine\nexport WECHATPAY_MCHID=1230000109", development)).toBeUndefined();
  });

  it("appends after a last line without newline, and to an empty file without blank lines first", () => {
    expect(mergeDevelopmentEnv("PORT=3310", development)?.text).toMatch(/^PORT=3310\n\n# Development settings added/);
    expect(mergeDevelopmentEnv("", development)?.text).toMatch(/^# Development settings added/);
  });
});

describe("ensureDevelopmentEnv", () => {
  it("completes an existing .env into one the apps start with, mode 0600", async () => {
    const envFile = join(dir, "overrides.env");
    writeFileSync(envFile, overrides);
    chmodSync(envFile, 0o644);
    writeKeysFolder(join(dir, "keys"));
    const development = async () => (await developmentSettings(join(dir, "keys"), "pw")).text;
    const outcome = await ensureDevelopmentEnv(envFile, development, {});
    const added = "added" in outcome ? outcome.added : [];
    expect(added).toContain("WECHATPAY_MCHID");
    expect(added).toContain("WECHATPAY_PUBLIC_KEY_PATH");
    expect(added).not.toContain("PORT");
    expect(statSync(envFile).mode & 0o777).toBe(0o600);
    const config = loadConfig(parseDotenv(readFileSync(envFile, "utf8")));
    expect(config.WECHATPAY_MCHID).toBe("1900000109");
    expect(config.PORT).toBe(3310);
    expect(config.DATABASE_URL).toBe("postgresql://postgres@127.0.0.1:5432/review_docs_2");
    expect(config.HOST).toBe("127.0.0.1");
  });

  it("writes a new .env with mode 0600", async () => {
    const envFile = join(dir, "new.env");
    const outcome = await ensureDevelopmentEnv(envFile, async () => development, {});
    expect("added" in outcome && outcome.added).toHaveLength(4);
    expect(statSync(envFile).mode & 0o777).toBe(0o600);
  });

  it("neither creates keys nor touches a .env that configures the merchant", async () => {
    const envFile = join(dir, "merchant.env");
    const mine = "WECHATPAY_MCHID=1230000109\nPORT=3310\n";
    writeFileSync(envFile, mine);
    chmodSync(envFile, 0o644);
    const outcome = await ensureDevelopmentEnv(
      envFile,
      () => {
        throw new Error("development settings created for a configured merchant");
      },
      {},
    );
    expect(outcome).toEqual({ configuredBy: ".env", mchid: "1230000109" });
    expect(readFileSync(envFile, "utf8")).toBe(mine);
    expect(statSync(envFile).mode & 0o777).toBe(0o644);
  });

  // A merchant configured by the real environment (systemd's EnvironmentFile, a container's env) with no .env: the
  // development .env used to be written anyway — the simulator's APIv2 key and certificate became the real
  // merchant's (an APIv2 payment signed with the simulator's key applied to a real order), with an admin login.
  it("writes nothing, and creates no keys, when the environment sets WECHATPAY_MCHID", async () => {
    const refuse = () => {
      throw new Error("development settings created for a merchant the environment configures");
    };
    const absent = join(dir, "absent.env");
    expect(await ensureDevelopmentEnv(absent, refuse, { WECHATPAY_MCHID: "1230000109" })).toEqual({
      configuredBy: "environment",
      mchid: "1230000109",
    });
    expect(existsSync(absent)).toBe(false);

    const partial = join(dir, "partial.env");
    writeFileSync(partial, overrides);
    const outcome = await ensureDevelopmentEnv(partial, refuse, { WECHATPAY_MCHID: "1230000109" });
    expect(outcome).toEqual({ configuredBy: "environment", mchid: "1230000109" });
    expect(readFileSync(partial, "utf8")).toBe(overrides);
  });

  it("still writes the development .env when neither the environment nor .env sets WECHATPAY_MCHID", async () => {
    const envFile = join(dir, "fresh.env");
    const outcome = await ensureDevelopmentEnv(envFile, async () => development, { PATH: "/usr/bin", HOME: "/root" });
    expect(outcome).toEqual({ added: ["WECHATPAY_MCHID", "WECHATPAY_APIV3_KEY", "DASHBOARD_USERS", "HOST"] });
  });

  // A .env that is a directory (Docker's bind mount of a missing file) or that this user may not read: the README's
  // one line and status 78, as the apps print it — `npm start` printed Node's EISDIR stack trace and exited 1.
  it("refuses a .env it cannot read with the apps' ConfigError, naming the file and the cause, creating nothing", async () => {
    const refuse = () => {
      throw new Error("development settings created beside a .env that could not be read");
    };
    const directory = join(dir, "directory.env");
    mkdirSync(directory);
    const refused = ensureDevelopmentEnv(directory, refuse, { PATH: "/usr/bin" });
    await expect(refused).rejects.toBeInstanceOf(ConfigError);
    await expect(refused).rejects.toThrow(`.env file ${directory} cannot be read (EISDIR)`);
  });
});

// A .env deleted while .dev/keys is kept (to start over with a fresh login, say): `npm start` wrote new keys over the
// old ones, and the notifications still queued — encrypted with the old APIv3 key by the simulator — could no longer be
// opened by the workers, which dead-lettered them. The keys are kept; only the .env lines are written again.
describe("developmentSettings", () => {
  it("creates the keys once, then keeps them: the same APIv3 key, certificate and files", async () => {
    const keysDir = join(dir, "kept-keys");
    const files = () =>
      ["env", "wechatpay_public_key.pem", "platform_cert.pem"].map((f) => readFileSync(join(keysDir, f)));
    const first = await developmentSettings(keysDir, "pw");
    const created = files();
    const second = await developmentSettings(keysDir, "another password");
    expect(files()).toEqual(created);
    expect([first.keys, second.keys]).toEqual(["created", "kept"]);
    const [before, after] = [parseDotenv(first.text), parseDotenv(second.text)];
    for (const name of ["WECHATPAY_APIV3_KEY", "WECHATPAY_APIV2_KEY", "WECHATPAY_PUBLIC_KEY_ID"]) {
      expect(after[name], name).toBe(before[name]);
    }
    // The login is the new one: only the keys are kept.
    expect(after.DASHBOARD_USERS).not.toBe(before.DASHBOARD_USERS);
  });

  // The folder's env file names its key files by absolute path: copied into .env as written, the settings of a checkout
  // moved or renamed since pointed into the old place (configuration error: … does not exist), or a copied checkout's
  // into the other one.
  it("points the key-file settings at the kept folder, wherever it is now", async () => {
    const checkout = join(dir, "checkout-a");
    mkdirSync(checkout);
    writeKeysFolder(join(checkout, ".dev", "keys"));
    const moved = join(dir, "checkout-b");
    renameSync(checkout, moved);
    const keysDir = join(moved, ".dev", "keys");
    const kept = await developmentSettings(keysDir, "pw");
    expect(kept.keys).toBe("kept");
    const settings = parseDotenv(kept.text);
    expect({
      publicKey: settings.WECHATPAY_PUBLIC_KEY_PATH,
      certificates: settings.WECHATPAY_PLATFORM_CERT_PATHS,
      simPublicKey: settings.WECHATPAY_SIM_PUBLIC_KEY_PRIVATE_PATH,
      simCertificate: settings.WECHATPAY_SIM_PLATFORM_CERT_PRIVATE_PATH,
    }).toEqual({
      publicKey: join(keysDir, "wechatpay_public_key.pem"),
      certificates: join(keysDir, "platform_cert.pem"),
      simPublicKey: join(keysDir, "wechatpay_public_key.private.pem"),
      simCertificate: join(keysDir, "platform_cert.private.pem"),
    });
    expect(() => loadConfig(settings, { verifiesApiV3Signatures: true })).not.toThrow();
  });

  it("refuses, naming the problem, a keys folder it cannot use, rather than writing over it", async () => {
    const keysDir = join(dir, "broken-keys");
    writeKeysFolder(keysDir);
    rmSync(join(keysDir, "platform_cert.pem"));
    await expect(developmentSettings(keysDir, "pw")).rejects.toThrow(
      /^the development keys in .*broken-keys cannot be used \(cannot read platform certificate .*\); notifications still queued were made with them: restore the file, or move the folder away to have new keys written$/,
    );
    expect(existsSync(join(keysDir, "platform_cert.pem"))).toBe(false);
  });
});
