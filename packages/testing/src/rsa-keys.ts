import { createPrivateKey, createPublicKey, generateKeyPair, generateKeyPairSync, type KeyObject } from "node:crypto";
import { promisify } from "node:util";

/**
 * RSA-2048 key pairs for tests, made once per test run. Generating one takes 0.1–0.3 s of CPU on an idle core (over a
 * second on a loaded one), and the suite used to make a couple of hundred: each test merchant, each test certificate,
 * each simulator account had fresh ones. vitest.config.ts's global setup (global-setup.ts) makes RSA_TEST_KEY_COUNT
 * pairs and provides them to every test file; the setup file (setup-file.ts) hands them to `testRsaKeyPair`.
 *
 * Within one test file every pair drawn is distinct, as freshly generated ones were: the draws restart at the first
 * shared pair for each file, and a file that draws more than the run made gets freshly generated pairs beyond them.
 * Different files get the same pairs, which is harmless: each file has its own schema, queue prefix and files.
 */
export interface RsaKeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** What crosses from the global setup to the test files (provide/inject takes serializable values only). */
export interface RsaKeyPem {
  /** PKCS#8 PEM. */
  privatePem: string;
  /** SPKI PEM. */
  publicPem: string;
}

/** The pairs a run makes: what any file draws (most 1–7; apps/ingress's registry and certificate-download 20–22). */
export const RSA_TEST_KEY_COUNT = 24;

declare module "vitest" {
  export interface ProvidedContext {
    rsaTestKeys: RsaKeyPem[];
  }
}

const generateKeyPairAsync = promisify(generateKeyPair);

/** `count` fresh pairs, generated concurrently on libuv's thread pool (as many at a time as there are cores). */
export async function generateRsaKeyPems(count: number): Promise<RsaKeyPem[]> {
  return Promise.all(
    Array.from({ length: count }, () =>
      generateKeyPairAsync("rsa", {
        modulusLength: 2048,
        publicKeyEncoding: { type: "spki", format: "pem" },
        privateKeyEncoding: { type: "pkcs8", format: "pem" },
      }).then(({ privateKey, publicKey }) => ({ privatePem: privateKey, publicPem: publicKey })),
    ),
  );
}

/** The run's pairs (each parsed on its first draw), and how many the current test file has drawn. */
let shared: { pems: readonly RsaKeyPem[]; pairs: (RsaKeyPair | undefined)[] } | undefined;
let drawn = 0;

/** Called by the setup file before each test file: that file's draws start at the run's first pair. */
export function useRsaTestKeys(pems: readonly RsaKeyPem[]): void {
  shared = { pems, pairs: [] };
  drawn = 0;
}

/**
 * The next RSA-2048 pair for the current test file: one of the run's shared pairs, or a fresh one past them (and
 * outside a vitest run, e.g. in the benchmarks, where there is no run to share with).
 */
export function testRsaKeyPair(): RsaKeyPair {
  const index = drawn++;
  const pem = shared?.pems[index];
  if (!shared || !pem) return generateKeyPairSync("rsa", { modulusLength: 2048 });
  let pair = shared.pairs[index];
  if (!pair) {
    pair = { privateKey: createPrivateKey(pem.privatePem), publicKey: createPublicKey(pem.publicPem) };
    shared.pairs[index] = pair;
  }
  return pair;
}
