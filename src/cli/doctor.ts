/**
 * `filegate doctor`: is this environment a working filegate? One line per check: the configuration,
 * the database and its schema version, the originals store when ORIGINALS_URL is set (one cheap
 * round trip: a bucket HEAD, a directory access), and each configured provider's key through one
 * cheap authenticated call (list files, limit 1, one attempt). A failing check does not stop the next
 * ones; the exit code is 1 when any failed.
 */
import { type Config, ConfigError, loadConfig } from '../config.js'
import { createOriginalsStore, type OriginalsStore } from '../originals/index.js'
import { isProviderError } from '../providers/errors.js'
import { wireOf } from '../providers/registry.js'
import { createStore, type StorePort } from '../store/index.js'
import { latestVersion, loadMigrations } from '../store/migrations.js'
import { schemaVersion } from '../store/queries.js'
import { type CliIo, exitCodes, writeJson } from './io.js'

export interface Check {
  name: string
  status: 'ok' | 'fail' | 'skip'
  detail: string
}

/** Rejects when `work` takes longer than `ms` (a database or provider that hangs must not hang doctor). */
async function within<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms)
  })
  try {
    return await Promise.race([work, late])
  } finally {
    clearTimeout(timer)
  }
}

const describe = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? ''

async function storeChecks(config: Config, timeoutMs: number): Promise<Check[]> {
  if (config.store.transport === 'pglite') {
    // PGlite is one process's database: opening its directory beside a running service could damage it.
    const detail = `embedded PGlite under ${config.store.dataDir} (not opened: one process only)`
    return [
      { name: 'database', status: 'skip', detail },
      { name: 'schema', status: 'skip', detail: 'embedded PGlite: migrated by the service at start' },
    ]
  }
  let store: StorePort | undefined
  try {
    store = await createStore(config.store)
    const version = await within(timeoutMs, schemaVersion(store))
    const expected = latestVersion(await loadMigrations())
    const database: Check = { name: 'database', status: 'ok', detail: `${config.store.transport} answers` }
    if (version < expected)
      return [
        database,
        {
          name: 'schema',
          status: 'fail',
          detail: `version ${version}, expected ${expected}: run \`filegate migrate\``,
        },
      ]
    return [database, { name: 'schema', status: 'ok', detail: `version ${version}` }]
  } catch (err) {
    return [
      { name: 'database', status: 'fail', detail: `${config.store.transport}: ${describe(err)}` },
      { name: 'schema', status: 'skip', detail: 'no database' },
    ]
  } finally {
    await store?.close().catch(() => {})
  }
}

async function originalsCheck(config: Config, timeoutMs: number): Promise<Check> {
  const name = 'originals'
  if (!config.originals) return { name, status: 'skip', detail: 'ORIGINALS_URL not set: originals are not kept' }
  const { url } = config.originals
  let store: OriginalsStore | undefined
  try {
    store = await createOriginalsStore(config.originals)
    await within(timeoutMs, store.ping())
    return { name, status: 'ok', detail: `${url} answers` }
  } catch (err) {
    return { name, status: 'fail', detail: `${url}: ${describe(err) || (err as Error).name}` }
  } finally {
    await store?.close().catch(() => {})
  }
}

async function providerCheck(provider: Config['providers'][number], timeoutMs: number): Promise<Check> {
  const name = `provider ${provider.name}`
  if (!provider.configured) return { name, status: 'skip', detail: 'no API key configured' }
  const wire = wireOf(provider).create(provider, {
    limitBytes: provider.maxFileBytes,
    idleTimeoutMs: timeoutMs,
    connections: 1,
    retry: { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0 },
  })
  try {
    // The first page only (one file at most): the loop ends after it.
    const firstPage = async () => {
      for await (const _ of wire.listAll({ pageSize: 1 }, (fn) => fn(AbortSignal.timeout(timeoutMs)))) break
    }
    await within(timeoutMs, firstPage())
    return { name, status: 'ok', detail: `key accepted by ${provider.baseUrl}` }
  } catch (err) {
    const status = isProviderError(err) && err.upstreamStatus ? ` (HTTP ${err.upstreamStatus})` : ''
    const code = isProviderError(err) ? `${err.code}${status}: ` : ''
    return { name, status: 'fail', detail: `${code}${describe(err)} at ${provider.baseUrl}` }
  } finally {
    await wire.close(1000).catch(() => {})
  }
}

export async function runChecks(env: CliIo['env'], timeoutMs: number): Promise<Check[]> {
  let config: Config
  try {
    config = loadConfig(env)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return [{ name: 'configuration', status: 'fail', detail: err.problems.join('; ') }]
  }
  const configured = config.providers.filter((p) => p.configured).map((p) => p.name)
  const checks: Check[] = [
    {
      name: 'configuration',
      status: 'ok',
      detail:
        `store ${config.store.transport}, providers configured: ${configured.join(', ') || 'none'}, ` +
        (config.openMode
          ? 'open mode until a key is created (no API_KEYS, no JWT_ISSUER)'
          : `${config.apiKeys.length} API key(s)${config.jwt ? `, JWTs of ${config.jwt.issuer}` : ''}`),
    },
  ]
  checks.push(...(await storeChecks(config, timeoutMs)))
  checks.push(await originalsCheck(config, timeoutMs))
  checks.push(...(await Promise.all(config.providers.map((p) => providerCheck(p, timeoutMs)))))
  return checks
}

export async function doctorCommand(io: CliIo, opts: { json?: boolean; timeout?: string }): Promise<number> {
  const timeoutMs = Number(opts.timeout ?? 10) * 1000
  const checks = await runChecks(io.env, timeoutMs)
  const ok = checks.every((c) => c.status !== 'fail')
  if (opts.json) writeJson(io, { ok, checks })
  else {
    const width = Math.max(...checks.map((c) => c.name.length))
    for (const c of checks)
      io.stdout.write(`${c.status.toUpperCase().padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail}\n`)
  }
  return ok ? exitCodes.ok : exitCodes.failed
}
