import type { TestProject } from "vitest/node";
import { generateRsaKeyPems, RSA_TEST_KEY_COUNT } from "./rsa-keys.ts";

/**
 * vitest's global setup (vitest.config.ts): makes the run's shared RSA key pairs (rsa-keys.ts) once, in the main
 * process, before any test worker starts. vitest calls it for the root project and again for each project, which
 * inherits the root's settings; only the root's call makes the keys, and every project's test files receive what the
 * root provides.
 */
export default async function setup(project: TestProject): Promise<void> {
  if (!project.isRootProject()) return;
  project.provide("rsaTestKeys", await generateRsaKeyPems(RSA_TEST_KEY_COUNT));
}
