/**
 * The OpenAPI 3.1 document: its static parts here, its paths from the route schemas through
 * @fastify/swagger. `finishDocument` then applies the conventions that hold for every route, so
 * a new route only declares its TypeBox schemas and still comes out right:
 * - error responses that use the Problem schema become references to one shared response per
 *   status (components/responses): `application/problem+json` (RFC 9457 §3), one example per
 *   catalogue code of that status, `Retry-After` on 429/503, `WWW-Authenticate` on 401; every
 *   operation with problem responses also documents 500;
 * - a request parameter or body property with a default is optional for the client (the server
 *   fills the default), whatever TypeBox put in `required`;
 * - a union of string literals is one `enum` (what client generators turn into a union type);
 * - every operation has an explicit `security`, derived from the scope its route declares
 *   (`config.scope`): either bearer kind with that scope, or `[]` for the public probes. Its
 *   operationId is the route's own: none is made up here, so a route without one fails the OpenAPI
 *   lint (redocly.yaml) instead of naming a generated client's method after its path.
 * Only the document changes: validation and serialization still use the route schemas as written.
 */
import { STATUS_CODES } from 'node:http'
import type { FastifyDynamicSwaggerOptions } from '@fastify/swagger'
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
  // Relative: /docs ("Try it out") and generated clients call the host that serves the document.
  servers: [{ url: '/', description: 'The host that serves this document' }],
  tags: [
    { name: 'files', description: 'Upload, list, read and delete files' },
    { name: 'limits', description: 'Provider limits and usage' },
    {
      name: 'uploads',
      description:
        'Resumable uploads over tus 1.0 (tus.io/protocols/resumable-upload: creation, creation-with-upload, ' +
        'expiration, termination). Each request but OPTIONS sends Tus-Resumable: 1.0.0; the state travels in ' +
        'headers (Upload-Offset, Upload-Length, Upload-Expires, Location, Filegate-File-Id), which the operations ' +
        'below describe. GET /v1/uploads/{id} is the same upload as JSON. docs/uploads.md has examples.',
    },
    { name: 'admin', description: 'Admin-only operations' },
    { name: 'keys', description: 'API keys kept in the database: create, list, revoke, rotate' },
    { name: 'audit', description: 'Who changed what' },
    { name: 'probes', description: 'Health, readiness and metrics' },
    {
      name: 'openai',
      description: "The provider's own files API shape (OpenAI-compatible), for existing OpenAI SDK clients",
    },
  ],
  components: {
    securitySchemes: {
      apiKey: {
        type: 'http' as const,
        scheme: 'bearer',
        description:
          'An API key: one kept in the database (fg_<id>_<secret>, POST /v1/keys or `filegate keys create`) or an ' +
          'API_KEYS entry. The scopes listed per operation are the one it needs (admin holds every scope). An admin ' +
          'acts for a tenant through X-Tenant-Id.',
      },
      jwt: {
        type: 'http' as const,
        scheme: 'bearer',
        bearerFormat: 'JWT',
        description:
          "A JWT of the identity provider (JWT_ISSUER), e.g. a Supabase Auth access token. Its scopes claim must hold the operation's scope; without one it holds files:read files:write.",
      },
    },
  },
}

export const problemMediaType = 'application/problem+json'
const problemRef = '#/components/schemas/Problem'
const exampleRequestId = '5d1c7f0e-58b3-4a8e-9d39-63a3c7c1f0aa'

/** Extension members some codes carry (provider, limits, allowed types), for the examples. */
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

/** `Bad Request` → `BadRequest`: the name of a shared problem response in components/responses. */
const responseName = (status: number) => (STATUS_CODES[status] ?? `Status${status}`).replace(/[^A-Za-z0-9]/g, '')

/** The shared problem response for a status, its examples one per catalogue code (added to `examples`). */
function problemResponse(status: number, examples: Json): Json {
  const codes = problemExamples(status)
  for (const [code, example] of Object.entries(codes)) examples[code] = example
  const response: Json = {
    description: `${STATUS_CODES[status] ?? status}: problem details (RFC 9457); code ${Object.keys(codes).join(' | ')}`,
    content: {
      [problemMediaType]: {
        schema: { $ref: problemRef },
        examples: Object.fromEntries(
          Object.keys(codes).map((code) => [code, { $ref: `#/components/examples/${code}` }]),
        ),
      },
    },
  }
  if (status === 429 || status === 503) {
    response.headers = {
      'Retry-After': {
        description: 'Seconds to wait before retrying (not sent with PROVIDER_NOT_CONFIGURED)',
        schema: { type: 'integer', minimum: 1 },
      },
    }
  } else if (status === 401) {
    response.headers = { 'WWW-Authenticate': { description: 'Bearer realm="filegate"', schema: { type: 'string' } } }
  }
  return response
}

/** Replaces each Problem-schema error response by a reference to the shared one; adds 500 where errors are documented. */
function finishResponses(operation: Json, shared: { responses: Json; examples: Json }): void {
  const responses = isObject(operation.responses) ? operation.responses : {}
  operation.responses = responses
  const useShared = (status: number) => {
    const name = responseName(status)
    shared.responses[name] ??= problemResponse(status, shared.examples)
    responses[String(status)] = { $ref: `#/components/responses/${name}` }
  }
  let hasProblems = false
  for (const [key, response] of Object.entries(responses)) {
    if (!isObject(response)) continue
    const status = Number(key)
    if (response.description === 'Default Response') response.description = STATUS_CODES[status] ?? key
    if (!(status >= 400) || !isObject(response.content)) continue
    const usesProblem = Object.values(response.content).some(
      (media) => isObject(media) && isObject(media.schema) && media.schema.$ref === problemRef,
    )
    if (!usesProblem) continue
    hasProblems = true
    useShared(status)
  }
  if (hasProblems && !responses['500']) useShared(500)
  operation.responses = Object.fromEntries(Object.entries(responses).sort(([a], [b]) => a.localeCompare(b)))
}

const operationKeyOrder = ['operationId', 'summary', 'description', 'tags', 'security', 'parameters', 'requestBody']

/**
 * @fastify/swagger marks every JSON request body required. A body whose properties are all
 * optional (POST /v1/cleanup: every field has a default) may be left out, and client generators
 * should not demand one.
 */
function relaxOptionalBody(operation: Json): void {
  const body = operation.requestBody
  if (!isObject(body) || !isObject(body.content)) return
  const json = body.content['application/json']
  const schema = isObject(json) && isObject(json.schema) ? json.schema : undefined
  if (schema?.type === 'object' && (!Array.isArray(schema.required) || schema.required.length === 0)) {
    body.required = false
  }
}

/** Applies the document-wide conventions (see the top of this file). */
export function finishDocument<T>(doc: T): T {
  const d = doc as Json
  const paths = isObject(d.paths) ? d.paths : {}
  const components = isObject(d.components) ? d.components : {}
  d.components = components
  const shared = { responses: {} as Json, examples: {} as Json }
  for (const item of Object.values(paths)) {
    if (!isObject(item)) continue
    for (const method of httpMethods) {
      const operation = item[method]
      if (!isObject(operation)) continue
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
      relaxOptionalBody(operation)
      finishResponses(operation, shared)
      // A stable, readable key order: what the operation is before what it takes and answers.
      const ordered: Json = {}
      for (const key of operationKeyOrder) if (key in operation) ordered[key] = operation[key]
      item[method] = Object.assign(ordered, operation)
    }
  }
  const sortByKey = (o: Json) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)))
  if (Object.keys(shared.responses).length > 0) components.responses = sortByKey(shared.responses)
  if (Object.keys(shared.examples).length > 0) components.examples = sortByKey(shared.examples)
  collapseLiteralUnions(d)
  return doc
}

/**
 * Route-level step: @fastify/swagger drops `examples` that sit beside a `$ref` response schema
 * (`{ ...FileRef, examples }`), so such a response is handed over in its `content` form, which
 * keeps them as media examples. The route's own schema, used for serialization, is not touched.
 */
export const transformRoute: NonNullable<FastifyDynamicSwaggerOptions['transform']> = ({
  schema: given,
  url,
  route,
}) => {
  const schema = withSecurity(given, (route?.config as { scope?: string } | undefined)?.scope)
  const response = (schema as { response?: Record<string, unknown> } | undefined)?.response
  if (!response || !Object.values(response).some((r) => isObject(r) && '$ref' in r && Array.isArray(r.examples))) {
    return { schema, url }
  }
  const produces = (schema as { produces?: string[] }).produces ?? ['application/json']
  const rewritten: Record<string, unknown> = {}
  for (const [status, r] of Object.entries(response)) {
    if (isObject(r) && typeof r.$ref === 'string' && Array.isArray(r.examples)) {
      const examples = r.examples as unknown[]
      const media =
        examples.length === 1
          ? { schema: { $ref: r.$ref }, example: examples[0] }
          : {
              schema: { $ref: r.$ref },
              examples: Object.fromEntries(examples.map((v, i) => [`example${i + 1}`, { value: v }])),
            }
      rewritten[status] = {
        description: r.description ?? STATUS_CODES[Number(status)] ?? status,
        content: Object.fromEntries(produces.map((type) => [type, media])),
      }
    } else {
      rewritten[status] = r
    }
  }
  return { schema: { ...schema, response: rewritten }, url }
}

/** The operation's `security`: the route's scope, by either bearer kind; none for a public route. */
function withSecurity<T>(schema: T, scope: string | undefined): T {
  if (!isObject(schema) || scope === undefined) return schema
  const security = scope === 'public' ? [] : [{ apiKey: [scope] }, { jwt: [scope] }]
  return { ...schema, security } as T
}

/** The @fastify/swagger options. Component names are the schemas' `$id`s (File, Problem), not def-0, def-1. */
export const swaggerOptions: FastifyDynamicSwaggerOptions = {
  openapi: openApiDocument,
  refResolver: {
    buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
  },
  transform: transformRoute,
  transformObject: (documentObject) =>
    'openapiObject' in documentObject ? finishDocument(documentObject.openapiObject) : documentObject.swaggerObject,
}
