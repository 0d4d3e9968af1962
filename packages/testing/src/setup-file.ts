import { inject } from "vitest";
import { useRsaTestKeys } from "./rsa-keys.ts";

// vitest's setup file (vitest.config.ts), run before each test file: the file's RSA key pairs come from the run's
// shared ones, starting at the first (rsa-keys.ts).
useRsaTestKeys(inject("rsaTestKeys"));
