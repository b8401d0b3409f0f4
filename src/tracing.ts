/**
 * OpenTelemetry traces, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (server.ts imports this
 * module only then, so the SDK is not loaded otherwise). startTracing registers the SDK's tracer
 * provider globally (AsyncLocalStorage context, W3C `traceparent` and baggage propagation) and
 * hands back Fastify's own instrumentation (@fastify/otel: a span per request, its parent taken
 * from an incoming `traceparent`), a pino mixin that puts the trace id on log lines, and a
 * shutdown that flushes what is left. The spans of the upload path and the sweeps come from
 * src/spans.ts, which needs only the OpenTelemetry API.
 */
import { FastifyOtelInstrumentation } from '@fastify/otel'
import { trace } from '@opentelemetry/api'
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { OTLPTraceExporter as OtlpProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { resourceFromAttributes } from '@opentelemetry/resources'
import {
  BatchSpanProcessor,
  NodeTracerProvider,
  SimpleSpanProcessor,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-node'
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions'
import type { FastifyPluginCallback } from 'fastify'
import type { Config } from './config.js'

export interface Tracing {
  /** @fastify/otel: registered before anything else in buildApp. */
  plugin: FastifyPluginCallback
  /** pino mixin: `trace_id` and `span_id` of the active span on each log line. */
  logFields(): Record<string, string>
  /** Ends the provider: spans still buffered are exported. */
  shutdown(): Promise<void>
}

/** The OTLP/HTTP traces URL: the signal path appended to the base endpoint (OTLP exporter spec). */
export const tracesUrl = (endpoint: string) => `${endpoint.replace(/\/+$/, '')}/v1/traces`

/**
 * The OTLP/HTTP exporter of the configured protocol (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else
 * OTEL_EXPORTER_OTLP_PROTOCOL): protobuf bodies (`application/x-protobuf`) or JSON ones
 * (`application/json`), both to `<endpoint>/v1/traces`.
 */
export function traceExporter(config: Config['tracing'] & { endpoint: string }): SpanExporter {
  const options = { url: tracesUrl(config.endpoint) }
  return config.protocol === 'http/json' ? new OtlpJsonExporter(options) : new OtlpProtobufExporter(options)
}

/**
 * Starts tracing when an endpoint is configured (or, in tests, with the given exporter); undefined
 * otherwise. The OTLP exporter reads its other standard variables itself
 * (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, _CERTIFICATE).
 */
export function startTracing(
  config: Config['tracing'],
  options: { exporter?: SpanExporter; serviceVersion?: string } = {},
): Tracing | undefined {
  if (config.endpoint === undefined && options.exporter === undefined) return undefined
  const processor = options.exporter
    ? new SimpleSpanProcessor(options.exporter)
    : new BatchSpanProcessor(traceExporter({ ...config, endpoint: config.endpoint as string }))
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: config.serviceName,
      ...(options.serviceVersion ? { [ATTR_SERVICE_VERSION]: options.serviceVersion } : {}),
    }),
    spanProcessors: [processor],
  })
  provider.register()
  const instrumentation = new FastifyOtelInstrumentation()
  instrumentation.setTracerProvider(provider)
  return {
    plugin: instrumentation.plugin() as FastifyPluginCallback,
    logFields(): Record<string, string> {
      const context = trace.getActiveSpan()?.spanContext()
      return context ? { trace_id: context.traceId, span_id: context.spanId } : {}
    },
    async shutdown() {
      instrumentation.disable()
      await provider.shutdown()
    },
  }
}
