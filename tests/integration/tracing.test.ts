/**
 * OpenTelemetry: with the SDK's in-memory exporter in place of OTLP, an upload whose first provider
 * attempt fails (500) and is retried produces a request span (@fastify/otel) whose parent is the
 * incoming W3C traceparent, and under it the spans of the upload path: receive and hash, dedup
 * probe, claim, two provider attempts with their outcomes, settle. A sweep has a span per job and
 * per batch. Log lines of the request carry its trace id. Off by default: without an endpoint,
 * startTracing starts nothing.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import {
  InMemorySpanExporter,
  NodeTracerProvider,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-node'
import type { FastifyInstance } from 'fastify'
import { loadConfig } from '../../src/config.js'
import { startTracing, type Tracing, traceExporter, tracesUrl } from '../../src/tracing.js'
import {
  auth,
  build,
  type Fakes,
  fileDatabase,
  freePort,
  multipart,
  pgliteDataDir,
  requirePostgres,
  startFakes,
  tempDir,
  testKeys,
} from '../helper.js'
import { root, serviceModule, spawnChild } from '../process-support.js'

const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
const parentSpanId = '00f067aa0ba902b7'

describe('tracing', () => {
  const exporter = new InMemorySpanExporter()
  let tracing: Tracing
  before(() => {
    // One global tracer provider per process, as in the server.
    const started = startTracing(
      { endpoint: undefined, serviceName: 'filegate-test', protocol: 'http/protobuf' },
      { exporter },
    )
    assert.ok(started)
    tracing = started
  })
  after(() => tracing.shutdown())

  it('is off without OTEL_EXPORTER_OTLP_ENDPOINT, and exports to <endpoint>/v1/traces', () => {
    assert.equal(startTracing({ endpoint: undefined, serviceName: 'filegate', protocol: 'http/protobuf' }), undefined)
    assert.equal(tracesUrl('http://collector:4318/'), 'http://collector:4318/v1/traces')
  })

  async function tracedApp(
    t: Parameters<typeof build>[0],
    lines: string[],
  ): Promise<{ app: FastifyInstance; fakes: Fakes }> {
    const db = await fileDatabase(t)
    const fakes = await startFakes(t)
    const stream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk))
        done()
      },
    })
    const app = await build(
      t,
      { ...fakes.env, DATABASE_URL: db.url, UPLOAD_TMP_DIR: await tempDir(t, 'filegate-trace-spool-') },
      { instrumentation: tracing.plugin, logger: { level: 'info', stream, mixin: tracing.logFields } },
    )
    return { app, fakes }
  }

  it('an upload with a retried provider attempt: spans under the incoming traceparent, trace id in the logs', async (t) => {
    if (!(await requirePostgres(t))) return
    const lines: string[] = []
    const { app, fakes } = await tracedApp(t, lines)
    exporter.reset()
    fakes.kimi.failNext(1, 500, 'upload')
    const body = multipart([
      ['provider', 'kimi'],
      ['file', { filename: 'traced.txt', content: 'traced upload\n', type: 'text/plain' }],
    ])
    const res = await app.inject({
      method: 'POST',
      url: '/v1/files',
      headers: { ...auth(testKeys.alice), ...body.headers, traceparent: `00-${traceId}-${parentSpanId}-01` },
      payload: body.payload,
    })
    assert.equal(res.statusCode, 201, res.body)
    assert.equal(fakes.kimi.uploads.length, 1)

    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId)
    const byName = (name: string) => spans.filter((s) => s.name === name)
    const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId
    const [request] = byName('request')
    assert.ok(request, `a request span; got ${spans.map((s) => s.name).join(', ')}`)
    assert.equal(parentOf(request), parentSpanId, 'the request span is a child of the incoming traceparent')
    assert.equal(request.attributes['http.route'], '/v1/files')

    // Every span of the trace descends from the request span.
    const ids = new Map(spans.map((s) => [s.spanContext().spanId, s]))
    const descends = (s: ReadableSpan): boolean => {
      const parent = parentOf(s)
      if (parent === request.spanContext().spanId) return true
      const up = parent ? ids.get(parent) : undefined
      return up ? descends(up) : false
    }
    for (const name of [
      'filegate.upload.receive',
      'filegate.upload.dedup_probe',
      'filegate.upload.claim',
      'filegate.upload.settle',
    ]) {
      const found = byName(name)
      assert.equal(found.length, 1, `one ${name} span`)
      assert.ok(descends(found[0] as ReadableSpan), `${name} is inside the request`)
    }
    assert.equal(byName('filegate.upload.receive')[0]?.attributes['filegate.bytes'], 'traced upload\n'.length)
    assert.equal(byName('filegate.upload.claim')[0]?.attributes['filegate.outcome'], 'claimed')
    assert.equal(byName('filegate.upload.settle')[0]?.attributes['filegate.outcome'], 'completed')

    const attempts = byName('filegate.provider.attempt').sort(
      (a, b) => Number(a.attributes['filegate.attempt']) - Number(b.attributes['filegate.attempt']),
    )
    assert.deepEqual(
      attempts.map((a) => [
        a.attributes['filegate.attempt'],
        a.attributes['filegate.provider'],
        a.attributes['filegate.provider.op'],
        a.status.code,
        a.attributes['error.type'],
      ]),
      [
        [1, 'kimi', 'upload', 2, 'PROVIDER_ERROR'],
        [2, 'kimi', 'upload', 0, undefined],
      ],
      'the failed attempt is an error span, the retry a success',
    )
    for (const a of attempts) assert.ok(descends(a))

    // Fastify logs "incoming request" before any hook, so before the request span exists; every
    // later line of the request carries the trace id (and shares reqId with that first line).
    const requestLines = lines.filter(
      (l) => l.includes(`"reqId":"${res.headers['x-request-id']}"`) && !l.includes('"msg":"incoming request"'),
    )
    assert.ok(requestLines.some((l) => l.includes('"msg":"request completed"')))
    for (const line of requestLines) assert.match(line, new RegExp(`"trace_id":"${traceId}"`))
  })

  it('a sweep has a span per job and per batch it claims', async (t) => {
    if (!(await requirePostgres(t))) return
    const { app } = await tracedApp(t, [])
    exporter.reset()
    await app.cleanup.run({ dryRun: false, jobs: ['stuck', 'expired'] })
    const spans = exporter.getFinishedSpans()
    const jobs = spans.filter((s) => s.name === 'filegate.cleanup.job')
    assert.deepEqual(
      jobs.map((s) => s.attributes['filegate.job']),
      ['stuck', 'expired'],
    )
    const batches = spans.filter((s) => s.name === 'filegate.cleanup.batch')
    assert.deepEqual(batches.map((b) => b.attributes['db.operation.name']).sort(), [
      'fail_stuck_uploads',
      'sweep_expired_files',
    ])
    for (const batch of batches) {
      const job = jobs.find((j) => j.spanContext().spanId === batch.parentSpanContext?.spanId)
      assert.ok(job, 'each batch span is a child of its job span')
      assert.equal(batch.attributes['filegate.rows'], 0)
    }
  })

  it('OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL choose the body: a JSON collector on loopback receives OTLP/JSON spans', async (t) => {
    const received: Array<{ path: string; type: string; body: Buffer }> = []
    const collector = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => {
        const type = req.headers['content-type'] ?? ''
        received.push({ path: req.url ?? '', type, body: Buffer.concat(chunks) })
        // An empty ExportTraceServiceResponse in the request's own encoding (OTLP/HTTP spec).
        res.writeHead(200, { 'content-type': type }).end(type === 'application/json' ? '{}' : undefined)
      })
    })
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve))
    t.after(() => new Promise<void>((resolve) => collector.close(() => resolve())))
    const endpoint = `http://127.0.0.1:${(collector.address() as { port: number }).port}`
    const cases: Array<[Record<string, string>, string]> = [
      [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }, 'application/json'],
      [
        { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json' },
        'application/json',
      ],
      [
        { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' },
        'application/x-protobuf',
      ],
      [{}, 'application/x-protobuf'],
    ]
    for (const [i, [env, type]] of cases.entries()) {
      const config = loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, ...env }).tracing
      // A provider of its own (the global one is this file's in-memory one), with the service's exporter.
      const provider = new NodeTracerProvider({
        spanProcessors: [new SimpleSpanProcessor(traceExporter({ ...config, endpoint }))],
      })
      const span = provider.getTracer('filegate-test').startSpan(`exported-${i}`)
      span.end()
      await provider.shutdown()
      const last = received.at(-1)
      const what = JSON.stringify(env)
      assert.equal(received.length, i + 1, `${what}: one export`)
      assert.equal(last?.path, '/v1/traces', what)
      assert.equal(last?.type, type, what)
      if (type === 'application/json') {
        // OTLP/JSON: resourceSpans → scopeSpans → spans, ids as hex strings.
        const body = JSON.parse(String(last?.body)) as {
          resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ name: string; traceId: string }> }> }>
        }
        const [sent] = body.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans))
        assert.equal(sent?.name, `exported-${i}`, what)
        assert.equal(sent?.traceId, span.spanContext().traceId, what)
      } else {
        assert.ok(last?.body.includes(`exported-${i}`), `${what}: the span name in the protobuf body`)
        assert.throws(() => JSON.parse(String(last?.body)), what)
      }
    }
  })

  it('the server process exports OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT and flushes on SIGTERM', async (t) => {
    // An in-process OTLP receiver: it records what arrives at /v1/traces.
    const received: Array<{ path: string; type: string; bytes: number }> = []
    const receiver = createServer((req, res) => {
      let bytes = 0
      req.on('data', (chunk: Buffer) => {
        bytes += chunk.length
      })
      req.on('end', () => {
        received.push({ path: req.url ?? '', type: req.headers['content-type'] ?? '', bytes })
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
      })
    })
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
    t.after(() => new Promise<void>((resolve) => receiver.close(() => resolve())))
    const endpoint = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`
    const port = await freePort()
    const service = serviceModule('src/server.ts')
    const server = spawnChild(t, process.execPath, [...service.nodeArgs, service.entry], {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? '',
        PORT: String(port),
        DATA_DIR: await pgliteDataDir(t, 'filegate-trace-data-'),
        UPLOAD_TMP_DIR: await tempDir(t, 'filegate-trace-spool-'),
        CLEANUP_ENABLED: 'false',
        OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      },
    })
    let ready = false
    for (let i = 0; i < 300 && !ready; i++) {
      ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      )
      if (!ready) await new Promise((r) => setTimeout(r, 100))
    }
    assert.ok(ready, server.stdout() + server.stderr())
    const res = await fetch(`http://127.0.0.1:${port}/v1/limits`, {
      headers: { traceparent: `00-${traceId}-${parentSpanId}-01` },
    })
    assert.equal(res.status, 200)
    assert.match(server.stdout(), /"msg":"OpenTelemetry tracing on"/)
    server.proc.kill('SIGTERM')
    assert.equal(await server.exited, 0, server.stderr())
    assert.ok(
      received.some((r) => r.path === '/v1/traces' && r.type === 'application/x-protobuf' && r.bytes > 0),
      `spans exported on shutdown: ${JSON.stringify(received)}`,
    )
    assert.match(server.stdout(), new RegExp(`"trace_id":"${traceId}"`))
  })
})
