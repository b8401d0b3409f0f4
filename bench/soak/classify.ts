/**
 * Each answer judged against what the docs promise for the fault then active. The codes and their
 * statuses are read from the error table of docs/api.md, so an answer the docs do not list is
 * caught whatever the code says. A window counts when it overlaps the request (with a tail for
 * what outlasts a fault by design: a provider's open circuit, a pool reconnecting).
 */
import { readFileSync } from 'node:fs'
import type { FaultKind, FaultWindow } from './faults.js'
import type { Op, Outcome } from './ledger.js'

export type Verdict =
  | { kind: 'ok' }
  | { kind: 'expected'; because: string }
  | { kind: 'violation'; cls: ViolationClass; reason: string }

export type ViolationClass =
  | 'server-error'
  | 'undocumented'
  | 'undeserved-4xx'
  | 'unexpected-5xx'
  | 'connection-error'
  | 'dropped-in-flight'
  | 'no-answer'
  | 'wrong-answer'

export interface Tails {
  dbMs: number
  storeMs: number
  providerMs: number
}

export interface Judge {
  documented: Map<string, number>
  /** A PROVIDER_UNAVAILABLE that took this long waited for an upload slot. */
  slotWaitMs: number
  windows: FaultWindow[]
  tails: Tails
}

/** `| `CODE` | status |` rows of the error table. */
export function documentedCodes(apiMarkdown: string): Map<string, number> {
  const codes = new Map<string, number>()
  for (const m of apiMarkdown.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)) codes.set(m[1] as string, Number(m[2]))
  return codes
}

export const readDocumentedCodes = (path: string) => documentedCodes(readFileSync(path, 'utf8'))

const SUCCESS: Record<Op, number[]> = {
  upload: [200, 201],
  'upload-dup': [200, 201],
  'upload-twin': [200, 201],
  'cross-tenant': [201],
  expiring: [200, 201],
  get: [200],
  list: [200],
  delete: [200],
  copy: [200, 201],
  ensure: [200],
  original: [200],
  reconcile: [200],
}

const STORE_OPS = new Set<Op>([
  'upload',
  'upload-dup',
  'upload-twin',
  'cross-tenant',
  'expiring',
  'copy',
  'ensure',
  'original',
])

/** The codes each provider fault may cause, per the docs' table. */
const PROVIDER_CODES: Partial<Record<FaultKind, string[]>> = {
  // Retries with backoff on a failing provider may outlast UPLOAD_TIMEOUT_MS: 504 "all attempts".
  'provider-500': ['PROVIDER_ERROR', 'PROVIDER_UNAVAILABLE', 'PROVIDER_TIMEOUT'],
  'provider-hang': ['PROVIDER_TIMEOUT', 'PROVIDER_UNAVAILABLE', 'PROVIDER_ERROR'],
  'provider-latency': ['PROVIDER_TIMEOUT', 'PROVIDER_UNAVAILABLE'],
  'provider-429': ['PROVIDER_RATE_LIMITED', 'PROVIDER_UNAVAILABLE', 'PROVIDER_TIMEOUT'],
}

const overlaps = (w: FaultWindow, o: Outcome, tailMs = 0) =>
  w.start <= o.end && (w.end ?? Number.POSITIVE_INFINITY) + tailMs >= o.start

const REPLICA_DOWN = new Set<FaultKind>(['replica-sigkill', 'replica-sigterm', 'replica-crash'])

export function classify(o: Outcome, judge: Judge): Verdict {
  if (o.contentProblem) return { kind: 'violation', cls: 'wrong-answer', reason: o.contentProblem }
  if (o.status !== undefined && SUCCESS[o.op].includes(o.status)) return { kind: 'ok' }
  if (o.status === undefined) return connectionVerdict(o, judge)
  const { documented, windows, tails } = judge
  if (o.status === 500 || o.code === 'INTERNAL') return violation('server-error', o)
  if (!o.code || documented.get(o.code) !== o.status) return violation('undocumented', o)
  const active = (kind: (k: FaultKind) => boolean, target: (t: string) => boolean, tail = 0) =>
    windows.find((w) => kind(w.kind) && target(w.target) && overlaps(w, o, tail))
  let w: FaultWindow | undefined
  if (o.fileDeleted && (o.code === 'ORIGINAL_UNAVAILABLE' || o.code === 'NOT_FOUND')) {
    return { kind: 'expected', because: 'the file was being deleted' }
  }
  if (o.code === 'DATABASE_UNAVAILABLE')
    w = active(
      (k) => k.startsWith('db-'),
      () => true,
      tails.dbMs,
    )
  else if (o.code === 'SHUTTING_DOWN')
    w = active(
      (k) => REPLICA_DOWN.has(k),
      (t) => t === o.replica,
    )
  else if (o.code === 'ORIGINALS_UNAVAILABLE' && STORE_OPS.has(o.op)) {
    w = active(
      (k) => k.startsWith('store-'),
      () => true,
      tails.storeMs,
    )
  } else if (o.code.startsWith('PROVIDER_')) {
    const code = o.code
    w = active(
      (k) => PROVIDER_CODES[k]?.includes(code) ?? false,
      (t) => o.provider === undefined || t === o.provider,
      tails.providerMs,
    )
  }
  if (w) return { kind: 'expected', because: `${w.kind} ${w.target}` }
  // Upload slots full: documented (security.md, "provider uploads in flight") as 503 once a wait
  // no longer leaves room for one attempt within UPLOAD_TIMEOUT_MS; load, not a fault.
  if (o.code === 'PROVIDER_UNAVAILABLE' && o.end - o.start >= judge.slotWaitMs) {
    return { kind: 'expected', because: 'waited for an upload slot' }
  }
  return violation(o.status < 500 ? 'undeserved-4xx' : 'unexpected-5xx', o)
}

function connectionVerdict(o: Outcome, judge: Judge): Verdict {
  const down = judge.windows.find((w) => REPLICA_DOWN.has(w.kind) && w.target === o.replica && overlaps(w, o))
  if (down) {
    // After SIGTERM the process answers what it had begun (docs/api.md: it exits once its last
    // in-flight request has answered); only what came after may find the door shut.
    if (down.kind === 'replica-sigterm' && o.start < down.start && o.error !== 'ECONNREFUSED') {
      return violation('dropped-in-flight', o)
    }
    return { kind: 'expected', because: `${down.kind} ${down.target}` }
  }
  // A download of the original whose store fails once its 200 has begun: the status cannot change,
  // so the response is cut short (docs/api.md, "Reading the original").
  if (o.op === 'original' && o.error !== 'timeout') {
    const store = judge.windows.find((w) => w.kind.startsWith('store-') && overlaps(w, o))
    if (store) return { kind: 'expected', because: `${store.kind} ${store.target}: the download cut short` }
  }
  return violation(o.error === 'timeout' ? 'no-answer' : 'connection-error', o)
}

const violation = (cls: ViolationClass, o: Outcome): Verdict => ({
  kind: 'violation',
  cls,
  reason: `${o.op} on ${o.replica} → ${o.status ?? o.error}${o.code ? ` ${o.code}` : ''}`,
})
