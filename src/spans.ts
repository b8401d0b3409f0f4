/**
 * The spans filegate adds under Fastify's request span, through the OpenTelemetry API only: without
 * a registered SDK (tracing off) every span is a no-op. The upload path: receive and hash, dedup
 * probe, claim, each provider attempt, settle; the sweeps: each job and each batch it claims.
 */
import { type Attributes, SpanStatusCode, trace } from '@opentelemetry/api'
import type { CallArgs, StorePort } from './store/port.js'

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

type Row = Record<string, unknown>
const outcome = (result: unknown) => ({ 'filegate.outcome': String((result as Row | null)?.outcome ?? 'none') })
const rows = (result: unknown) => ({ 'filegate.rows': Array.isArray(result) ? result.length : 0 })

/** The SQL functions that are steps of the upload path or a sweep batch, and their span names. */
const tracedCalls: Record<string, { span: string; describe: (result: unknown) => Attributes }> = {
  claim_upload: { span: 'filegate.upload.claim', describe: outcome },
  complete_upload: { span: 'filegate.upload.settle', describe: outcome },
  fail_upload: { span: 'filegate.upload.settle', describe: () => ({ 'filegate.outcome': 'failed' }) },
  sweep_expired_files: { span: 'filegate.cleanup.batch', describe: rows },
  sweep_orphaned_files: { span: 'filegate.cleanup.batch', describe: rows },
  fail_stuck_uploads: { span: 'filegate.cleanup.batch', describe: rows },
  claim_provider_deletes: { span: 'filegate.cleanup.batch', describe: rows },
}

/** The store with a span around each call of `tracedCalls` (named after the step, with the function). */
export function traceStoreCalls(store: StorePort): StorePort {
  // Delegates rather than spreads: a store may be a class whose methods and getters (the deferred
  // store's migrator) a spread would drop.
  return {
    get transport() {
      return store.transport
    },
    get migrator() {
      return store.migrator
    },
    close: () => store.close(),
    call<T>(fn: string, args?: CallArgs): Promise<T> {
      const traced = tracedCalls[fn]
      if (!traced) return store.call<T>(fn, args)
      const attributes: Attributes = { 'db.operation.name': fn }
      if (typeof args?.p_provider === 'string') attributes['filegate.provider'] = args.p_provider
      return inSpan(traced.span, attributes, () => store.call<T>(fn, args), traced.describe)
    },
  }
}
