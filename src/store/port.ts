/**
 * The one call port to the database, over three transports (embedded PGlite, Postgres, Supabase
 * via PostgREST). The typed queries (queries.ts) call SQL functions by name with named
 * arguments; every filegate function returns jsonb, so each transport yields the same
 * JSON shapes. Connection-level failures surface as DATABASE_UNAVAILABLE (503), never a 500.
 */
import { AppError, errors } from '../errors.js'

export type Transport = 'pglite' | 'postgres' | 'supabase'
export type CallArgs = Record<string, unknown>

export interface StorePort {
  readonly transport: Transport
  /** `select fn(arg => $1, ...)`; resolves to the function's jsonb result (null for SQL NULL). */
  call<T = unknown>(fn: string, args?: CallArgs): Promise<T>
  /** Raw SQL for the migration runner; absent on transports that cannot run DDL (supabase). */
  readonly migrator?: MigrationTarget
  /**
   * Notifications sent on `channel` (Postgres NOTIFY, delivered at commit); absent on transports
   * that cannot receive them (supabase through PostgREST). Resolves once listening, with the
   * function that stops it.
   */
  readonly listen?: (channel: string, handlers: ListenHandlers) => Promise<() => Promise<void>>
  close(): Promise<void>
}

/** What a listener hears: a notification, and the state of the connection that receives them. */
export interface ListenHandlers {
  notify(payload: string): void
  /** Listening (again). Whatever was announced while not listening was missed: drop what it may have changed. */
  listening(): void
  /** Not listening any more (the connection broke); `listening` follows once it is back. */
  lost(): void
}

/** What the migration runner needs from a transport: an exclusive session with raw SQL. */
export interface MigrationTarget {
  /** Runs `work` while holding the cluster-wide migration lock (replicas may start together). */
  withLock<T>(work: (session: MigrationSession) => Promise<T>): Promise<T>
}

export interface MigrationSession {
  query<R extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>
  /** Runs one migration file and its bookkeeping in one transaction. */
  transaction(statements: string, after: { sql: string; params: unknown[] }): Promise<void>
}

const identifier = /^[a-z_][a-z0-9_]{0,62}$/

/** Builds `select fn(a => $1, b => $2) as v` for the SQL transports. Names are checked, never interpolated raw. */
export function namedCallSql(fn: string, args: CallArgs): { text: string; params: unknown[] } {
  if (!identifier.test(fn)) throw new Error(`invalid function name: ${fn}`)
  const names = Object.keys(args).filter((k) => args[k] !== undefined)
  const params: unknown[] = []
  const list = names.map((name, i) => {
    if (!identifier.test(name)) throw new Error(`invalid argument name: ${name}`)
    const value = args[name]
    params.push(value instanceof Date ? value.toISOString() : value)
    return `${name} => $${i + 1}`
  })
  return { text: `select ${fn}(${list.join(', ')}) as v`, params }
}

const connectionCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'EPIPE',
  'EAI_AGAIN',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  '53300', // too_many_connections
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '3D000', // invalid_catalog_name: the database is not created yet
])

/** True for errors that mean "the database is not reachable now", as opposed to a bad query. */
export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && (connectionCodes.has(code) || code.startsWith('08'))) return true
  const cause = (err as { cause?: unknown } | null)?.cause
  return cause !== undefined && cause !== err && isConnectionError(cause)
}

/**
 * Failures met before a call reached the database: the connection was refused, timed out or could
 * not be named, the server was starting or full. Such a call cannot have committed; any other
 * connection failure (a connection cut while the call was under way) may have.
 */
const beforeSending = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'EAI_AGAIN',
  'CONNECT_TIMEOUT',
  '53300',
  '57P03',
  '3D000',
])

/**
 * Whether a failed call may still have committed. False only when that is known: it never reached
 * the database (a code of `beforeSending` in its causes), or the database answered with an error (a
 * SQLSTATE, or a value it refused: its transaction rolled back). A connection lost while the call was
 * under way, an unreachable database on a transport that cannot say more (PostgREST's status 0 or
 * 5xx) or an error of unknown kind may have.
 */
export function mayHaveCommitted(err: unknown): boolean {
  const causes: unknown[] = []
  for (let e = err; e !== undefined && e !== null && !causes.includes(e); e = (e as { cause?: unknown }).cause) {
    causes.push(e)
  }
  const codeOf = (e: unknown) => (e as { code?: unknown }).code
  if (causes.some((e) => beforeSending.has(codeOf(e) as string))) return false
  if (isConnectionError(err)) return true
  if (err instanceof AppError) return err.code === 'DATABASE_UNAVAILABLE'
  const code = codeOf(err)
  return !(typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code))
}

export const databaseUnavailable = (cause: unknown) =>
  errors.databaseUnavailable('The database is not reachable; retry shortly', cause)

/**
 * SQLSTATEs (PostgreSQL Appendix A, class 22 "data exception") that mean a value the request
 * carried cannot be stored or compared: a NUL character in text or jsonb, a timestamp out of
 * range, text that is not a uuid or a number. The routes validate their inputs first; this is
 * the last line, so such a value is the client's 400 and never a 500.
 */
const rejectedValueCodes = new Set([
  '22001', // string_data_right_truncation
  '22003', // numeric_value_out_of_range
  '22007', // invalid_datetime_format
  '22008', // datetime_field_overflow
  '22021', // character_not_in_repertoire (a NUL byte in text)
  '22P02', // invalid_text_representation
  '22P05', // untranslatable_character (\u0000 in jsonb)
])

/** The error a transport throws for a failed call: 503 when unreachable, 400 for a refused value, else as is. */
export function storeError(err: unknown): unknown {
  if (isConnectionError(err)) return databaseUnavailable(err)
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && rejectedValueCodes.has(code)) {
    return new AppError('VALIDATION_FAILED', {
      detail: 'A value in the request cannot be stored or compared (e.g. a NUL character or a date out of range)',
      cause: err,
    })
  }
  return err
}
