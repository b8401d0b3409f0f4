/**
 * The class of hostile input, not only the cases found by hand (hostile-inputs.test.ts): fast-check
 * drives every route with generated values (NUL and control characters, bidi marks and other
 * Unicode, prototype member names, huge, negative and non-numbers, random cursors and ids, broken
 * multipart framing, hostile tenant and request-id headers, hostile key bodies, ids and audit
 * filters) and holds, after every request:
 *   - no 5xx;
 *   - an error is RFC 9457 problem+json with a catalogue code (the OpenAI error shape on the
 *     /providers facade);
 *   - nothing is left behind: no spool file, no upload counted active, no row in flight, and the
 *     providers hold exactly the files the database says they hold.
 * A fixed seed makes a failure reproducible; the case count is printed.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc, { type Arbitrary } from 'fast-check'
import type { FastifyInstance } from 'fastify'
import postgres from 'postgres'
import { scopes } from '../../src/domain/caller.js'
import { errorCatalog } from '../../src/errors.js'
import { maxExpiresInSeconds } from '../../src/schemas.js'
import { createTestDatabase, requirePostgres, tempDir, testKeys } from '../helper.js'
import {
  filePart,
  postFile,
  registryValue,
  setupUploads,
  sha256,
  spoolEntries,
  type UploadContext,
  useFileDatabase,
} from './uploads-support.js'

const database = useFileDatabase()

const seed = 20261127
const numRuns = 1500
const jsonRuns = 600

// ---- values -------------------------------------------------------------------------------

const prototypeNames = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', 'then']
const nastyUnits = ['\u0000', '\u0001', '\u001f', '\u007f', '\u0085', '\u200b', '\u202e', '\u2066', '\ufeff']
const plainUnits = ['a', 'Z', '0', '.', '/', '\\', '"', "'", '%', ' ', '-', '_', ':', '*', '?', '<', '文', '😀', 'é']

const nasty = fc.string({ unit: fc.constantFrom(...nastyUnits, ...plainUnits), maxLength: 40 })
const numberLike = fc.oneof(
  fc.integer().map(String),
  fc.double().map(String),
  fc.constantFrom('-1', '0', '1e308', '9007199254740993', '-9223372036854775809', 'NaN', 'Infinity', '0x10', '1.5', ''),
)
const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
const cursorLike = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('base64url')),
  fc
    .tuple(
      fc.oneof(
        fc.string(),
        fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
        nasty,
      ),
      fc.uuid(),
    )
    .map(b64),
  fc
    .tuple(
      fc.constantFrom('-271821-04-20T00:00:00Z', '1', '275760-09-13T00:00:00Z', '2026-13-45T99:99:99+00:00'),
      fc.uuid(),
    )
    .map(b64),
  fc.jsonValue().map(b64),
)
/** Any hostile text a client could put in a query, a path, a form field or a JSON string. */
const hostile = fc.oneof(
  fc.constantFrom(...prototypeNames),
  nasty,
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  numberLike,
  cursorLike,
  fc.uuid(),
  fc.nat({ max: 5000 }).map((n) => 'x'.repeat(n)),
)
/** A value a route may also accept (most of the time), so that cases get past validation too. */
const sometimes = <T>(valid: fc.Arbitrary<T>, other: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 3, arbitrary: valid }, { weight: 1, arbitrary: other })
const provider = sometimes(fc.constantFrom('kimi', 'glm', 'auto'), hostile)
const purpose = sometimes(fc.constantFrom('file-extract', 'agent', 'batch', 'image'), hostile)
/** Present `weight` times in `of`, else left out. */
const present = <T>(value: fc.Arbitrary<T>, weight: number, of: number) =>
  fc.oneof({ weight, arbitrary: value }, { weight: of - weight, arbitrary: fc.constant(undefined) })
/** Header values can only be visible ASCII and Latin-1 (RFC 9110 §5.5); Node refuses the rest itself. */
const headerValue = fc.string({
  unit: fc.constantFrom('a', 'Z', '0', '-', '_', '.', ':', ' ', '"', '*', '\u00e9', '\u00ff', '/', '='),
  maxLength: 80,
})

// ---- requests -----------------------------------------------------------------------------

interface Case {
  method: 'GET' | 'POST' | 'DELETE'
  url: string
  headers: Record<string, string>
  payload?: Buffer | string
}

const enc = encodeURIComponent
const query = (params: Array<[string, string] | null>) => {
  const search = new URLSearchParams(params.filter((p): p is [string, string] => p !== null)).toString()
  return search ? `?${search}` : ''
}

function form(
  parts: Array<{ name: string; value: string } | { name: string; filename: string; content: Buffer }>,
  boundary: string,
) {
  const chunks: Buffer[] = []
  for (const part of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\n`))
    if ('filename' in part) {
      chunks.push(
        Buffer.from(
          `Content-Disposition: form-data; name="${part.name}"; filename="${part.filename}"\r\nContent-Type: text/plain\r\n\r\n`,
        ),
        part.content,
        Buffer.from('\r\n'),
      )
    } else {
      chunks.push(Buffer.from(`Content-Disposition: form-data; name="${part.name}"\r\n\r\n${part.value}\r\n`))
    }
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`))
  return Buffer.concat(chunks)
}

/** Ways to break a well-formed multipart body (or none). */
const framing = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ kind: 'intact' as const }) },
  fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({ kind: fc.constant('no-boundary' as const) }),
  fc.record({ kind: fc.constant('other-boundary' as const) }),
  fc.record({ kind: fc.constant('garbage' as const), bytes: fc.uint8Array({ maxLength: 200 }) }),
  fc.record({
    kind: fc.constant('splice' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    bytes: fc.uint8Array({ maxLength: 40 }),
  }),
)

const metadata = fc.oneof(
  { weight: 3, arbitrary: fc.dictionary(fc.oneof(fc.string(), nasty), fc.jsonValue()).map((o) => JSON.stringify(o)) },
  fc.json(),
  hostile,
  fc.dictionary(nasty, hostile).map((o) => JSON.stringify(o)),
  fc.nat({ max: 60 }).map((n) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`),
)

const uploadFields = fc.record({
  provider: present(provider, 3, 4),
  purpose: present(purpose, 1, 3),
  expires_in: present(sometimes(fc.constantFrom('1', '3600', '86400'), numberLike), 1, 3),
  metadata: present(metadata, 1, 2),
  unknown: present(hostile, 1, 10),
})

/** X-Content-SHA256: absent, right, wrong, or not a hash at all. */
const declaredHash = fc.oneof(
  { weight: 3, arbitrary: fc.constant('none') },
  { weight: 2, arbitrary: fc.constant('right') },
  { weight: 1, arbitrary: fc.constantFrom('wrong', 'hostile') },
)
function multipartCase(
  url: string,
  auth: Record<string, string>,
  fields: Record<string, string | undefined>,
  filename: string,
  content: string,
  broken: typeof framing extends Arbitrary<infer T> ? T : never,
  extraHeaders: Record<string, string>,
): Case {
  const boundary = `----prop${sha256(filename + content).slice(0, 12)}`
  const parts = [
    ...Object.entries(fields)
      .filter((e): e is [string, string] => e[1] !== undefined)
      .map(([name, value]) => ({ name: name === 'unknown' ? value.slice(0, 20) || 'x' : name, value })),
    { name: 'file', filename, content: Buffer.from(content) },
  ]
  let payload = form(parts, boundary)
  let contentType = `multipart/form-data; boundary=${boundary}`
  if (broken.kind === 'truncate') payload = payload.subarray(0, Math.floor(payload.length * broken.at))
  if (broken.kind === 'no-boundary') contentType = 'multipart/form-data'
  if (broken.kind === 'other-boundary') contentType = 'multipart/form-data; boundary=not-the-one'
  if (broken.kind === 'garbage') payload = Buffer.from(broken.bytes)
  if (broken.kind === 'splice') {
    const at = Math.floor(payload.length * broken.at)
    payload = Buffer.concat([payload.subarray(0, at), Buffer.from(broken.bytes), payload.subarray(at)])
  }
  return { method: 'POST', url, headers: { ...auth, ...extraHeaders, 'content-type': contentType }, payload }
}

const fileId = fc.oneof(fc.uuid(), hostile)
const providerPath = fc.oneof(fc.constantFrom('kimi', 'glm'), hostile)

function cases(tenants: { acting: Record<string, string> }) {
  const auth = fc.oneof(
    { weight: 6, arbitrary: fc.constant(tenants.acting) },
    { weight: 1, arbitrary: fc.constant({ authorization: `Bearer ${testKeys.alice}` }) },
    {
      weight: 1,
      arbitrary: headerValue.map((v) => ({ authorization: `Bearer ${testKeys.admin}`, 'x-tenant-id': v || 'x' })),
    },
    { weight: 1, arbitrary: headerValue.map((v) => ({ authorization: v })) },
  )
  const extra = fc.record(
    { 'x-request-id': headerValue, 'x-content-sha256': fc.oneof(headerValue, fc.constant(sha256('content'))) },
    { requiredKeys: [] },
  )
  // A few fixed contents make dedup hits likely; the rest are new (or empty) files.
  const content = fc.oneof(fc.constantFrom('content', 'other content'), fc.string({ maxLength: 64 }))
  const filename = fc.oneof(
    fc.constantFrom('doc.txt', 'a.pdf', 'a.jsonl'),
    hostile,
    hostile.map((h) => `${h}.txt`),
  )

  const v1Upload = fc
    .tuple(auth, uploadFields, filename, content, framing, extra, declaredHash)
    .map(([a, fields, name, body, broken, headers, hash]) => {
      const { 'x-content-sha256': odd, ...rest } = headers
      const declared =
        hash === 'right' ? sha256(body) : hash === 'wrong' ? sha256(`${body}!`) : hash === 'hostile' ? odd : undefined
      return multipartCase('/v1/files', a, fields, name, body, broken, {
        ...rest,
        ...(declared !== undefined ? { 'x-content-sha256': declared } : {}),
      })
    })

  const facadeUpload = fc
    .tuple(
      auth,
      providerPath,
      fc.record(
        { purpose, 'expires_after[anchor]': hostile, 'expires_after[seconds]': numberLike },
        { requiredKeys: [] },
      ),
      filename,
      content,
      framing,
    )
    .map(([a, p, fields, name, body, broken]) =>
      multipartCase(`/providers/${enc(p)}/v1/files`, a, fields, name, body, broken, {}),
    )
  const v1List = fc
    .tuple(
      auth,
      fc.record(
        {
          provider: provider,
          status: fc.oneof(fc.constantFrom('completed', 'deleted', 'failed'), hostile),
          sha256: fc.oneof(fc.constant(sha256('content')), hostile),
          purpose,
          include_deleted: fc.oneof(fc.constantFrom('true', 'false'), hostile),
          limit: numberLike,
          after: cursorLike,
        },
        { requiredKeys: [] },
      ),
    )
    .map(([a, q]): Case => ({ method: 'GET', url: `/v1/files${query(Object.entries(q))}`, headers: a }))
  const v1One = fc
    .tuple(auth, fileId, fc.constantFrom('', '/content'), fc.constantFrom<'GET' | 'DELETE'>('GET', 'DELETE'))
    .map(
      ([a, id, tail, method]): Case => ({
        method: tail ? 'GET' : method,
        url: `/v1/files/${enc(id)}${tail}`,
        headers: a,
      }),
    )
  const facadeList = fc
    .tuple(
      auth,
      providerPath,
      fc.record(
        { after: fileId, limit: numberLike, order: fc.oneof(fc.constantFrom('asc', 'desc'), hostile), purpose },
        { requiredKeys: [] },
      ),
    )
    .map(
      ([a, p, q]): Case => ({
        method: 'GET',
        url: `/providers/${enc(p)}/v1/files${query(Object.entries(q))}`,
        headers: a,
      }),
    )
  const facadeOne = fc
    .tuple(
      auth,
      providerPath,
      fileId,
      fc.constantFrom('', '/content'),
      fc.constantFrom<'GET' | 'DELETE'>('GET', 'DELETE'),
    )
    .map(
      ([a, p, id, tail, method]): Case => ({
        method: tail ? 'GET' : method,
        url: `/providers/${enc(p)}/v1/files/${enc(id)}${tail}`,
        headers: a,
      }),
    )
  const limits = auth.map((a): Case => ({ method: 'GET', url: '/v1/limits', headers: a }))
  const cleanup = fc
    .tuple(
      fc.oneof(
        fc
          .record(
            {
              dry_run: fc.oneof(fc.boolean(), hostile),
              jobs: fc.oneof(
                fc.array(fc.oneof(fc.constantFrom('expired', 'stuck', 'orphaned', 'reconcile'), hostile), {
                  maxLength: 4,
                }),
                hostile,
              ),
              limit: fc.oneof(fc.integer(), fc.double(), hostile),
              [prototypeNames[0] as string]: hostile,
            },
            { requiredKeys: [] },
          )
          .map((o) => JSON.stringify(o)),
        fc.json(),
        hostile,
        fc.nat({ max: 20_000 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`),
      ),
      fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded'),
    )
    .map(
      ([payload, type]): Case => ({
        method: 'POST',
        url: '/v1/cleanup',
        headers: { authorization: `Bearer ${testKeys.admin}`, 'content-type': type },
        payload,
      }),
    )
  // Keys and the audit: bodies, ids, cursors and filters.
  const keyId = fc.oneof(fc.stringMatching(/^[a-z0-9]{16}$/), hostile)
  const keyBody = fc.oneof(
    {
      weight: 3,
      arbitrary: fc
        .record(
          {
            tenant: fc.oneof(fc.constantFrom('prop-tenant', 'auth0|prop@example.com'), hostile),
            name: hostile,
            scopes: fc.oneof(fc.array(fc.oneof(fc.constantFrom(...scopes), hostile), { maxLength: 5 }), hostile),
            providers: fc.oneof(
              fc.constant(null),
              fc.array(fc.oneof(fc.constantFrom('kimi', 'glm'), hostile), { maxLength: 3 }),
              hostile,
            ),
            expires_in: fc.oneof(fc.integer(), fc.double(), hostile),
            grace_seconds: fc.oneof(fc.integer(), hostile),
            [prototypeNames[0] as string]: hostile,
          },
          { requiredKeys: [] },
        )
        .map((o) => JSON.stringify(o)),
    },
    fc.json(),
    hostile,
  )
  const keysCreate = fc.tuple(auth, keyBody).map(
    ([a, payload]): Case => ({
      method: 'POST',
      url: '/v1/keys',
      headers: { ...a, 'content-type': 'application/json' },
      payload,
    }),
  )
  const keysList = fc
    .tuple(auth, fc.record({ tenant: hostile, limit: numberLike, after: cursorLike }, { requiredKeys: [] }))
    .map(([a, q]): Case => ({ method: 'GET', url: `/v1/keys${query(Object.entries(q))}`, headers: a }))
  const keysOne = fc
    .tuple(auth, keyId, fc.constantFrom('get', 'revoke', 'rotate'), keyBody)
    .map(([a, id, what, payload]): Case => {
      const url = `/v1/keys/${enc(id)}`
      if (what === 'get') return { method: 'GET', url, headers: a }
      if (what === 'revoke') return { method: 'DELETE', url, headers: a }
      return { method: 'POST', url: `${url}/rotate`, headers: { ...a, 'content-type': 'application/json' }, payload }
    })
  const audit = fc
    .tuple(
      auth,
      fc.record(
        {
          tenant: hostile,
          action: fc.oneof(fc.constantFrom('file.upload', 'key.create'), hostile),
          target: fc.oneof(fc.uuid(), hostile),
          since: fc.oneof(
            fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
            hostile,
          ),
          limit: numberLike,
          after: cursorLike,
        },
        { requiredKeys: [] },
      ),
    )
    .map(([a, q]): Case => ({ method: 'GET', url: `/v1/audit${query(Object.entries(q))}`, headers: a }))
  return fc.oneof(
    { weight: 1, arbitrary: keysCreate },
    { weight: 1, arbitrary: keysList },
    { weight: 1, arbitrary: keysOne },
    { weight: 1, arbitrary: audit },
    { weight: 5, arbitrary: v1Upload },
    { weight: 2, arbitrary: facadeUpload },
    { weight: 3, arbitrary: v1List },
    { weight: 2, arbitrary: v1One },
    { weight: 2, arbitrary: facadeList },
    { weight: 2, arbitrary: facadeOne },
    { weight: 1, arbitrary: limits },
    { weight: 1, arbitrary: cleanup },
  )
}

// ---- what must hold -----------------------------------------------------------------------

const catalogue = new Set(Object.keys(errorCatalog))

function checkAnswer(c: Case, res: Awaited<ReturnType<FastifyInstance['inject']>>) {
  const where = `${c.method} ${c.url.slice(0, 200)} -> ${res.statusCode} ${res.body.slice(0, 300)}`
  assert.ok(res.statusCode < 500, `no 5xx: ${where}`)
  if (res.statusCode < 400) return
  const body = JSON.parse(res.body) as Record<string, unknown>
  if (c.url.startsWith('/providers/')) {
    assert.match(String(res.headers['content-type']), /^application\/json/, where)
    const error = body.error as Record<string, unknown> | undefined
    assert.equal(typeof error?.message, 'string', where)
    assert.equal(typeof error?.type, 'string', where)
    // A catalogue code, or OpenAI's own code for an exhausted quota (what its SDK expects there).
    const code = String(error?.code)
    assert.ok(catalogue.has(code.toUpperCase()) || code === 'insufficient_quota', `a catalogue code: ${where}`)
  } else {
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/, where)
    assert.ok(catalogue.has(String(body.code)), `a catalogue code: ${where}`)
    assert.equal(body.status, res.statusCode, where)
    assert.equal(typeof body.title, 'string', where)
    assert.equal(typeof body.instance, 'string', where)
  }
}

async function checkNothingLeft(ctx: UploadContext, sql: postgres.Sql, c: Case) {
  const where = `${c.method} ${c.url.slice(0, 200)}`
  assert.deepEqual(await spoolEntries(ctx.spoolDir), [], `no spool file: ${where}`)
  assert.equal(await registryValue(ctx.app, 'filegate_file_active_uploads'), 0, `no active upload: ${where}`)
  const [inFlight] =
    await sql`select count(*)::int as n from provider_file_uploads where status in ('pending', 'uploading')`
  assert.equal(inFlight?.n, 0, `no row in flight: ${where}`)
  // What the providers hold is exactly what the database says occupies them.
  const rows = await sql`select provider, provider_file_id from provider_file_uploads
                          where provider_file_id is not null and provider_deleted = false`
  const recorded = rows.map((r) => `${r.provider}:${r.provider_file_id}`).sort()
  const held = [
    ...[...ctx.fakes.kimi.files.keys()].map((id) => `kimi:${id}`),
    ...[...ctx.fakes.glm.files.keys()].map((id) => `glm:${id}`),
  ].sort()
  assert.deepEqual(held, recorded, `provider files match the rows: ${where}`)
}

describe('hostile input, generated', () => {
  test(`${numRuns} generated hostile requests over every route: no 5xx, catalogue errors, nothing left`, async (t) => {
    const ctx = await setupUploads(t, database, { GLM_MAX_FILE_BYTES: '1048576', KIMI_MAX_FILE_BYTES: '1048576' })
    if (!ctx) return
    const url = database()?.url as string
    const sql = postgres(url, { max: 1, onnotice: () => {} })
    t.after(() => sql.end())
    const acting = { authorization: `Bearer ${testKeys.admin}`, 'x-tenant-id': 'prop-tenant' }
    let runs = 0
    const statuses = new Map<number, number>()
    await fc.assert(
      fc.asyncProperty(cases({ acting }), async (c) => {
        runs++
        const res = await ctx.app.inject({
          method: c.method,
          url: c.url,
          headers: c.headers,
          ...(c.payload !== undefined ? { payload: c.payload } : {}),
        })
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
        checkAnswer(c, res)
        await checkNothingLeft(ctx, sql, c)
      }),
      { seed, numRuns, endOnFailure: true },
    )
    const tally = [...statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`)
    t.diagnostic(`fast-check seed ${seed}: ${runs} cases run (${numRuns} asked); answers ${tally.join(', ')}`)
    assert.equal(runs, numRuns)
  })
})

// ---- every route with a JSON body, from the app's own OpenAPI document ----------------------

interface JsonSchema {
  type?: string | string[]
  properties?: Record<string, JsonSchema>
  items?: JsonSchema
  anyOf?: JsonSchema[]
  oneOf?: JsonSchema[]
  enum?: unknown[]
  const?: unknown
  examples?: unknown[]
  required?: string[]
  minimum?: number
  maximum?: number
}

interface JsonOperation {
  method: 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  /** The OpenAPI path, e.g. /v1/files/{id}/copies */
  path: string
  schema: JsonSchema
  /** The documented example body: values that pass validation together. */
  example: Record<string, unknown> | undefined
}

/** Every operation whose request body may be JSON, as the app documents it (routes added later included). */
function jsonBodyOperations(doc: { paths: Record<string, Record<string, unknown>> }): JsonOperation[] {
  const found: JsonOperation[] = []
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      type Media = { schema?: JsonSchema; example?: Record<string, unknown> }
      const body = (op as { requestBody?: { content?: Record<string, Media> } }).requestBody
      const json = body?.content?.['application/json']
      if (!json) continue
      found.push({
        method: method.toUpperCase() as JsonOperation['method'],
        path,
        schema: json.schema ?? {},
        example: json.example,
      })
    }
  }
  return found
}

/**
 * Numbers that broke a bound before: past the date range (1e308, 2^53 - 1, 8.64e15 ms), a thousand
 * years (31536000000 s), the TTL bound itself and one past it, and the usual edges.
 */
const hostileNumbers = fc.constantFrom(
  1e308,
  -1e308,
  9007199254740991,
  8640000000000,
  31536000000,
  maxExpiresInSeconds,
  maxExpiresInSeconds + 1,
  -1,
  0,
  1,
  1.5,
  3600,
  86400,
)

/** Like `sometimes`, but the valid value five times out of six: a body has several fields to get right. */
const likely = <T>(valid: fc.Arbitrary<T>, other: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 5, arbitrary: valid }, { weight: 1, arbitrary: other })

/** A JSON value for `schema`: mostly what it describes (its examples, enums and ranges), sometimes anything. */
function jsonValueFor(schema: JsonSchema, depth = 0, example?: Record<string, unknown>): Arbitrary<unknown> {
  const anything: Arbitrary<unknown> = fc.oneof(hostile, hostileNumbers, fc.jsonValue({ maxDepth: 2 }))
  const variants = schema.anyOf ?? schema.oneOf
  if (variants && depth < 4) return fc.oneof(...variants.map((v) => jsonValueFor(v, depth + 1)), anything)
  if (schema.const !== undefined) return sometimes(fc.constant(schema.const), anything)
  if (schema.enum) return sometimes(fc.constantFrom(...schema.enum), anything)
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type
  const examples = schema.examples?.length ? [fc.constantFrom(...schema.examples)] : []
  switch (type) {
    case 'integer':
    case 'number': {
      const min = schema.minimum ?? -1000
      const max = Math.min(schema.maximum ?? min + 100_000, Number.MAX_SAFE_INTEGER)
      // Numbers past a bound are what broke before: as likely as ones within it.
      return fc.oneof(
        { weight: 2, arbitrary: fc.oneof(fc.integer({ min, max }), ...examples) },
        { weight: 2, arbitrary: hostileNumbers },
        { weight: 1, arbitrary: anything },
      )
    }
    case 'string':
      return sometimes(examples.length ? fc.oneof(...examples) : nasty, anything)
    case 'boolean':
      return sometimes(fc.boolean(), anything)
    case 'array':
      return sometimes(fc.array(jsonValueFor(schema.items ?? {}, depth + 1), { maxLength: 4 }), anything)
    case 'object': {
      const properties = Object.entries(schema.properties ?? {})
      // The documented example names values that get past validation together (provider, purpose).
      const fields = Object.fromEntries(
        properties.map(([name, sub]) => {
          const value = jsonValueFor(sub, depth + 1)
          return [name, example && name in example ? likely(fc.constant(example[name]), value) : value]
        }),
      )
      const extra = fc.dictionary(fc.oneof(fc.constantFrom(...prototypeNames), nasty), anything, { maxKeys: 2 })
      return likely(
        fc
          .tuple(
            fc.oneof(
              fc.record(fields, { requiredKeys: schema.required ?? [] }),
              fc.record(fields, { requiredKeys: [] }),
            ),
            present(extra, 1, 8),
          )
          .map(([known, more]) => ({ ...known, ...(more ?? {}) })),
        anything,
      )
    }
    default:
      return anything
  }
}

/** A path parameter: a real file of the acting tenant, any uuid, or anything. */
const pathParam = (name: string, fileId: string) =>
  name === 'provider' ? providerPath : sometimes(fc.constant(fileId), fc.oneof(fc.uuid(), hostile))

function jsonCases(ops: JsonOperation[], acting: Record<string, string>, fileId: string) {
  const auth = fc.oneof(
    { weight: 8, arbitrary: fc.constant(acting) },
    { weight: 1, arbitrary: fc.constant({ authorization: `Bearer ${testKeys.alice}` }) },
    { weight: 1, arbitrary: headerValue.map((v) => ({ authorization: v })) },
  )
  return fc.oneof(
    ...ops.map((op) => {
      const names = [...op.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1] as string)
      const params = fc.tuple(...names.map((n) => pathParam(n, fileId)))
      const payload = fc.oneof(
        { weight: 8, arbitrary: jsonValueFor(op.schema, 0, op.example).map((v) => JSON.stringify(v)) },
        { weight: 1, arbitrary: fc.oneof(hostile, fc.json()) },
        { weight: 1, arbitrary: fc.nat({ max: 20_000 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`) },
      )
      const type = fc.oneof(
        { weight: 8, arbitrary: fc.constant('application/json') },
        { weight: 1, arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded') },
      )
      return fc.tuple(auth, params, payload, type).map(([a, values, body, contentType]): Case => {
        let url = op.path
        names.forEach((n, i) => {
          url = url.replace(`{${n}}`, enc(String(values[i])))
        })
        return {
          method: op.method as Case['method'],
          url,
          headers: { ...a, 'content-type': contentType },
          payload: body,
        }
      })
    }),
  )
}

/** A TTL past the one bound is refused wherever it is accepted: never a success. */
function checkTtlBound(c: Case, res: Awaited<ReturnType<FastifyInstance['inject']>>) {
  if (res.statusCode >= 300 || typeof c.payload !== 'string') return
  let body: unknown
  try {
    body = JSON.parse(c.payload)
  } catch {
    return
  }
  if (body === null || typeof body !== 'object') return
  const ttl = (body as Record<string, unknown>).expires_in
  if (ttl === undefined) return
  assert.ok(
    typeof ttl === 'number' && Number.isInteger(ttl) && ttl >= 1 && ttl <= maxExpiresInSeconds,
    `expires_in ${String(ttl)} was accepted: ${c.method} ${c.url} -> ${res.statusCode} ${res.body.slice(0, 300)}`,
  )
}

describe('hostile JSON bodies, generated for every route that takes one', () => {
  test('every JSON body route from the OpenAPI document: no 5xx, catalogue errors, one TTL bound, nothing left', async (t) => {
    // A database of its own: "nothing left" compares every row with what these fakes hold.
    if (!(await requirePostgres(t))) return
    const db = await createTestDatabase()
    t.after(() => db.drop())
    const originals = await tempDir(t, 'fg-prop-originals-')
    const ctx = await setupUploads(t, () => db, { ORIGINALS_URL: `file://${originals}` })
    if (!ctx) return
    const url = db.url
    const sql = postgres(url, { max: 1, onnotice: () => {} })
    t.after(() => sql.end())
    const tenant = 'prop-json-tenant'
    const acting = { authorization: `Bearer ${testKeys.admin}`, 'x-tenant-id': tenant }
    // A live file with its original kept, so that routes on a file (copies) get past 404 and 409.
    const seeded = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('content kept for copies')])
    assert.equal(seeded.statusCode, 201, seeded.body)
    const fileId = (seeded.json() as { id: string }).id

    const ops = jsonBodyOperations(ctx.app.swagger() as never)
    const listed = ops.map((o) => `${o.method} ${o.path}`)
    for (const known of ['POST /v1/cleanup', 'POST /v1/files/{id}/copies']) {
      assert.ok(listed.includes(known), `the document lists ${known}: ${listed.join(', ')}`)
    }
    let runs = 0
    const statuses = new Map<string, number>()
    await fc.assert(
      fc.asyncProperty(jsonCases(ops, acting, fileId), async (c) => {
        runs++
        const res = await ctx.app.inject({ method: c.method, url: c.url, headers: c.headers, payload: c.payload })
        const route = ops.find((o) => new RegExp(`^${o.path.replace(/\{[^}]+\}/g, '[^/]*')}$`).test(c.url))
        const key = `${route?.path ?? '?'} ${res.statusCode}`
        statuses.set(key, (statuses.get(key) ?? 0) + 1)
        checkAnswer(c, res)
        checkTtlBound(c, res)
        await checkNothingLeft(ctx, sql, c)
      }),
      { seed, numRuns: jsonRuns, endOnFailure: true },
    )
    const tally = [...statuses].sort(([a], [b]) => a.localeCompare(b)).map(([s, n]) => `${s}×${n}`)
    t.diagnostic(`fast-check seed ${seed}: ${runs} cases over ${listed.join(', ')}; answers ${tally.join(', ')}`)
    assert.equal(runs, jsonRuns)
  })
})
