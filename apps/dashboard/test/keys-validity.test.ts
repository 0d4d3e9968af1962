import { generateKeyPairSync, randomBytes, X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCertificatePem } from "../../../packages/wechatpay/test/support/x509.ts";
import { formatTime } from "../src/views/format.ts";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { type Client, loggedIn } from "./support/client.ts";

/**
 * The Keys page judges a PlatformCertificate row as the ingress does: the X.509 validity narrowed by the row's
 * notBefore/notAfter (`narrowValidity`), then `certificateValidAt` (a minute of tolerance either side), so the page
 * never shows valid what the ingress refuses, nor expired what it still accepts. Explicit clock, three days ahead of
 * the real one, so that a certificate issued for one day is past its X.509 notAfter.
 */

const DAY_MS = 86_400_000;
const clock = Date.now() + 3 * DAY_MS;
let d: TestDashboard;
let viewer: Client;

/** One key for every certificate here: the page reads serials and dates, never which key signed. */
const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });

/**
 * A self-signed certificate valid for `days` from the real now, with its serial and X.509 notAfter, written by
 * @wpn/wechatpay's test DER writer (as the ingress's `datedPlatformCertificate`), not the openssl CLI.
 */
function certificate(name: string, days: number): { pem: string; serial: string; notAfter: Date } {
  const now = Date.now();
  const pem = createCertificatePem({
    serialHex: randomBytes(16).toString("hex").replace(/^./, "1"),
    publicKey,
    issuerPrivateKey: privateKey,
    commonName: name,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + days * DAY_MS),
  });
  const x509 = new X509Certificate(pem);
  return { pem, serial: x509.serialNumber.toUpperCase(), notAfter: new Date(x509.validTo) };
}

const years = certificate("years", 3650);
const retired = certificate("retired", 3650);
const lapsed = certificate("lapsed", 1);
// Row columns: `retired` retired by WeChat two days ago; `years` 30 s past its recorded expire_time (within the
// ingress's minute); `lapsed` past its X.509 notAfter though the row says a year more.
const rowNotAfter = {
  retired: new Date(clock - 2 * DAY_MS),
  years: new Date(clock - 30_000),
  lapsed: new Date(clock + 365 * DAY_MS),
};
// A row whose serial column names another certificate than its PEM holds: the ingress refuses it (SERIAL_MISMATCH).
const mismatchedSerial = "4A".repeat(16);
const rows = [
  { ...retired, rowNotAfter: rowNotAfter.retired },
  { ...years, rowNotAfter: rowNotAfter.years },
  { ...lapsed, rowNotAfter: rowNotAfter.lapsed },
  { ...certificate("mismatched", 3650), serial: mismatchedSerial, rowNotAfter: new Date(clock + 365 * DAY_MS) },
];

beforeAll(async () => {
  d = await startDashboard("dash_keys_validity", { now: () => new Date(clock) });
  viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
  await d.database.db.prisma.merchant.create({
    data: {
      mchid: "1900000901",
      appid: "wx-validity",
      apiV3Key: "SECRET-APIV3-KEY-SECRET-APIV3-KE",
      certificates: {
        create: rows.map((r) => ({
          serial: r.serial,
          pem: r.pem,
          notBefore: new Date("2020-01-01Z"),
          notAfter: r.rowNotAfter,
        })),
      },
    },
  });
});
afterAll(async () => {
  await d?.close();
});

/** The Keys page's table row for `serial`. */
async function keysRow(serial: string): Promise<string> {
  const page = await viewer.get("/keys");
  expect(page.statusCode).toBe(200);
  const row = new RegExp(`<tr>\\s*<td class="mono">${serial}</td>[\\s\\S]*?</tr>`).exec(page.body);
  expect(row, `no row for ${serial}`).not.toBeNull();
  return row?.[0] ?? "";
}

describe("Keys page: a PlatformCertificate row judged as the ingress judges it", () => {
  it("calls a certificate expired at the row's notAfter though its X.509 notAfter is years away", async () => {
    const row = await keysRow(retired.serial);
    expect(row).toContain(formatTime(rowNotAfter.retired));
    expect(row).toContain('<span class="badge bad">expired 2 d ago</span>');
  });

  it("still accepts one 30 s past its notAfter, within the ingress's minute of tolerance", async () => {
    const row = await keysRow(years.serial);
    expect(row).toContain(formatTime(rowNotAfter.years));
    expect(row).toContain('<span class="badge warn">0</span>');
    expect(row).not.toContain("expired");
  });

  it("calls one past its X.509 notAfter expired, and shows that date, whatever later notAfter its row records", async () => {
    const row = await keysRow(lapsed.serial);
    expect(row).toContain(formatTime(lapsed.notAfter));
    expect(row).not.toContain(formatTime(rowNotAfter.lapsed));
    expect(row).toMatch(/<span class="badge bad">expired [12] d ago<\/span>/);
  });

  it("shows a row the ingress refuses (CERTIFICATE_SERIAL_MISMATCH) as refused, without its columns' dates", async () => {
    const row = await keysRow(mismatchedSerial);
    expect(row).toContain("refused");
    expect(row).not.toContain(formatTime(new Date(clock + 365 * DAY_MS)));
    expect(row).not.toContain(formatTime(new Date("2020-01-01Z")));
  });

  it("the overview names the lapsed certificate as expired too", async () => {
    const body = (await viewer.get("/")).body;
    expect(body).toContain(`platform certificate <code>${lapsed.serial}</code> has expired`);
    expect(body).toContain(`platform certificate <code>${retired.serial}</code> has expired`);
  });
});
