import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  CERTIFICATE_VALIDITY_TOLERANCE_MS,
  certificateValidAt,
  KeyStore,
  loadCertificate,
  loadCertificates,
  loadPrivateKey,
  loadPublicKey,
  WechatPayError,
} from "../src/index.ts";
import { codeOf, platformCert, rsaKeyPair } from "./support/keys.ts";
import { vectors } from "./support/vectors.ts";
import { createCertificatePem } from "./support/x509.ts";

const rsa = rsaKeyPair();
const pkcs1Public = rsa.publicKey.export({ type: "pkcs1", format: "pem" }).toString();
const pkcs1Private = rsa.privateKey.export({ type: "pkcs1", format: "pem" }).toString();
const encryptedPrivate = rsa.privateKey
  .export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "secret" })
  .toString();
const ec = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
const ecPublic = ec.publicKey.export({ type: "spki", format: "pem" }).toString();
const small = generateKeyPairSync("rsa", { modulusLength: 1024 });
const smallPublic = small.publicKey.export({ type: "spki", format: "pem" }).toString();
const cert = platformCert("5157F09EFDC096DE15EBE81A47057A7232F1B8E1", { keys: rsa });

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(WechatPayError);
    return `${(e as WechatPayError).code}: ${(e as Error).message}`;
  }
  throw new Error("expected a throw");
}

describe("loadPublicKey", () => {
  it("accepts SPKI and PKCS#1, string or Buffer", () => {
    expect(loadPublicKey(rsa.publicPem).equals(rsa.publicKey)).toBe(true);
    expect(loadPublicKey(Buffer.from(rsa.publicPem)).equals(rsa.publicKey)).toBe(true);
    expect(loadPublicKey(pkcs1Public).equals(rsa.publicKey)).toBe(true);
    expect(loadPublicKey(`Bag Attributes: ignored\n${rsa.publicPem}`).type).toBe("public");
  });

  it("refuses certificates, private keys and garbage with a clear KEY_INVALID", () => {
    expect(messageOf(() => loadPublicKey(cert.pem))).toMatch(
      /^KEY_INVALID: public key: expected PUBLIC KEY or RSA PUBLIC KEY, got a "CERTIFICATE"/,
    );
    expect(messageOf(() => loadPublicKey(rsa.privatePem))).toMatch(/got a "PRIVATE KEY"/);
    expect(messageOf(() => loadPublicKey("hello"))).toMatch(/found 0/);
    expect(messageOf(() => loadPublicKey(rsa.publicPem + rsa.publicPem))).toMatch(/found 2/);
    expect(messageOf(() => loadPublicKey("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"))).toMatch(
      /could not be parsed/,
    );
    expect(messageOf(() => loadPublicKey(ecPublic))).toMatch(/expected an RSA key, got ec/);
    expect(messageOf(() => loadPublicKey(smallPublic))).toMatch(/1024 bits, at least 2048/);
    expect(messageOf(() => loadPublicKey(42 as unknown as string))).toMatch(/expected PEM text/);
  });

  it("says so when a PEM's line breaks are written as \\n escapes (an env file's, or SQL's '…\\n…')", () => {
    // Such a key file or Merchant column was refused as "found 0" PEM blocks, with nothing to say why.
    const hint = /found 0: its line breaks are written as \\n escapes; write them as real line breaks$/;
    const escaped = (pem: string) => pem.replaceAll("\n", "\\n");
    expect(messageOf(() => loadPublicKey(escaped(rsa.publicPem)))).toMatch(hint);
    expect(messageOf(() => loadPrivateKey(escaped(rsa.privatePem)))).toMatch(hint);
    expect(messageOf(() => loadCertificates(escaped(cert.pem)))).toMatch(hint);
    expect(messageOf(() => loadPublicKey("hello"))).toMatch(/found 0$/);
  });
});

describe("loadPrivateKey", () => {
  it("accepts PKCS#8 and PKCS#1", () => {
    expect(loadPrivateKey(rsa.privatePem).type).toBe("private");
    expect(loadPrivateKey(pkcs1Private).type).toBe("private");
  });
  it("refuses public keys, certificates, encrypted keys and broken PEM", () => {
    expect(codeOf(() => loadPrivateKey(rsa.publicPem))).toBe("KEY_INVALID");
    expect(codeOf(() => loadPrivateKey(cert.pem))).toBe("KEY_INVALID");
    expect(messageOf(() => loadPrivateKey(encryptedPrivate))).toMatch(/"ENCRYPTED PRIVATE KEY"/);
    expect(messageOf(() => loadPrivateKey("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"))).toMatch(
      /could not be parsed/,
    );
    const ecPrivate = ec.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    expect(messageOf(() => loadPrivateKey(ecPrivate))).toMatch(/expected an RSA key/);
  });
});

describe("loadCertificate", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("reads serial (upper-case hex), validity and key", () => {
    const loaded = loadCertificate(cert.pem);
    expect(loaded.serial).toBe("5157F09EFDC096DE15EBE81A47057A7232F1B8E1");
    expect(loaded.publicKey.equals(rsa.publicKey)).toBe(true);
    expect(loaded.notAfter.getTime()).toBeGreaterThan(loaded.notBefore.getTime());
    expect(loaded.pem).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    expect(loadCertificate(vectors.V1.certificate).notAfter.toISOString()).toBe("2031-04-25T08:55:23.000Z");
  });

  it("handles GeneralizedTime dates (2050 and later)", () => {
    const pem = createCertificatePem({
      serialHex: "01",
      publicKey: rsa.publicKey,
      issuerPrivateKey: rsa.privateKey,
      notBefore: new Date("2049-12-31T00:00:00Z"),
      notAfter: new Date("2051-01-01T00:00:00Z"),
    });
    expect(loadCertificate(pem).notAfter.toISOString()).toBe("2051-01-01T00:00:00.000Z");
  });

  it("refuses keys, broken PEM, non-RSA certificates and unreadable dates", () => {
    expect(messageOf(() => loadCertificate(rsa.publicPem))).toMatch(/expected CERTIFICATE, got a "PUBLIC KEY"/);
    expect(messageOf(() => loadCertificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"))).toMatch(
      /could not be parsed/,
    );
    const ecCert = createCertificatePem({
      serialHex: "02",
      publicKey: ec.publicKey,
      issuerPrivateKey: rsa.privateKey,
      notBefore: new Date("2024-01-01T00:00:00Z"),
      notAfter: new Date("2030-01-01T00:00:00Z"),
    });
    expect(messageOf(() => loadCertificate(ecCert))).toMatch(/expected an RSA key, got ec/);
    vi.spyOn(X509Certificate.prototype, "validTo", "get").mockReturnValue("not a date");
    expect(messageOf(() => loadCertificate(cert.pem))).toMatch(/unreadable notAfter "not a date"/);
  });
});

describe("KeyStore", () => {
  const now = new Date();
  const PUB = "PUB_KEY_ID_0000000000000024101100397200000006";

  it("holds public keys and certificates at the same time (WeChat's 7-day switch)", () => {
    const store = new KeyStore();
    const pub = rsaKeyPair();
    store.addPublicKey(PUB, pub.publicPem);
    expect(store.addCertificate(cert.pem)).toBe(cert.serial);
    expect(store.resolve(PUB, now).equals(pub.publicKey)).toBe(true);
    expect(store.resolve(cert.serial, now).equals(rsa.publicKey)).toBe(true);
    expect(store.publicKey(PUB)?.equals(pub.publicKey)).toBe(true);
    expect(store.publicKey(cert.serial)).toBeUndefined();
    expect(store.describe()).toEqual([
      { kind: "publicKey", id: PUB },
      {
        kind: "certificate",
        id: cert.serial,
        notBefore: loadCertificate(cert.pem).notBefore,
        notAfter: loadCertificate(cert.pem).notAfter,
      },
    ]);
  });

  it("removes a certificate by serial, in any spelling; public keys stay", () => {
    const store = new KeyStore();
    const pub = rsaKeyPair();
    store.addPublicKey(PUB, pub.publicPem);
    store.addCertificate(cert.pem);
    expect(store.removeCertificate(`00${cert.serial.toLowerCase()}`)).toBe(true);
    expect(store.has(cert.serial)).toBe(false);
    expect(store.removeCertificate(cert.serial)).toBe(false);
    expect(store.removeCertificate(PUB)).toBe(false);
    expect(store.has(PUB)).toBe(true);
  });

  it("compares certificate serials case-insensitively and ignoring leading zeros; public-key ids exactly", () => {
    const store = new KeyStore();
    const withZero = platformCert("0ABCDEF0123456789", { keys: rsa });
    store.addCertificate(loadCertificate(withZero.pem));
    for (const spelling of [
      "0ABCDEF0123456789",
      "0abcdef0123456789",
      "ABCDEF0123456789",
      "000abcdef0123456789",
      " abcdef0123456789 ",
    ]) {
      expect(store.has(spelling)).toBe(true);
      expect(store.resolve(spelling, now).equals(rsa.publicKey)).toBe(true);
    }
    store.addPublicKey(PUB, rsa.publicKey);
    expect(store.has(PUB.toLowerCase())).toBe(false);
    expect(codeOf(() => store.resolve(PUB.toLowerCase(), now))).toBe("SERIAL_UNKNOWN");
    expect(store.has("0")).toBe(false);
  });

  it("a PUB_KEY_ID_ serial for a store of certificates alone is PUBLIC_KEY_NOT_CONFIGURED; beside another public key SERIAL_UNKNOWN", () => {
    const store = new KeyStore();
    store.addCertificate(cert.pem);
    expect(codeOf(() => store.resolve("PUB_KEY_ID_0114232134912410000000000000", now))).toBe(
      "PUBLIC_KEY_NOT_CONFIGURED",
    );
    expect(codeOf(() => store.resolve("5157F09EFDC096DE15EBE81A47057A7232F1B8E2", now))).toBe("SERIAL_UNKNOWN");
    store.addPublicKey("PUB_KEY_ID_0114232134912410000000000001", rsa.publicKey);
    expect(codeOf(() => store.resolve("PUB_KEY_ID_0114232134912410000000000000", now))).toBe("SERIAL_UNKNOWN");
  });

  it("refuses expired and not-yet-valid certificates", () => {
    const store = new KeyStore();
    const expired = platformCert("AA01", { keys: rsa, validFromDays: -30, validForDays: 10 });
    const future = platformCert("AA02", { keys: rsa, validFromDays: 2, validForDays: 10 });
    store.addCertificate(expired.pem);
    store.addCertificate(future.pem);
    expect(messageOf(() => store.resolve("AA01", now))).toMatch(
      /^CERTIFICATE_EXPIRED: platform certificate AA01 expired at /,
    );
    expect(codeOf(() => store.resolve("AA02", now))).toBe("CERTIFICATE_NOT_YET_VALID");
    expect(store.has("AA01")).toBe(true);
  });

  it("allows a minute of clock difference with WeChat either side of a certificate's validity, not more", () => {
    expect(CERTIFICATE_VALIDITY_TOLERANCE_MS).toBe(60_000);
    const store = new KeyStore();
    const { notBefore, notAfter } = loadCertificate(cert.pem);
    store.addCertificate(cert.pem);
    const at = (base: Date, ms: number) => new Date(base.getTime() + ms);
    // A notification WeChat signed just before the retirement (by its clock) arrives a little after it by ours.
    expect(store.resolve(cert.serial, at(notAfter, 60_000)).equals(rsa.publicKey)).toBe(true);
    expect(codeOf(() => store.resolve(cert.serial, at(notAfter, 60_001)))).toBe("CERTIFICATE_EXPIRED");
    expect(store.resolve(cert.serial, at(notBefore, -60_000)).equals(rsa.publicKey)).toBe(true);
    expect(codeOf(() => store.resolve(cert.serial, at(notBefore, -60_001)))).toBe("CERTIFICATE_NOT_YET_VALID");
  });

  it("certificateValidAt, which readiness uses, draws the line exactly where resolve does", () => {
    const loaded = loadCertificate(cert.pem);
    const at = (base: Date, ms: number) => new Date(base.getTime() + ms);
    expect(certificateValidAt(loaded, at(loaded.notAfter, 60_000))).toBe(true);
    expect(certificateValidAt(loaded, at(loaded.notAfter, 60_001))).toBe(false);
    expect(certificateValidAt(loaded, at(loaded.notBefore, -60_000))).toBe(true);
    expect(certificateValidAt(loaded, at(loaded.notBefore, -60_001))).toBe(false);
  });

  it("a re-added serial replaces the old entry", () => {
    const store = new KeyStore();
    const other = rsaKeyPair();
    store.addCertificate(platformCert("BB01", { keys: rsa }).pem);
    store.addCertificate(platformCert("bb01", { keys: other }).pem);
    expect(store.describe()).toHaveLength(1);
    expect(store.resolve("BB01", now).equals(other.publicKey)).toBe(true);
  });

  it("validates public-key ids and key objects", () => {
    const store = new KeyStore();
    expect(messageOf(() => store.addPublicKey("F5765756002FDD77", rsa.publicKey))).toMatch(
      /must look like PUB_KEY_ID_<digits>/,
    );
    expect(codeOf(() => store.addPublicKey("PUB_KEY_ID_", rsa.publicKey))).toBe("KEY_INVALID");
    // An id pasted with whitespace or other junk would load and never equal a Wechatpay-Serial header (every
    // notification 401 SERIAL_UNKNOWN): refused, and the message shows the id as given.
    for (const id of [
      `${PUB} `,
      `${PUB}\n`,
      ` ${PUB}`,
      `${PUB}\r\n`,
      "PUB_KEY_ID_0114 2",
      "PUB_KEY_ID_０１",
      "PUB_KEY_ID_1;x",
    ]) {
      expect(
        messageOf(() => store.addPublicKey(id, rsa.publicKey)),
        JSON.stringify(id),
      ).toContain(JSON.stringify(id));
      expect(
        codeOf(() => store.addPublicKey(id, rsa.publicKey)),
        JSON.stringify(id),
      ).toBe("KEY_INVALID");
    }
    expect(codeOf(() => store.addPublicKey(`PUB_KEY_ID_${"1".repeat(65)}`, rsa.publicKey))).toBe("KEY_INVALID");
    expect(codeOf(() => store.addPublicKey(PUB, rsa.privateKey))).toBe("KEY_INVALID");
    expect(codeOf(() => store.addPublicKey(PUB, cert.pem))).toBe("KEY_INVALID");
    expect(codeOf(() => store.addCertificate(rsa.publicPem))).toBe("KEY_INVALID");
    expect(store.describe()).toEqual([]);
  });
});
