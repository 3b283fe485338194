import { z } from "zod";
import { fromHex, sha256 } from "../bytes.js";

/**
 * API keys (README "Auth"): `{"key": "<secret>" | "sha256:<hex>", "prefixes": [...], "admin": bool}`.
 * Secrets are kept only as SHA-256 digests; a presented key is hashed and compared with
 * every configured digest in constant time, so neither timing nor logs reveal a key.
 */
export interface ApiKey {
  /** Lock-name prefixes this key may use; "" allows every name. */
  readonly prefixes: readonly string[];
  readonly admin: boolean;
}

interface StoredKey extends ApiKey {
  readonly digest: Uint8Array;
}

const entrySchema = z.strictObject({
  key: z
    .string({ message: "key must be a string" })
    .min(1, "key must not be empty")
    .refine((k) => !k.startsWith("sha256:") || /^sha256:[0-9a-fA-F]{64}$/.test(k), {
      message: "a sha256: key must be followed by 64 hex digits",
    }),
  prefixes: z.array(z.string({ message: "prefixes must be strings" }), {
    message: 'prefixes is required: a list of lock-name prefixes ("" = every name)',
  }),
  admin: z.boolean({ message: "admin must be true or false" }).optional(),
});

const listSchema = z.array(entrySchema).min(1, "the list of API keys is empty");

export class ApiKeyConfigError extends Error {
  override name = "ApiKeyConfigError";
}

/** Parses the JSON of LEASEHOLD_API_KEYS (or the file named by LEASEHOLD_API_KEYS_FILE). */
export async function parseApiKeys(json: string, source: string): Promise<ApiKeys> {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw new ApiKeyConfigError(`${source}: not valid JSON (${(err as Error).message})`);
  }
  const parsed = listSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? ` at [${issue.path.join("].")}` : "";
    throw new ApiKeyConfigError(`${source}: invalid API key list${where}: ${issue?.message}`);
  }
  const keys: StoredKey[] = [];
  for (const entry of parsed.data) {
    const digest = entry.key.startsWith("sha256:")
      ? fromHex(entry.key.slice("sha256:".length).toLowerCase())
      : await sha256(entry.key);
    keys.push({ digest, prefixes: entry.prefixes, admin: entry.admin ?? false });
  }
  return new ApiKeys(keys);
}

export class ApiKeys {
  constructor(
    private readonly keys: readonly StoredKey[],
    /** Replaceable only so tests can observe that every key is compared. */
    private readonly equal: (a: Uint8Array, b: Uint8Array) => boolean = constantTimeEqual,
  ) {}

  /** The same keys, compared with `equal` (tests). */
  withComparator(equal: (a: Uint8Array, b: Uint8Array) => boolean): ApiKeys {
    return new ApiKeys(this.keys, equal);
  }

  get size(): number {
    return this.keys.length;
  }

  /** The key whose secret this is, or undefined. Takes the same time whichever key matches. */
  async find(secret: string): Promise<ApiKey | undefined> {
    const presented = await sha256(secret);
    let found: StoredKey | undefined;
    for (const key of this.keys) {
      // Every key is compared in full, with no early exit, match or not.
      if (this.equal(presented, key.digest) && found === undefined) found = key;
    }
    return found && { prefixes: found.prefixes, admin: found.admin };
  }
}

/** Whether a key may use the lock `name`. */
export function allows(key: ApiKey, name: string): boolean {
  return key.prefixes.some((p) => name.startsWith(p));
}

/** Equal byte strings, examining every byte whatever the first difference. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/**
 * The configured keys, or undefined when auth is off. `readFile` reads
 * LEASEHOLD_API_KEYS_FILE (Node); runtimes without files pass none.
 */
export async function apiKeysFromConfig(
  config: { LEASEHOLD_API_KEYS?: string | undefined; LEASEHOLD_API_KEYS_FILE?: string | undefined },
  readFile?: (path: string) => string,
): Promise<ApiKeys | undefined> {
  if (config.LEASEHOLD_API_KEYS !== undefined && config.LEASEHOLD_API_KEYS_FILE !== undefined) {
    throw new ApiKeyConfigError("set LEASEHOLD_API_KEYS or LEASEHOLD_API_KEYS_FILE, not both");
  }
  if (config.LEASEHOLD_API_KEYS !== undefined) return parseApiKeys(config.LEASEHOLD_API_KEYS, "LEASEHOLD_API_KEYS");
  const path = config.LEASEHOLD_API_KEYS_FILE;
  if (path === undefined) return undefined;
  if (!readFile) throw new ApiKeyConfigError("LEASEHOLD_API_KEYS_FILE is not supported here; use LEASEHOLD_API_KEYS");
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    throw new ApiKeyConfigError(`LEASEHOLD_API_KEYS_FILE: cannot read ${path}: ${(err as Error).message}`);
  }
  return parseApiKeys(text, `LEASEHOLD_API_KEYS_FILE (${path})`);
}
