/**
 * `filegate keys create|list|revoke|rotate`: keys kept in the database, managed straight on it
 * (the same rules and audit as the API, the actor `cli`), so the first key needs no open mode; a
 * revoke or rotation reaches the running replicas as the API's do.
 */
import { actingAs } from '../audit-context.js'
import type { Config } from '../config.js'
import { anyTenant, type Caller, isScope, type Scope } from '../domain/caller.js'
import { type KeyObject, KeyService, maxGraceSeconds } from '../domain/keys.js'
import { isAppError } from '../errors.js'
import { CliError, type CliIo, exitCodes, writeJson } from './io.js'
import { openStore } from './services.js'

/** The CLI acts as an admin, recorded in the audit as `cli`. */
const cliCaller: Caller = {
  tenant: anyTenant,
  ownTenant: null,
  scopes: ['admin'],
  providers: null,
  actor: 'cli',
  expiresAt: null,
}

const commaList = (raw: string | undefined): string[] | undefined =>
  raw === undefined
    ? undefined
    : raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)

/** Runs `work` on the configured database as the CLI; a refusal (400, 404) ends the command with its detail. */
async function onKeys<T>(config: Config, work: (keys: KeyService) => Promise<T>): Promise<T> {
  const store = await openStore(config)
  try {
    const keys = new KeyService(
      store,
      config.providers.map((p) => p.name),
    )
    return await actingAs({ actor: 'cli', request_id: null, ip: null }, () => work(keys))
  } catch (err) {
    if (isAppError(err) && err.status < 500) {
      throw new CliError(`filegate: ${err.detail}`, err.status === 404 ? exitCodes.failed : exitCodes.usage)
    }
    throw err
  } finally {
    await store.close()
  }
}

function describeKey(key: KeyObject): string {
  const lines = [
    ['id', key.id],
    ['tenant', key.tenant_id],
    ['name', key.name ?? '-'],
    ['scopes', key.scopes.join(' ')],
    ['providers', key.providers === null ? '(every provider)' : key.providers.join(' ') || '(none)'],
    ['expires', key.expires_at ?? 'never'],
    ...(key.revoked_at ? [['revoked', key.revoked_at]] : []),
    ...(key.previous_key_expires_at ? [['old key until', key.previous_key_expires_at]] : []),
  ]
  return lines.map(([k, v]) => `${`${k}:`.padEnd(15)}${v}`).join('\n')
}

export interface KeysCreateOptions {
  tenant: string
  name?: string
  scopes?: string
  providers?: string
  expiresIn?: string
  json?: boolean
}

export async function keysCreateCommand(config: Config, io: CliIo, opts: KeysCreateOptions): Promise<number> {
  const scopes = commaList(opts.scopes)
  const unknown = scopes?.filter((s) => !isScope(s)) ?? []
  if (scopes?.length === 0 || unknown.length > 0) {
    throw new CliError(`filegate: --scopes takes a comma list of files:read, files:write, keys, admin`, exitCodes.usage)
  }
  const expiresIn = opts.expiresIn === undefined ? undefined : Number(opts.expiresIn)
  if (expiresIn !== undefined && (!/^\d+$/.test(opts.expiresIn ?? '') || expiresIn < 1)) {
    throw new CliError('filegate: --expires-in takes a positive number of seconds', exitCodes.usage)
  }
  const made = await onKeys(config, (keys) =>
    keys.create(cliCaller, {
      tenant: opts.tenant,
      name: opts.name,
      scopes: scopes as Scope[] | undefined,
      providers: commaList(opts.providers),
      expiresInSeconds: expiresIn,
    }),
  )
  if (opts.json) writeJson(io, { ...made.key, key: made.secret })
  else
    io.stdout.write(
      `key:           ${made.secret}\n${describeKey(made.key)}\n(the key is shown once: only its SHA-256 is kept)\n`,
    )
  return exitCodes.ok
}

export async function keysListCommand(
  config: Config,
  io: CliIo,
  opts: { tenant?: string; json?: boolean },
): Promise<number> {
  const all = await onKeys(config, async (keys) => {
    const found: KeyObject[] = []
    let after: string | undefined
    do {
      const page = await keys.list(cliCaller, { tenant: opts.tenant, limit: 100, after })
      found.push(...page.data)
      after = page.next_cursor ?? undefined
    } while (after)
    return found
  })
  if (opts.json) {
    writeJson(io, { data: all })
    return exitCodes.ok
  }
  for (const key of all) {
    const state = key.revoked_at
      ? 'revoked'
      : key.expires_at && Date.parse(key.expires_at) <= Date.now()
        ? 'expired'
        : 'live'
    io.stdout.write(
      `${key.id}  ${key.tenant_id}  ${state}  ${key.scopes.join(',')}  ${key.providers?.join(',') ?? '*'}  …${key.key_hint}  ${key.name ?? ''}\n`,
    )
  }
  if (all.length === 0) io.stdout.write('no keys\n')
  return exitCodes.ok
}

export async function keysRevokeCommand(
  config: Config,
  io: CliIo,
  id: string,
  opts: { json?: boolean },
): Promise<number> {
  const key = await onKeys(config, (keys) => keys.revoke(cliCaller, id))
  if (opts.json) writeJson(io, key)
  else io.stdout.write(`${describeKey(key)}\n`)
  return exitCodes.ok
}

export async function keysRotateCommand(
  config: Config,
  io: CliIo,
  id: string,
  opts: { graceSeconds?: string; json?: boolean },
): Promise<number> {
  const grace = Number(opts.graceSeconds ?? '0')
  if (!/^\d+$/.test(opts.graceSeconds ?? '0') || grace > maxGraceSeconds) {
    throw new CliError(`filegate: --grace-seconds takes 0 to ${maxGraceSeconds}`, exitCodes.usage)
  }
  const made = await onKeys(config, (keys) => keys.rotate(cliCaller, id, grace))
  if (opts.json) writeJson(io, { ...made.key, key: made.secret })
  else
    io.stdout.write(
      `key:           ${made.secret}\n${describeKey(made.key)}\n(the key is shown once: only its SHA-256 is kept)\n`,
    )
  return exitCodes.ok
}
