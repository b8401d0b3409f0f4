/**
 * The OpenAPI 3.1 document: its static parts here, its paths from the route schemas through
 * @fastify/swagger. `finishDocument` then applies the conventions that hold for every route, so
 * a new route only declares its TypeBox schemas and still comes out right:
 * - error responses that use the Problem schema are `application/problem+json` (RFC 9457 §3),
 *   with one example per catalogue code of that status, `Retry-After` on 429/503 and
 *   `WWW-Authenticate` on 401; every operation with problem responses also documents 500;
 * - a request parameter or body property with a default is optional for the client (the server
 *   fills the default), whatever TypeBox put in `required`;
 * - a union of string literals is one `enum` (what client generators turn into a union type);
 * - every operation has an operationId and an explicit `security` (`[]` for the open probes).
 * Only the document changes: validation and serialization still use the route schemas as written.
 */
import { STATUS_CODES } from 'node:http'
import { AppError, type ErrorCode, errorCatalog, toProblem } from './errors.js'

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'filegate',
    version: '0.1.0',
    description:
      'Files gateway for AI providers (Moonshot Kimi, Zhipu GLM, OpenAI-compatible): provider limits, SHA-256 ' +
      'deduplication, retention and orphan cleanup, metrics. Errors are RFC 9457 problem+json.',
    license: { name: 'MIT', identifier: 'MIT' },
  },
  servers: [{ url: 'http://127.0.0.1:8080', description: 'The default local address (HOST, PORT)' }],
  tags: [
    { name: 'files', description: 'Upload, list, read and delete files' },
    { name: 'limits', description: 'Provider limits and usage' },
    { name: 'admin', description: 'Admin-only operations' },
    { name: 'probes', description: 'Health, readiness and metrics' },
  ],
  components: {
    securitySchemes: {
      bearerAuth: {
        type: 'http' as const,
        scheme: 'bearer',
        description: 'An API key from API_KEYS. An admin key (tenant *) acts for a tenant through X-Tenant-Id.',
      },
    },
  },
}

export const problemMediaType = 'application/problem+json'
const problemRef = '#/components/schemas/Problem'
const exampleRequestId = '5d1c7f0e-58b3-4a8e-9d39-63a3c7c1f0aa'

/** Extension members the catalogue documents for some codes (SPEC §1), for the examples. */
const exampleExtensions: Partial<Record<ErrorCode, Record<string, unknown>>> = {
  VALIDATION_FAILED: { errors: [{ in: 'querystring', path: '/limit', message: 'must be <= 100' }] },
  FILE_TOO_LARGE: { provider: 'glm', limit_bytes: 20971520 },
  UNSUPPORTED_FILE_TYPE: { provider: 'kimi', extension: 'exe', allowed: ['pdf', 'txt', 'md'] },
  PROVIDER_REJECTED: { provider: 'kimi' },
}

/** One problem+json example per catalogue code with this status, named by code. */
export function problemExamples(status: number): Record<string, { summary: string; value: unknown }> {
  const examples: Record<string, { summary: string; value: unknown }> = {}
  for (const [code, entry] of Object.entries(errorCatalog) as Array<[ErrorCode, { status: number; title: string }]>) {
    if (entry.status !== status) continue
    const err = new AppError(code, { extensions: exampleExtensions[code] ?? {} })
    examples[code] = { summary: entry.title, value: toProblem(err, exampleRequestId).body }
  }
  return examples
}

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)
const httpMethods = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']

/** `anyOf: [{type:string, enum:[a]}, {type:string, enum:[b]}]` → `{type:string, enum:[a, b]}`, everywhere. */
function collapseLiteralUnions(node: unknown): void {
  if (Array.isArray(node)) {
    for (const item of node) collapseLiteralUnions(item)
    return
  }
  if (!isObject(node)) return
  for (const value of Object.values(node)) collapseLiteralUnions(value)
  const variants = node.anyOf
  if (!Array.isArray(variants) || variants.length < 2) return
  const literals = variants.every(
    (v) =>
      isObject(v) &&
      v.type === 'string' &&
      Array.isArray(v.enum) &&
      Object.keys(v).every((k) => k === 'type' || k === 'enum'),
  )
  if (!literals) return
  delete node.anyOf
  node.type = 'string'
  node.enum = variants.flatMap((v) => (v as { enum: unknown[] }).enum)
}

/** Drops properties that carry a default from `required`: the client may leave them out. */
function relaxDefaultedProperties(schema: unknown): void {
  if (!isObject(schema) || !isObject(schema.properties) || !Array.isArray(schema.required)) return
  const properties = schema.properties
  schema.required = schema.required.filter((name) => !(isObject(properties[name]) && 'default' in properties[name]))
  if ((schema.required as unknown[]).length === 0) delete schema.required
}

const operationIdFor = (method: string, path: string) =>
  method +
  path
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((part) => part[0]?.toUpperCase() + part.slice(1))
    .join('')

function finishResponses(operation: Json): void {
  const responses = isObject(operation.responses) ? operation.responses : {}
  operation.responses = responses
  let hasProblems = false
  for (const [status, response] of Object.entries(responses)) {
    if (!isObject(response)) continue
    if (response.description === 'Default Response') response.description = STATUS_CODES[Number(status)] ?? status
    const code = Number(status)
    if (!(code >= 400) || !isObject(response.content)) continue
    const usesProblem = Object.values(response.content).some(
      (media) => isObject(media) && isObject(media.schema) && media.schema.$ref === problemRef,
    )
    if (!usesProblem) continue
    hasProblems = true
    Object.assign(response, problemResponse(code))
  }
  if (hasProblems && !responses['500']) responses['500'] = problemResponse(500)
}

function problemResponse(status: number): Json {
  const codes = Object.entries(errorCatalog)
    .filter(([, e]) => e.status === status)
    .map(([code]) => code)
  const response: Json = {
    description: `${STATUS_CODES[status] ?? status}: problem details (RFC 9457), code ${codes.join(' | ')}`,
    content: { [problemMediaType]: { schema: { $ref: problemRef }, examples: problemExamples(status) } },
  }
  if (status === 429 || status === 503) {
    response.headers = {
      'Retry-After': {
        description: 'Seconds to wait before retrying (absent on PROVIDER_NOT_CONFIGURED)',
        schema: { type: 'integer', minimum: 1 },
      },
    }
  } else if (status === 401) {
    response.headers = {
      'WWW-Authenticate': { description: 'Bearer realm="filegate"', schema: { type: 'string' } },
    }
  }
  return response
}

/** Applies the document-wide conventions (see the top of this file). Mutates and returns `doc`. */
export function finishDocument<T>(doc: T): T {
  const d = doc as Json
  const paths = isObject(d.paths) ? d.paths : {}
  for (const [path, item] of Object.entries(paths)) {
    if (!isObject(item)) continue
    for (const method of httpMethods) {
      const operation = item[method]
      if (!isObject(operation)) continue
      operation.operationId ??= operationIdFor(method, path)
      operation.security ??= []
      if (Array.isArray(operation.parameters)) {
        for (const parameter of operation.parameters) {
          if (isObject(parameter) && isObject(parameter.schema) && 'default' in parameter.schema) {
            parameter.required = false
          }
        }
      }
      if (isObject(operation.requestBody) && isObject(operation.requestBody.content)) {
        for (const media of Object.values(operation.requestBody.content)) {
          if (isObject(media)) relaxDefaultedProperties(media.schema)
        }
      }
      finishResponses(operation)
    }
  }
  collapseLiteralUnions(d)
  return doc
}

/** Component names are the schemas' `$id`s (File, Problem), not def-0, def-1. */
export const swaggerOptions = {
  openapi: openApiDocument,
  refResolver: {
    buildLocalReference: (json: Record<string, unknown>, _baseUri: unknown, _fragment: string, i: number) =>
      typeof json.$id === 'string' ? json.$id : `def-${i}`,
  },
  transformObject: ({ openapiObject }: { openapiObject?: unknown }) =>
    finishDocument(openapiObject as Record<string, unknown>),
}
