/**
 * The spans filegate adds under Fastify's request span, through the OpenTelemetry API only: without
 * a registered SDK (tracing off) every span is a no-op. The upload path: receive and hash, dedup
 * probe, claim, each provider attempt, settle; the sweeps: each job and each batch it claims. The
 * spans of SQL steps are declared with their query (src/store/queries.ts).
 */
import { type Attributes, SpanStatusCode, trace } from '@opentelemetry/api'

const tracer = trace.getTracer('filegate')

/**
 * Runs `work` in a child span of the active one. A failure marks the span as an error with its
 * `error.type` (the catalogue code where there is one); `describe` adds attributes from a result.
 */
export function inSpan<T>(
  name: string,
  attributes: Attributes,
  work: () => Promise<T>,
  describe?: (result: T) => Attributes,
): Promise<T> {
  return tracer.startActiveSpan(name, { attributes }, async (span) => {
    try {
      const result = await work()
      if (describe) span.setAttributes(describe(result))
      return result
    } catch (err) {
      const e = err as { code?: unknown; name?: string; message?: string }
      span.setAttribute('error.type', typeof e.code === 'string' ? e.code : (e.name ?? 'Error'))
      span.setStatus({ code: SpanStatusCode.ERROR, message: e.message ?? String(err) })
      throw err
    } finally {
      span.end()
    }
  })
}
