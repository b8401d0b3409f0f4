/**
 * buildApp(config, overrides?): the whole service as a Fastify instance, plugins registered in
 * a fixed order: external plugins, app plugins, routes. Nothing here reads process.env.
 */
import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import cors from '@fastify/cors'
import multipart from '@fastify/multipart'
import rateLimit from '@fastify/rate-limit'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyHttpOptions, type FastifyInstance, type FastifyPluginCallback } from 'fastify'
import auditRoutes from '../routes/audit/index.js'
import { guardBodyFraming } from '../routes/body-framing.js'
import cleanupRoutes from '../routes/cleanup/index.js'
import filesRoutes from '../routes/files/index.js'
import healthRoutes from '../routes/health/index.js'
import keysRoutes from '../routes/keys/index.js'
import limitsRoutes from '../routes/limits/index.js'
import metricsRoutes from '../routes/metrics/index.js'
import openAiRoutes, { sendOpenAiError } from '../routes/openai/index.js'
import { ProblemSchema } from '../routes/schemas.js'
import uploadsRoutes from '../routes/uploads/index.js'
import type { Config } from './config.js'
import { corsOptions } from './cors.js'
import { prepareSpoolDir } from './domain/spool.js'
import { errors } from './errors.js'
import { createMetrics, type Metrics } from './metrics.js'
import { swaggerOptions } from './openapi.js'
import type { OriginalsStore } from './originals/index.js'
import accessPlugin from './plugins/access.js'
import authPlugin from './plugins/auth.js'
import errorsPlugin, { answerClientError } from './plugins/errors.js'
import metricsPlugin from './plugins/metrics.js'
import originalsPlugin from './plugins/originals.js'
import providersPlugin from './plugins/providers.js'
import readinessPlugin from './plugins/readiness.js'
import schedulerPlugin from './plugins/scheduler.js'
import servicesPlugin from './plugins/services.js'
import storePlugin from './plugins/store.js'
import type { ProviderRegistry } from './providers/registry.js'
import { sharedSchemaController } from './schema-compilers.js'
import type { StorePort } from './store/port.js'

export interface AppOverrides {
  /** An already-open store (tests share one); the app will not close it. */
  store?: StorePort
  providers?: ProviderRegistry
  /** An already-open originals store (tests inject one that fails); the app will not close it. */
  originals?: OriginalsStore
  metrics?: Metrics
  /** pino options merged over the defaults (level, redaction), or false for no logging. */
  logger?: boolean | Record<string, unknown>
  /** Fastify's OpenTelemetry instrumentation (src/tracing.ts), registered before everything else. */
  instrumentation?: FastifyPluginCallback
}

const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/

/** How often Node looks for requests past their timeout. */
export const connectionsCheckingIntervalMs = 500

/** Multipart limits: one file, a few parts and small fields; anything past them is a 400. */
export const multipartLimits = {
  fieldNameSize: 100,
  fieldSize: 8 * 1024,
  fields: 10,
  files: 1,
  parts: 12,
  headerPairs: 100,
}

/**
 * pino options: the configured level and the redaction of credentials. Test overrides are merged
 * over them, so a test capturing the log still sees what production would write.
 */
export function loggerOptions(level: string, override: AppOverrides['logger']): boolean | Record<string, unknown> {
  if (override === false) return false
  const defaults = {
    level,
    redact: {
      // `*.headers` also covers plugins that log request headers at debug/trace (busboy options).
      paths: [
        'req.headers.authorization',
        'req.headers["x-api-key"]',
        'headers.authorization',
        'headers["x-api-key"]',
        '*.headers.authorization',
        '*.headers["x-api-key"]',
        '*.apiKey',
        '*.api_key',
      ],
      censor: '[redacted]',
    },
  }
  return override === undefined || override === true ? defaults : { ...defaults, ...override }
}

/** Fastify's options: logging, request ids, the timeouts a slow client is cut by, body and parser limits. */
function serverOptions(config: Config, overrides: AppOverrides) {
  return {
    logger: loggerOptions(config.logLevel, overrides.logger),
    genReqId: (req) => {
      const incoming = req.headers['x-request-id']
      return typeof incoming === 'string' && requestIdPattern.test(incoming) ? incoming : randomUUID()
    },
    requestTimeout: config.timeouts.requestMs,
    connectionTimeout: config.timeouts.requestMs,
    // Node checks request and head timeouts only every connectionsCheckingInterval (30 s by
    // default): checked twice a second, a slow client is cut within REQUEST_TIMEOUT_MS + 1 s.
    http: {
      requestTimeout: config.timeouts.requestMs,
      headersTimeout: Math.min(60_000, config.timeouts.requestMs),
      connectionsCheckingInterval: connectionsCheckingIntervalMs,
    },
    clientErrorHandler: answerClientError,
    // Upload bodies are multipart streams; JSON bodies stay small.
    bodyLimit: 64 * 1024,
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false, allErrors: true } },
    schemaController: sharedSchemaController,
    // A malformed URL (bad percent-encoding, an over-long path parameter) is the client's 400 in
    // the face of its path, like every other error.
    frameworkErrors: (err, request, reply) => request.server.sendError(err, request, reply),
  } satisfies FastifyHttpOptions<Server>
}

export async function buildApp(config: Config, overrides: AppOverrides = {}): Promise<FastifyInstance> {
  // The spool directory is made 0700, or refused when another user could reach into it, before
  // anything is opened: a start-up refused here must not race the embedded database's start (a
  // process that exits while PGlite's WebAssembly still compiles in the background can hang in
  // Node's platform shutdown, seen 2 times in 40 such refusals).
  await prepareSpoolDir(config.uploadTmpDir)
  const app = Fastify(serverOptions(config, overrides)).withTypeProvider<TypeBoxTypeProvider>()

  // Beyond MAX_CONNECTIONS Node closes a new connection at once, so slow or idle clients cannot
  // take every file descriptor (uploads need theirs for spool files and provider sockets).
  app.server.maxConnections = config.maxConnections
  // A body's chunks are counted from the first: framed in tiny chunks, it is refused before it costs more than its bytes.
  guardBodyFraming(app)

  // Per-request hooks are callback hooks: an async one costs a promise on every request.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    done()
  })

  // 1. External plugins.
  if (overrides.instrumentation) await app.register(overrides.instrumentation)
  await app.register(swagger, swaggerOptions)
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true })
  if (config.corsOrigins.length > 0) await app.register(cors, corsOptions(config.corsOrigins))
  await app.register(multipart, { limits: multipartLimits, throwFileSizeLimit: true })
  if (config.rateLimitPerMinute > 0) {
    await app.register(rateLimit, {
      max: config.rateLimitPerMinute,
      timeWindow: 60_000,
      // After authentication, so the budget is per tenant rather than per proxy address.
      hook: 'preHandler',
      keyGenerator: (request) => (request.auth ? `tenant:${request.auth.tenant}` : `ip:${request.ip}`),
      errorResponseBuilder: (_request, context) => {
        throw errors.rateLimited(`More than ${context.max} requests a minute`, Math.ceil(context.ttl / 1000))
      },
    })
  }

  // 2. App plugins.
  await app.register(errorsPlugin, { faces: [{ prefix: '/providers/', send: sendOpenAiError }] })
  await app.register(metricsPlugin, {
    metrics: overrides.metrics ?? createMetrics(),
    port: config.metricsPort,
    tokenSha256: config.metricsTokenSha256,
    host: config.host,
  })
  await app.register(readinessPlugin)
  await app.register(storePlugin, { config: config.store, ...(overrides.store ? { store: overrides.store } : {}) })
  await app.register(providersPlugin, { config, ...(overrides.providers ? { registry: overrides.providers } : {}) })
  await app.register(originalsPlugin, {
    config: config.originals,
    tmpDir: config.uploadTmpDir,
    store: overrides.originals,
  })
  await app.register(servicesPlugin, { config })
  await app.register(accessPlugin, { config })
  // From here on every route declares the scope it needs (routes registered later are checked).
  await app.register(authPlugin, {
    keys: config.apiKeys,
    openMode: config.openMode,
    jwt: config.jwt,
    failuresPerMinute: config.rateLimitPerMinute,
  })
  await app.register(schedulerPlugin, { config })

  // 3. Routes.
  app.addSchema(ProblemSchema)
  await app.register(healthRoutes)
  await app.register(metricsRoutes)
  await app.register(filesRoutes, { config })
  await app.register(uploadsRoutes, { config })
  await app.register(limitsRoutes)
  await app.register(cleanupRoutes)
  await app.register(openAiRoutes, { config })
  await app.register(keysRoutes)
  await app.register(auditRoutes)
  app.get('/openapi.json', { schema: { hide: true }, config: { scope: 'public' } }, async () => app.swagger())

  return app
}
