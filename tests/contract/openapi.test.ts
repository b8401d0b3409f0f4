/**
 * The committed openapi.yaml is what the code generates, /openapi.json serves the same document,
 * and the document holds what client generators and readers rely on: every route the app serves,
 * every response with its schema, problem+json errors with examples, the bearer scheme.
 */
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { before, describe, it } from 'node:test'
import { parse, stringify } from 'yaml'
import { generateOpenApiYaml, openApiPath, toYaml, withDocumentApp } from '../../scripts/openapi-export.js'
import { errorCatalog } from '../../src/errors.js'
import { finishDocument } from '../../src/openapi.js'
import { tempDir } from '../helper.js'
import { spawnNode } from '../process-support.js'

// biome-ignore lint/suspicious/noExplicitAny: the parsed document is walked freely; the assertions check its shapes
type Json = Record<string, any>

const methods = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace']
/** The OpenAI-compatible facade answers errors in the OpenAI shape, not problem+json. */
const ownErrorShape = (path: string) => path.startsWith('/providers/')

/** `METHOD /path/{param}` for every route in Fastify's printRoutes tree, docs and HEAD aside. */
function servedOperations(tree: string): Set<string> {
  const served = new Set<string>()
  const stack: string[] = []
  for (const line of tree.split('\n')) {
    const match = /^((?:[│ ] {3})*)[├└]── (.*?)(?: \(([A-Z, ]+)\))?$/.exec(line)
    if (!match) continue
    const depth = (match[1] ?? '').length / 4
    stack.length = depth
    stack.push(match[2] ?? '')
    const path = stack.join('').replace(/:([A-Za-z0-9_]+)/g, '{$1}')
    for (const method of (match[3] ?? '').split(', ').filter(Boolean)) {
      if (method === 'HEAD' || path.startsWith('/docs') || path === '/openapi.json') continue
      served.add(`${method} ${path}`)
    }
  }
  return served
}

function operations(doc: Json): Array<{ key: string; path: string; method: string; op: Json }> {
  return Object.entries(doc.paths as Json).flatMap(([path, item]) =>
    methods
      .filter((m) => item[m])
      .map((method) => ({ key: `${method.toUpperCase()} ${path}`, path, method, op: item[method] })),
  )
}

/** Follows a local `$ref` (#/components/...). */
const deref = (doc: Json, node: Json): Json =>
  typeof node?.$ref === 'string'
    ? (node.$ref as string)
        .slice(2)
        .split('/')
        .reduce((n: Json, part: string) => n[part], doc)
    : node

describe('openapi.yaml', () => {
  let committed: string
  let generated: string
  let doc: Json
  let served: Json
  let routes: Set<string>

  before(async () => {
    committed = await readFile(openApiPath, 'utf8')
    ;({ generated, served, routes } = await withDocumentApp(async (app) => {
      const response = await app.inject({ method: 'GET', url: '/openapi.json' })
      assert.equal(response.statusCode, 200)
      return {
        generated: toYaml(app.swagger()),
        served: response.json(),
        routes: servedOperations(app.printRoutes({ commonPrefix: false })),
      }
    }))
    doc = parse(committed)
  })

  it('is what the code generates (else run npm run openapi:export and commit it)', () => {
    assert.equal(committed, generated, 'openapi.yaml differs from the route schemas: run npm run openapi:export')
  })

  it('is served as /openapi.json, the same document', () => {
    assert.deepEqual(served, doc)
  })

  it('is OpenAPI 3.1 with the package version', async () => {
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8'))
    assert.equal(doc.openapi, '3.1.0')
    assert.equal(doc.info.version, pkg.version)
  })

  it('documents every route the app serves, and only those', () => {
    const documented = new Set(operations(doc).map((o) => o.key))
    assert.ok(routes.size >= 9, `printRoutes parsed: ${[...routes].join(', ')}`)
    assert.deepEqual([...routes].filter((r) => !documented.has(r)).sort(), [], 'served but not documented')
    assert.deepEqual([...documented].filter((r) => !routes.has(r)).sort(), [], 'documented but not served')
  })

  it('documents the files and limits routes, the probes and /metrics', () => {
    const documented = new Set(operations(doc).map((o) => o.key))
    for (const key of [
      'POST /v1/files',
      'GET /v1/files',
      'GET /v1/files/{id}',
      'GET /v1/files/{id}/content',
      'DELETE /v1/files/{id}',
      'GET /v1/limits',
      'GET /healthz',
      'GET /readyz',
      'GET /metrics',
    ]) {
      assert.ok(documented.has(key), `${key} is documented`)
    }
  })

  it('gives every operation a unique operationId, a summary, declared tags and an explicit security', () => {
    const ids = new Set<string>()
    const tags = new Set((doc.tags as Json[]).map((t) => t.name))
    for (const { key, op } of operations(doc)) {
      assert.match(op.operationId ?? '', /^[A-Za-z][A-Za-z0-9]*$/, `${key} operationId`)
      assert.ok(!ids.has(op.operationId), `${key}: operationId ${op.operationId} is unique`)
      ids.add(op.operationId)
      assert.ok(op.summary, `${key} summary`)
      assert.ok(op.tags?.length > 0, `${key} tags`)
      for (const tag of op.tags) assert.ok(tags.has(tag), `${key}: tag ${tag} is declared at the top`)
      assert.ok(Array.isArray(op.security), `${key} security is explicit`)
    }
  })

  it('gives every response status a description and a schema', () => {
    for (const { key, method, op } of operations(doc)) {
      const statuses = Object.keys(op.responses)
      assert.ok(
        statuses.some((s) => s.startsWith('2')),
        `${key} has a 2xx response`,
      )
      for (const status of statuses) {
        const response = deref(doc, op.responses[status])
        assert.ok(response.description, `${key} ${status} description`)
        // RFC 9110: a 204, and any answer to HEAD, has no content (tus answers with headers alone).
        if (status === '204' || method === 'head') {
          assert.equal(response.content, undefined, `${key} ${status} has no content`)
          continue
        }
        const media = Object.values(response.content ?? {}) as Json[]
        assert.ok(media.length > 0, `${key} ${status} has content`)
        for (const m of media) assert.ok(m.schema, `${key} ${status} has a schema`)
      }
    }
  })

  it('answers every error of its own API as application/problem+json with the Problem schema', () => {
    let checked = 0
    for (const { key, path, op } of operations(doc)) {
      // The probes answer their own bodies (readiness 503 is a Readiness report, not an error).
      if (ownErrorShape(path) || op.tags.includes('probes')) continue
      for (const [status, ref] of Object.entries(op.responses as Json)) {
        if (Number(status) < 400) continue
        const response = deref(doc, ref)
        assert.deepEqual(Object.keys(response.content), ['application/problem+json'], `${key} ${status}`)
        assert.equal(response.content['application/problem+json'].schema.$ref, '#/components/schemas/Problem')
        checked++
      }
    }
    assert.ok(checked > 20, `${checked} error responses checked`)
    const problem = doc.components.schemas.Problem
    assert.deepEqual(problem.required.sort(), ['code', 'detail', 'instance', 'status', 'title', 'type'])
  })

  it('gives each problem status one example per catalogue code, valid against the catalogue', () => {
    for (const [name, response] of Object.entries(doc.components.responses as Json)) {
      const examples = response.content['application/problem+json'].examples as Json
      const codes = Object.keys(examples)
      assert.ok(codes.length > 0, `${name} has examples`)
      for (const code of codes) {
        const example = deref(doc, examples[code]).value
        const entry = errorCatalog[code as keyof typeof errorCatalog]
        assert.ok(entry, `${code} is a catalogue code`)
        assert.equal(example.code, code)
        assert.equal(example.status, entry.status)
        assert.equal(example.title, entry.title)
        assert.match(example.type, /^https:\/\//)
      }
    }
    const tooLarge = doc.components.examples.FILE_TOO_LARGE.value
    assert.equal(typeof tooLarge.limit_bytes, 'number', 'FILE_TOO_LARGE shows its extension members')
    assert.ok(doc.components.responses.TooManyRequests.headers['Retry-After'], '429 documents Retry-After')
    assert.ok(doc.components.responses.ServiceUnavailable.headers['Retry-After'], '503 documents Retry-After')
  })

  it('protects /v1 and the facade with both bearer kinds and the scope each needs, and leaves the probes open', () => {
    const { apiKey, jwt } = doc.components.securitySchemes
    assert.deepEqual(apiKey, { type: 'http', scheme: 'bearer', description: apiKey.description })
    assert.deepEqual(jwt, { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: jwt.description })
    const scopeOf: Record<string, string> = {}
    for (const { key, path, op } of operations(doc)) {
      if (path.startsWith('/v1/') || ownErrorShape(path)) {
        const [first, second] = op.security as Array<Record<string, string[]>>
        assert.equal(op.security.length, 2, `${key}: an API key or a JWT`)
        assert.deepEqual(Object.keys(first ?? {}), ['apiKey'], key)
        assert.deepEqual(Object.keys(second ?? {}), ['jwt'], key)
        assert.deepEqual(first?.apiKey, second?.jwt, `${key}: the same scope either way`)
        assert.equal(first?.apiKey?.length, 1, `${key} names its one scope`)
        scopeOf[key] = first?.apiKey?.[0] as string
        assert.ok(op.responses['401'], `${key} documents 401`)
        assert.ok(op.responses['403'], `${key} documents 403`)
      } else {
        assert.deepEqual(op.security, [], `${key} is open`)
      }
    }
    // A sample of the scope table (docs/security.md): reads, writes, keys and admin.
    assert.equal(scopeOf['GET /v1/files'], 'files:read')
    assert.equal(scopeOf['POST /v1/files'], 'files:write')
    assert.equal(scopeOf['DELETE /providers/{provider}/v1/files/{file_id}'], 'files:write')
    assert.equal(scopeOf['GET /providers/{provider}/v1/files'], 'files:read')
    assert.equal(scopeOf['POST /v1/keys'], 'keys')
    assert.equal(scopeOf['GET /v1/audit'], 'keys')
    assert.equal(scopeOf['POST /v1/cleanup'], 'admin')
  })

  it('shows an upload: the multipart fields with an example, and both outcomes with examples', () => {
    const upload = doc.paths['/v1/files'].post
    const form = upload.requestBody.content['multipart/form-data']
    assert.deepEqual(form.schema.required, ['file'])
    assert.equal(form.schema.properties.file.format, 'binary')
    assert.ok(form.example?.provider && form.example.file, 'the form has an example')
    assert.equal(upload.parameters.find((p: Json) => p.name === 'x-content-sha256')?.in, 'header')
    assert.equal(upload.responses['201'].content['application/json'].example.deduplicated, false)
    assert.equal(upload.responses['200'].content['application/json'].example.deduplicated, true)
    for (const status of ['400', '401', '413', '415', '429', '502', '503', '504', '507']) {
      assert.ok(upload.responses[status], `upload documents ${status}`)
    }
  })

  it('lets clients leave out parameters that have a default', () => {
    const list = doc.paths['/v1/files'].get
    for (const name of ['limit', 'include_deleted']) {
      const parameter = list.parameters.find((p: Json) => p.name === name)
      assert.equal(parameter.required, false, `${name} is optional`)
    }
  })

  it('round-trips through the generator without anchors or folded lines', async () => {
    assert.doesNotMatch(committed, /[&*]a\d+\b/, 'no YAML anchors')
    assert.equal(generated, await generateOpenApiYaml(), 'generation is deterministic')
  })
})

describe('every operation has an operationId of its own', () => {
  it("the document invents none: an operation whose route declares no operationId keeps none (the lint's to refuse)", () => {
    const doc = finishDocument<Json>({ paths: { '/v1/example': { post: { summary: 'no id', responses: {} } } } })
    assert.equal(doc.paths['/v1/example'].post.operationId, undefined)
  })

  it('npm run openapi:lint (redocly.yaml) refuses a missing operationId and a duplicate one', async (t) => {
    const doc = parse(await readFile(openApiPath, 'utf8')) as Json
    delete doc.paths['/v1/cleanup'].post.operationId
    doc.paths['/v1/limits'].get.operationId = doc.paths['/healthz'].get.operationId
    const file = join(await tempDir(t, 'filegate-openapi-'), 'openapi.yaml')
    await writeFile(file, stringify(doc))
    const lint = spawnNode(
      t,
      'node_modules/@redocly/cli/bin/cli.js',
      { REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
      [],
      ['lint', file, '--config', 'redocly.yaml', '--format', 'json'],
    )
    assert.equal(await lint.exited, 1, lint.output())
    const { problems } = JSON.parse(lint.stdout()) as {
      problems: Array<{ ruleId: string; severity: string; location: Array<{ pointer: string }> }>
    }
    const found = problems.map((p) => `${p.severity} ${p.ruleId} ${p.location[0]?.pointer}`)
    assert.ok(found.includes('error operation-operationId #/paths/~1v1~1cleanup/post/operationId'), found.join('\n'))
    assert.ok(
      found.some((f) => f.startsWith('error operation-operationId-unique #/paths/~1v1~1limits/get')),
      found.join('\n'),
    )
  })
})
