/**
 * `filegate keys hash <key>` and `filegate keys new <tenant>`: API_KEYS entries without writing a
 * plain key into the configuration. The digest is the one API_KEYS' `sha256:<hex>` form expects.
 * (Keys kept in the database are keys.ts.)
 */
import { randomBytes } from 'node:crypto'
import { apiKeyDigest, minApiKeyLength, tenantPattern } from '../config.js'
import { tenantIdRule } from '../tenant.js'
import { CliError, type CliIo, exitCodes, writeJson } from './io.js'

/** Reads the key from stdin when the argument is `-` (keeps it out of shell history and `ps`). */
async function readKey(arg: string, stdin: AsyncIterable<Buffer | string>): Promise<string> {
  if (arg !== '-') return arg
  let text = ''
  for await (const chunk of stdin) text += String(chunk)
  return text.replace(/\r?\n$/, '')
}

export async function keysHashCommand(
  arg: string,
  io: CliIo & { stdin: AsyncIterable<Buffer | string> },
  opts: { json?: boolean },
): Promise<number> {
  const key = await readKey(arg, io.stdin)
  if (key.length < minApiKeyLength || /[\s,]/.test(key)) {
    throw new CliError(
      `filegate: a key must be at least ${minApiKeyLength} characters, without spaces or commas`,
      exitCodes.usage,
    )
  }
  const hashed = `sha256:${apiKeyDigest(key)}`
  if (opts.json) writeJson(io, { sha256: hashed })
  else io.stdout.write(`${hashed}\n`)
  return 0
}

export function keysNewCommand(tenant: string, io: CliIo, opts: { json?: boolean }): number {
  if (!tenantPattern.test(tenant)) {
    throw new CliError(`filegate: a tenant is ${tenantIdRule}, or * for an admin key`, exitCodes.usage)
  }
  // 32 random bytes: 256 bits, base64url so it survives shells, URLs and the comma-separated list.
  const key = `fg_${randomBytes(32).toString('base64url')}`
  const entry = `${tenant}:sha256:${apiKeyDigest(key)}`
  if (opts.json) writeJson(io, { tenant, key, api_keys_entry: entry })
  else io.stdout.write(`key:      ${key}\nAPI_KEYS: ${entry}\n`)
  return 0
}
