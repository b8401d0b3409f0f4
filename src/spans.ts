/**
 * The spans filegate adds under Fastify's request span, through the OpenTelemetry API only: without
 * a registered SDK (tracing off) every span is a no-op. The upload path: receive and hash, dedup
 * probe, claim, each provider attempt, settle; the sweeps: each job and each batch it claims. The
 * spans of SQL steps are declared with their query (src/store/queries.ts).
 */
import { type Attributes, type Span, SpanStatusCode, trace } from '@opentelemetry/api'

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
    let result: T
    try {
      result = await work()
      if (describe) span.setAttributes(describe(result))
    } catch (err) {
      endFailed(span, err)
      throw err
    }
    span.end()
    return result
  })
}

/**
 * A span started now and ended by the caller: for work that may finish synchronously (an
 * authentication answered from a cache), where inSpan's promise would cost on every request.
 */
export const startSpan = (name: string, attributes: Attributes): Span => tracer.startSpan(name, { attributes })

/** Ends a span of startSpan as a failure with its `error.type` (the catalogue code where there is one). */
export function endFailed(span: Span, err: unknown): void {
  const e = err as { code?: unknown; name?: string; message?: string }
  span.setAttribute('error.type', typeof e.code === 'string' ? e.code : (e.name ?? 'Error'))
  span.setStatus({ code: SpanStatusCode.ERROR, message: e.message ?? String(err) })
  span.end()
}
