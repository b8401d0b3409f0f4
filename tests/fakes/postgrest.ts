/**
 * A test-only PostgREST stand-in: serves PostgREST's RPC protocol (what
 * supabase-js `.rpc(fn, args)` speaks) over a real Postgres database, so the
 * Supabase transport can be exercised end to end without a Supabase stack.
 *
 * Behaviour follows the PostgREST reference (v12, what Supabase runs):
 * - Functions as RPC: https://docs.postgrest.org/en/v12/references/api/functions.html
 * - Errors and status codes: https://docs.postgrest.org/en/v12/references/errors.html
 *   (mirrored at https://supabase.com/docs/guides/api/rest/postgrest-error-codes)
 * - Schemas / profiles: https://docs.postgrest.org/en/v12/references/api/schemas.html
 *
 * Deliberate differences from the real server, all in the direction of making
 * tests simpler:
 * - There is no schema cache: `pg_proc` is read on every request, so functions
 *   created by a test are callable at once without `NOTIFY pgrst, 'reload schema'`.
 * - Only the RPC surface is served (`/rest/v1/rpc/*` and the root); table
 *   routes, filters, `select=`, ranges, bulk (array-body) calls and
 *   `Prefer: params=single-object` are out of scope.
 * - Authentication is a shared-secret comparison against the service-role key,
 *   not JWT verification, and every accepted request counts as authenticated
 *   (so 42501 maps to 403, never 401). No `SET ROLE` is done.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import postgres from 'postgres'

export interface FakePostgrestOptions {
  /** e.g. postgres://postgres@127.0.0.1:5432/db */
  databaseUrl: string
  /** The only key accepted in `apikey` / `Authorization: Bearer`. */
  serviceRoleKey: string
  /** The single exposed schema (PostgREST `db-schemas`); default `public`. */
  schema?: string
}

export interface FakePostgrestCall {
  fn: string
  /** Named arguments as received (a GET's are strings; an unnamed single json body is under the key ''). */
  args: Record<string, unknown>
}

export interface FakePostgrest {
  /** Base URL to use as SUPABASE_URL, e.g. http://127.0.0.1:54321 */
  url: string
  close(): Promise<void>
  /** Every authorised RPC request, in arrival order, recorded before the function is resolved. */
  calls: FakePostgrestCall[]
}

interface ErrorBody {
  code: string
  message: string
  details: string | null
  hint: string | null
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: ErrorBody,
    readonly headers: Record<string, string> = {},
  ) {
    super(body.message)
  }
}

const JSON_TYPE = 'application/json; charset=utf-8'

/**
 * PostgREST's SQLSTATE → HTTP status table ("HTTP Status Codes" in the errors
 * reference). Order matters: exact codes are checked before their class.
 * `authenticated` selects the 403/401 split the table documents for 42501.
 */
export function statusForSqlState(code: string, authenticated = true): number {
  switch (code) {
    case '23503':
    case '23505':
      return 409
    case '25006':
      return 405
    case '53400':
      return 500
    case 'P0001':
      return 400
    case '42883':
    case '42P01':
      return 404
    case '42P17':
      return 500
    case '42501':
      return authenticated ? 403 : 401
  }
  const cls = code.slice(0, 2)
  switch (cls) {
    case '08':
    case '53':
      return 503
    case '09':
    case '25':
    case '2D':
    case '38':
    case '39':
    case '3B':
    case '40':
    case '54':
    case '55':
    case '57':
    case '58':
    case 'F0':
    case 'HV':
    case 'P0':
    case 'XX':
      return 500
    case '0L':
    case '0P':
    case '28':
      return 403
  }
  return 400
}

interface InputArg {
  name: string
  type: string
  variadic: boolean
}

interface ProcInfo {
  name: string
  inputs: InputArg[]
  required: number
  retset: boolean
  returnsVoid: boolean
  returnsComposite: boolean
}

interface ProcRow {
  name: string
  retset: boolean
  ndefaults: number
  returns_void: boolean
  returns_composite: boolean
  argnames: string[]
  argmodes: string[]
  argtypes: string[]
}

// Triggers and event triggers cannot be called directly, and PostgREST keeps
// only plain functions (prokind 'f') in its cache: procedures, aggregates and
// window functions are left out (changelog 9.0.1, #2101 and #2135).
const PROC_QUERY = `
  select p.proname as name,
    p.proretset as retset,
    p.pronargdefaults::int4 as ndefaults,
    p.prorettype = 'void'::regtype as returns_void,
    (rt.typtype = 'c' or (p.prorettype = 'record'::regtype
      and coalesce('o' = any(p.proargmodes) or 't' = any(p.proargmodes) or 'b' = any(p.proargmodes), false)))
      as returns_composite,
    coalesce(p.proargnames, '{}')::text[] as argnames,
    coalesce(p.proargmodes::text[], '{}')::text[] as argmodes,
    array(select format_type(t.typ, null)
      from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality as t(typ, ord)
      order by t.ord)::text[] as argtypes
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace
  join pg_type rt on rt.oid = p.prorettype
  where n.nspname = $1 and p.proname = $2 and p.prokind = 'f'
    and p.prorettype not in ('trigger'::regtype, 'event_trigger'::regtype)
  order by p.oid`

function toProcInfo(row: ProcRow): ProcInfo {
  const inputs: InputArg[] = []
  row.argtypes.forEach((type, i) => {
    // Without proargmodes every argument is IN; otherwise keep IN, INOUT and
    // VARIADIC (OUT and TABLE columns describe the result, not the call).
    const mode = row.argmodes[i] ?? 'i'
    if (mode === 'i' || mode === 'b' || mode === 'v') {
      inputs.push({ name: row.argnames[i] ?? '', type, variadic: mode === 'v' })
    }
  })
  return {
    name: row.name,
    inputs,
    required: inputs.length - row.ndefaults,
    retset: row.retset,
    returnsVoid: row.returns_void,
    returnsComposite: row.returns_composite,
  }
}

/** A function whose only parameter is an unnamed json/jsonb gets the whole POST body (functions reference, "Functions with a single unnamed parameter"). */
function isSingleUnnamedJson(p: ProcInfo): boolean {
  const only = p.inputs[0]
  return (
    p.inputs.length === 1 && only !== undefined && only.name === '' && (only.type === 'json' || only.type === 'jsonb')
  )
}

/** PostgREST matches overloads by argument names: every key must be a parameter, and every parameter without a default must be given. */
function matchesKeys(p: ProcInfo, keys: Set<string>): boolean {
  const names = new Set(p.inputs.map((a) => a.name).filter((n) => n !== ''))
  for (const k of keys) if (!names.has(k)) return false
  return p.inputs.every((a, i) => i >= p.required || keys.has(a.name))
}

const quoteIdent = (s: string): string => `"${s.replaceAll('"', '""')}"`

function signature(schema: string, p: ProcInfo): string {
  return `${schema}.${p.name}(${p.inputs.map((a) => `${a.name} => ${a.type}`).join(', ')})`
}

interface Accept {
  single: boolean
  stripNulls: boolean
  contentType: string
}

/** Picks the first acceptable media type, as PostgREST does; anything else is PGRST107 (406). */
function negotiate(header: string | undefined): Accept {
  if (header === undefined || header.trim() === '') return { single: false, stripNulls: false, contentType: JSON_TYPE }
  for (const part of header.split(',')) {
    const [rawType = '', ...params] = part.split(';').map((s) => s.trim())
    const type = rawType.toLowerCase()
    const stripNulls = params.some((p) => p.replace(/\s+/g, '').toLowerCase() === 'nulls=stripped')
    if (type === 'application/vnd.pgrst.object+json' || type === 'application/vnd.pgrst.object') {
      const ct = `application/vnd.pgrst.object+json${stripNulls ? '; nulls=stripped' : ''}; charset=utf-8`
      return { single: true, stripNulls, contentType: ct }
    }
    if (type === 'application/vnd.pgrst.array+json' || type === 'application/vnd.pgrst.array') {
      const ct = `application/vnd.pgrst.array+json${stripNulls ? '; nulls=stripped' : ''}; charset=utf-8`
      return { single: false, stripNulls, contentType: ct }
    }
    if (type === 'application/json' || type === 'application/*' || type === '*/*') {
      return { single: false, stripNulls: false, contentType: JSON_TYPE }
    }
  }
  throw new HttpError(406, {
    code: 'PGRST107',
    message: `None of these media types are available: ${header}`,
    details: null,
    hint: null,
  })
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/**
 * Supabase's gateway checks `apikey`, PostgREST checks the Bearer JWT; here
 * both, when present, must equal the service-role key. A bad token is
 * PGRST301 (401, with `WWW-Authenticate` as PostgREST sends it); no
 * credentials at all is PGRST302, anonymous access being disabled.
 */
function authenticate(req: IncomingMessage, key: string): void {
  const apikey = headerValue(req, 'apikey')
  const authorization = headerValue(req, 'authorization')
  if (apikey === undefined && authorization === undefined) {
    throw new HttpError(
      401,
      { code: 'PGRST302', message: 'Anonymous access is disabled', details: null, hint: null },
      { 'WWW-Authenticate': 'Bearer' },
    )
  }
  const bearer = authorization?.match(/^bearer\s+(.*)$/i)?.[1]?.trim()
  const presented = [apikey, authorization === undefined ? undefined : (bearer ?? '')]
  for (const token of presented) {
    if (token === undefined || token === key) continue
    // PostgREST v12 reports jose's decode error verbatim.
    const parts = token.split('.').length
    const message =
      parts === 3
        ? 'JWSError JWSInvalidSignature'
        : `JWSError (CompactDecodeError Invalid number of parts: Expected 3 parts; got ${parts})`
    throw new HttpError(
      401,
      { code: 'PGRST301', message, details: null, hint: null },
      { 'WWW-Authenticate': `Bearer error="invalid_token", error_description="${message}"` },
    )
  }
}

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'CONNECTION_ENDED',
])
/**
 * PGRST000, "could not connect with the database" → 503. Real PostgREST adds
 * Retry-After while it reconnects; 0 keeps client retries fast in tests.
 */
function connectionError(err: unknown): HttpError {
  const message = err instanceof Error ? err.message : String(err)
  return new HttpError(
    503,
    { code: 'PGRST000', message: 'Database connection error. Retrying the connection.', details: message, hint: null },
    { 'Retry-After': '0' },
  )
}

function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err
  if (err instanceof postgres.PostgresError) {
    return new HttpError(statusForSqlState(err.code), {
      code: err.code,
      message: err.message,
      details: err.detail ?? null,
      hint: err.hint ?? null,
    })
  }
  const code = (err as { code?: unknown } | null)?.code
  const message = err instanceof Error ? err.message : String(err)
  if (typeof code === 'string' && CONNECTION_ERROR_CODES.has(code)) return connectionError(err)
  // PGRSTX00: internal errors of the database client library.
  return new HttpError(500, { code: 'PGRSTX00', message, details: null, hint: null })
}

function send(res: ServerResponse, status: number, body: string | null, headers: Record<string, string> = {}): void {
  if (body === null) {
    res.writeHead(status, headers)
    res.end()
    return
  }
  res.writeHead(status, { 'Content-Type': JSON_TYPE, ...headers })
  res.end(body)
}

// Query-string keys PostgREST reads as request options, never as arguments.
const RESERVED_QUERY_KEYS = new Set(['select', 'order', 'limit', 'offset', 'columns', 'on_conflict'])

export async function startFakePostgrest(opts: FakePostgrestOptions): Promise<FakePostgrest> {
  const schema = opts.schema ?? 'public'
  const calls: FakePostgrestCall[] = []
  const sql = postgres(opts.databaseUrl, {
    max: 4,
    idle_timeout: 5,
    connect_timeout: 5,
    // Function bodies and return types change between tests; unnamed
    // statements avoid "cached plan must not change result type".
    prepare: false,
    onnotice: () => {},
    // Supabase databases run in UTC; timestamps then serialise as PostgREST
    // shows them there (to_json: 2024-01-02T03:04:05+00:00).
    connection: { TimeZone: 'UTC', application_name: 'fake-postgrest' },
  })

  async function rpc(req: IncomingMessage, res: ServerResponse, fn: string, url: URL): Promise<void> {
    const method = req.method ?? 'GET'
    if (method === 'OPTIONS') {
      send(res, 200, null, { Allow: 'OPTIONS,GET,HEAD,POST' })
      return
    }
    if (method !== 'GET' && method !== 'HEAD' && method !== 'POST') {
      throw new HttpError(405, {
        code: 'PGRST101',
        message: 'Only GET and POST verbs are allowed',
        details: null,
        hint: null,
      })
    }
    const readOnly = method !== 'POST'
    authenticate(req, opts.serviceRoleKey)

    // Schemas reference: GET/HEAD select the schema with Accept-Profile, POST
    // with Content-Profile; a schema that is not exposed is PGRST106 (406).
    const profile = headerValue(req, readOnly ? 'accept-profile' : 'content-profile')
    if (profile !== undefined && profile !== schema) {
      throw new HttpError(406, {
        code: 'PGRST106',
        message: `Invalid schema: ${profile}`,
        details: null,
        hint: `Only the following schemas are exposed: ${schema}`,
      })
    }
    const accept = negotiate(headerValue(req, 'accept'))

    // Arguments: the JSON body for POST, the query string for GET (repeated
    // keys become an array, PostgREST's way of filling a VARIADIC parameter).
    let payload: unknown
    let rawBody: string
    if (readOnly) {
      const args: Record<string, unknown> = {}
      for (const key of new Set(url.searchParams.keys())) {
        if (RESERVED_QUERY_KEYS.has(key)) continue
        const values = url.searchParams.getAll(key)
        args[key] = values.length === 1 ? values[0] : values
      }
      payload = args
      rawBody = JSON.stringify(args)
    } else {
      const contentType = (headerValue(req, 'content-type') ?? 'application/json').split(';')[0]?.trim().toLowerCase()
      if (contentType !== 'application/json' && contentType !== '') {
        throw new HttpError(415, {
          code: 'PGRST107',
          message: `The request's Content-Type ${contentType} is not supported by this fake`,
          details: null,
          hint: null,
        })
      }
      rawBody = await readBody(req)
      // An empty body calls the function without arguments.
      if (rawBody.trim() === '') rawBody = '{}'
      try {
        payload = JSON.parse(rawBody)
      } catch {
        throw new HttpError(400, { code: 'PGRST102', message: 'Empty or invalid json', details: null, hint: null })
      }
    }
    const isObject = typeof payload === 'object' && payload !== null && !Array.isArray(payload)
    calls.push({ fn, args: isObject ? { ...(payload as Record<string, unknown>) } : { '': payload } })
    if (!isObject && !readOnly && Array.isArray(payload)) {
      throw new HttpError(400, {
        code: 'PGRST102',
        message: 'Bulk RPC calls (a JSON array body) are not supported by this fake',
        details: null,
        hint: 'Wrap the array in an object keyed by the parameter name',
      })
    }
    const keys = new Set(isObject ? Object.keys(payload as object) : [])

    // Anything that fails before the transaction is open (refused connection,
    // unknown database, bad credentials) is a connection error, even when
    // Postgres reports it with a SQLSTATE.
    let connected = false
    const result = await sql
      .begin(readOnly ? 'read only' : 'read write', async (tx) => {
        connected = true
        // PostgREST sets the search path to the exposed schema plus
        // db-extra-search-path (public) and exposes request data as GUCs.
        const searchPath = schema === 'public' ? quoteIdent(schema) : `${quoteIdent(schema)}, public`
        await tx.unsafe(
          `select set_config('search_path', $1, true), set_config('request.jwt.claims', $2, true),
           set_config('request.method', $3, true), set_config('request.path', $4, true)`,
          [searchPath, JSON.stringify({ role: 'service_role' }), method, url.pathname],
        )
        const rows = await tx.unsafe<ProcRow[]>(PROC_QUERY, [schema, fn])
        const procs = rows.map(toProcInfo)
        const matches = procs.filter((p) => (isSingleUnnamedJson(p) ? !readOnly : isObject && matchesKeys(p, keys)))
        if (matches.length === 0) throw notFound(fn, [...keys].sort(), procs, readOnly)
        if (matches.length > 1) {
          // PGRST203 (300 Multiple Choices): overloads resolved by names only.
          throw new HttpError(300, {
            code: 'PGRST203',
            message: `Could not choose the best candidate function between: ${matches.map((p) => signature(schema, p)).join(', ')}`,
            details: null,
            hint: 'Try renaming the parameters or the function itself in the database so function overloading can be resolved',
          })
        }
        const proc = matches[0] as ProcInfo
        return execute(tx, proc, rawBody, keys, accept.stripNulls)
      })
      .catch((err: unknown) => {
        throw connected || err instanceof HttpError ? err : connectionError(err)
      })

    // Functions reference: a void function answers 204 No Content without a
    // Content-Type (since v10.0.0, #2001; it used to be 200 with `null`).
    if (result === 'void') {
      send(res, 204, null)
      return
    }
    const { procIsSet, total, bodyArr, bodyOne } = result
    let body: string
    if (accept.single && procIsSet && total !== 1) {
      // Singular or plural reference: vnd.pgrst.object needs exactly one row.
      throw new HttpError(406, {
        code: 'PGRST116',
        message: 'JSON object requested, multiple (or no) rows returned',
        details: `The result contains ${total} rows`,
        hint: null,
      })
    }
    if (accept.single || !procIsSet) body = bodyOne
    else body = bodyArr
    const prefer = headerValue(req, 'prefer') ?? ''
    const exact = /count=(exact|planned|estimated)/.test(prefer)
    const range = total > 0 ? `0-${total - 1}/${exact ? total : '*'}` : `*/${exact ? 0 : '*'}`
    const headers = { 'Content-Type': accept.contentType, 'Content-Range': range }
    if (method === 'HEAD') {
      res.writeHead(200, headers)
      res.end()
      return
    }
    send(res, 200, body, headers)
  }

  function notFound(fn: string, keys: string[], procs: ProcInfo[], readOnly: boolean): HttpError {
    const qualified = `${schema}.${fn}`
    const params = keys.length === 0 ? ' without parameters' : `(${keys.join(', ')})`
    const searched = keys.length === 0 ? 'without parameters' : `with parameters ${keys.join(', ')}`
    const unnamed = readOnly ? '' : ' or with a single unnamed json/jsonb parameter'
    const candidate = procs.find((p) => !isSingleUnnamedJson(p))
    return new HttpError(404, {
      code: 'PGRST202',
      message: `Could not find the function ${qualified}${params} in the schema cache`,
      details: `Searched for the function ${qualified} ${searched}${unnamed}, but no matches were found in the schema cache.`,
      hint:
        candidate === undefined
          ? null
          : `Perhaps you meant to call the function ${qualified}(${candidate.inputs
              .map((a) => a.name)
              .sort()
              .join(', ')})`,
    })
  }

  type ExecResult = 'void' | { procIsSet: boolean; total: number; bodyArr: string; bodyOne: string }

  /**
   * Mirrors PostgREST's RPC query: the arguments travel as one json parameter
   * and are typed by json_to_record with the declared parameter types, so
   * JSON objects/arrays reach json/jsonb, array and composite parameters the
   * way PostgREST passes them; the result is serialised by Postgres
   * (json_agg), giving PostgREST's exact JSON for numbers, bigints,
   * timestamps and json values.
   */
  async function execute(
    tx: postgres.TransactionSql,
    proc: ProcInfo,
    rawBody: string,
    keys: Set<string>,
    stripNulls: boolean,
  ): Promise<ExecResult> {
    const target = `${quoteIdent(schema)}.${quoteIdent(proc.name)}`
    let argsCte: string
    let callArgs: string
    // `$1::text::json`, not `$1::json`: with a json-typed parameter postgres.js
    // would JSON.stringify the already serialised body a second time.
    const params: string[] = []
    if (isSingleUnnamedJson(proc)) {
      const type = (proc.inputs[0] as InputArg).type
      argsCte = `select $1::text::${type} as pgrst_body`
      callArgs = 'pgrst_args.pgrst_body'
      params.push(rawBody)
    } else {
      const given = proc.inputs.filter((a) => keys.has(a.name))
      if (given.length === 0) {
        argsCte = 'select'
        callArgs = ''
      } else {
        const columns = given.map((a) => `${quoteIdent(a.name)} ${a.type}`).join(', ')
        argsCte = `select * from json_to_record($1::text::json) as _(${columns})`
        callArgs = given
          .map((a) => `${a.variadic ? 'variadic ' : ''}${quoteIdent(a.name)} => pgrst_args.${quoteIdent(a.name)}`)
          .join(', ')
        params.push(rawBody)
      }
    }
    const call = `${target}(${callArgs})`
    if (proc.returnsVoid) {
      await tx.unsafe(`with pgrst_args as (${argsCte}) select ${call} from pgrst_args`, params)
      return 'void'
    }
    let source: string
    let elem: string
    if (proc.returnsComposite) {
      source = `select pgrst_call.* from pgrst_args, lateral ${call} as pgrst_call`
      elem = '_postgrest_t'
    } else if (proc.retset) {
      source = `select pgrst_call.pgrst_scalar from pgrst_args, lateral ${call} as pgrst_call(pgrst_scalar)`
      elem = '_postgrest_t.pgrst_scalar'
    } else {
      source = `select ${call} as pgrst_scalar from pgrst_args`
      elem = '_postgrest_t.pgrst_scalar'
    }
    const agg = stripNulls ? `json_strip_nulls(json_agg(${elem}))` : `json_agg(${elem})`
    const rows = await tx.unsafe<Array<{ total: number; body_arr: string; body_one: string }>>(
      `with pgrst_args as (${argsCte}), pgrst_source as (${source})
       select count(*)::int4 as total,
         coalesce(${agg}, '[]')::text as body_arr,
         coalesce((${agg}->0)::text, 'null') as body_one
       from pgrst_source _postgrest_t`,
      params,
    )
    const row = rows[0]
    if (row === undefined) throw new Error('aggregate query returned no row')
    return { procIsSet: proc.retset, total: row.total, bodyArr: row.body_arr, bodyOne: row.body_one }
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    const handle = async (): Promise<void> => {
      const path = url.pathname
      if (path === '/rest/v1' || path === '/rest/v1/') {
        // The OpenAPI root is out of scope; an empty document keeps probes happy.
        if (req.method === 'GET' || req.method === 'HEAD') {
          authenticate(req, opts.serviceRoleKey)
          send(res, 200, req.method === 'HEAD' ? null : '{}', { 'Content-Type': JSON_TYPE })
          return
        }
      }
      const match = /^\/rest\/v1\/rpc\/([^/]+)$/.exec(path)
      if (match?.[1] !== undefined) {
        await rpc(req, res, decodeURIComponent(match[1]), url)
        return
      }
      throw new HttpError(404, {
        code: 'PGRST125',
        message: 'Invalid path specified in request URL',
        details: 'This fake PostgREST serves only /rest/v1/ and /rest/v1/rpc/<function>',
        hint: null,
      })
    }
    handle().catch((err: unknown) => {
      const e = toHttpError(err)
      if (res.headersSent) {
        res.destroy()
        return
      }
      send(res, e.status, req.method === 'HEAD' ? null : JSON.stringify(e.body), {
        'Content-Type': JSON_TYPE,
        ...e.headers,
      })
    })
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { port } = server.address() as AddressInfo

  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    async close() {
      // fetch keeps connections alive; drop them so close() does not hang.
      server.closeAllConnections()
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())))
      await sql.end({ timeout: 1 })
    },
  }
}
