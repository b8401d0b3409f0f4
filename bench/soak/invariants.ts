/**
 * What must hold once the faults have stopped and the sweeps have had their settling time: read
 * from the database, the fakes (through what the taps saw) and the bucket, never from what the
 * service says of itself alone.
 */
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
import type postgres from 'postgres'
import type { FakeProvider } from '../../tests/fakes/provider-server.js'
import type { FaultWindow } from './faults.js'
import type { Ledger } from './ledger.js'
import type { ProviderTap } from './provider-tap.js'
import type { ReplicaObservations } from './replicas.js'

export interface Violation {
  cls: string
  at?: number
  detail: string
}

export interface InvariantInputs {
  sql: postgres.Sql
  ledger: Ledger
  fakes: Map<string, FakeProvider>
  taps: Map<string, ProviderTap>
  foreign: Set<string>
  /** Per provider, the unknown ids a reconcile dry run reported after the settling. */
  reconcileUnknown: Map<string, Set<string>>
  timeline: FaultWindow[]
  observed: ReplicaObservations
  /** Answers of GET /v1/files/{id} after the settling, by file id (status, body). */
  retrieved: Map<string, { status?: number; status_field?: string; original_ok?: boolean }>
  s3: { endpoint: string; bucket: string; prefix: string }
  stagingAgeMs: number
  rssLimitBytes: number
  /** STUCK_UPLOAD_MINUTES in seconds, plus a few sweep intervals. */
  stuckAfterSeconds: number
}

export interface InvariantReport {
  violations: Violation[]
  /** Things worth knowing that break nothing. */
  notes: string[]
}

interface Row {
  id: string
  tenant_id: string
  provider: string
  purpose: string
  sha256: string
  status: string
  provider_file_id: string | null
  deleted_at: Date | null
  deletion_reason: string | null
  provider_deleted: boolean
  original_stored: boolean
  /** Not updated for longer than the stuck sweep's threshold (and a couple of its runs). */
  stale: boolean
  history: string[]
}

export async function checkInvariants(input: InvariantInputs): Promise<InvariantReport> {
  const rows = await input.sql<Row[]>`
    select id, tenant_id, provider, purpose, sha256, status, provider_file_id, deleted_at, deletion_reason,
           provider_deleted, original_stored, updated_at < now() - make_interval(secs => ${input.stuckAfterSeconds}) as stale,
           coalesce((select jsonb_agg(h->>'provider_file_id') from jsonb_array_elements(provider_file_id_history) h), '[]'::jsonb) as history
      from provider_file_uploads`
  const report: InvariantReport = { violations: [], notes: [] }
  const v = (cls: string, detail: string, at?: number) =>
    report.violations.push(at === undefined ? { cls, detail } : { cls, detail, at })
  lostFiles(input, rows, v)
  leaks(input, rows, v, report.notes)
  liveRows(rows, v, report.notes)
  doubleDeletes(input, v, report.notes)
  await originals(input, rows, v)
  processes(input, v, report.notes)
  for (const f of input.ledger.findings) v(f.cls, f.detail, f.at)
  return report
}

type Note = (cls: string, detail: string, at?: number) => void

/** Every 2xx upload not deleted since is a live, completed row, retrievable, its provider copy there. */
function lostFiles(input: InvariantInputs, rows: Row[], v: Note): void {
  const byId = new Map(rows.map((r) => [r.id, r]))
  for (const file of input.ledger.files.values()) {
    if (file.state !== 'live') continue
    const row = byId.get(file.id)
    const fake = input.fakes.get(file.provider) as FakeProvider
    const seen = `${file.tenant}'s ${file.id} (${file.provider}, first answered at ${iso(file.seenAt)})`
    if (!row) v('lost-file', `${seen}: no row`)
    else if (row.deleted_at)
      v('lost-file', `${seen}: tombstoned ${row.deletion_reason} at ${row.deleted_at.toISOString()}`)
    else if (row.status !== 'completed') v('lost-file', `${seen}: status ${row.status}`)
    else if (!row.provider_file_id || !fake.files.has(row.provider_file_id)) {
      v('lost-file', `${seen}: provider file ${row.provider_file_id} not at the fake (not healed)`)
    }
    const got = input.retrieved.get(file.id)
    if (got && got.status !== 200) v('lost-file', `${seen}: GET answered ${got.status}`)
    if (got && got.original_ok === false) v('lost-file', `${seen}: its original did not come back as uploaded`)
  }
}

/** Every provider file at a fake is known: a row names it, or reconcile reports it (foreign files, crashes). */
function leaks(input: InvariantInputs, rows: Row[], v: Note, notes: string[]): void {
  let pending = 0
  let accounted = 0
  for (const [provider, fake] of input.fakes) {
    const tap = input.taps.get(provider) as ProviderTap
    const unknown = input.reconcileUnknown.get(provider) ?? new Set<string>()
    const named = new Map<string, Row>()
    const replaced = new Map<string, Row>()
    for (const r of rows) {
      if (r.provider !== provider) continue
      if (r.provider_file_id) named.set(r.provider_file_id, r)
      for (const old of r.history) replaced.set(old, r)
    }
    for (const id of fake.files.keys()) {
      if (input.foreign.has(id)) {
        if (!unknown.has(id))
          v('reconcile-missed-unknown', `${provider} ${id}: another application's file, not reported by reconcile`)
        continue
      }
      const row = named.get(id)
      const upload = tap.uploads.get(id)
      const when = upload
        ? ` (uploaded ${iso(upload.at)}, answer ${upload.delivered ? 'delivered' : 'not delivered'})`
        : ' (no upload answer went back through the tap)'
      if (row && !row.deleted_at && row.status === 'completed') continue
      if (row?.deleted_at && !row.provider_deleted) {
        pending++
        continue
      }
      if (row) {
        v(
          'leak',
          `${provider} ${id}${when}: row ${row.id} is ${row.status}${row.provider_deleted ? ', provider_deleted' : ''}, the copy still there`,
        )
        continue
      }
      if (replaced.has(id)) {
        v('leak', `${provider} ${id}${when}: replaced by a heal of row ${replaced.get(id)?.id}, never deleted`)
        continue
      }
      if (unknown.has(id) && unseeable(upload, input.timeline)) {
        accounted++
        continue
      }
      v(
        'leak',
        `${provider} ${id}${when}: no row${unknown.has(id) ? ' (reconcile reports it unknown)' : ', and reconcile does not report it'}`,
        upload?.at,
      )
    }
  }
  if (pending > 0)
    notes.push(`${pending} provider file(s) of tombstones still waiting for their provider delete (backoff)`)
  if (accounted > 0)
    notes.push(
      `${accounted} provider file(s) without a row, made where the service could not see it (answer lost, or a replica killed), reported by reconcile`,
    )
}

/**
 * A copy the service could not have recorded: the fake's answer never reached it (a timeout),
 * or a replica died within seconds of it (SIGKILL, a crash) before it could write the row.
 */
function unseeable(upload: { at: number; delivered: boolean } | undefined, timeline: FaultWindow[]): boolean {
  // No answer came back through the tap at all: the service gave up on the attempt first.
  if (!upload?.delivered) return true
  return timeline.some(
    (w) =>
      (w.kind === 'replica-sigkill' || w.kind === 'replica-crash') &&
      w.start >= upload.at - 1_000 &&
      w.start <= upload.at + 10_000,
  )
}

/** One live row per key; nothing pending or uploading once the stuck sweep has had its time. */
function liveRows(rows: Row[], v: Note, notes: string[]): void {
  const keys = new Map<string, number>()
  let young = 0
  for (const r of rows) {
    if (r.status === 'pending' || r.status === 'uploading') {
      if (r.stale)
        v('stuck-row', `row ${r.id} (${r.tenant_id}, ${r.provider}) still ${r.status}, past STUCK_UPLOAD_MINUTES`)
      else young++
    }
    if (r.deleted_at) continue
    const key = `${r.tenant_id}/${r.provider}/${r.purpose}/${r.sha256}`
    keys.set(key, (keys.get(key) ?? 0) + 1)
  }
  for (const [key, n] of keys) if (n > 1) v('duplicate-live-row', `${n} live rows for ${key}`)
  if (young > 0)
    notes.push(
      `${young} row(s) pending or uploading, younger than the stuck sweep's threshold (settle longer to judge them)`,
    )
}

/**
 * A DELETE of a file whose earlier DELETE was answered 200 to the service: deleted twice. Where
 * the service could not record the first (Postgres cut, the replica killed within seconds of it)
 * the retry is what the docs promise, and only noted.
 */
function doubleDeletes(input: InvariantInputs, v: Note, notes: string[]): void {
  let explained = 0
  for (const [provider, tap] of input.taps) {
    const done = new Map<string, number>()
    for (const d of tap.deletes) {
      const first = done.get(d.id)
      if (first === undefined) {
        if (d.status === 200 && d.delivered) done.set(d.id, d.at)
        continue
      }
      const cause = input.timeline.find(
        (w) =>
          RECORD_FAULTS.has(w.kind) &&
          w.start <= first + 15_000 &&
          (w.end ?? Number.POSITIVE_INFINITY) >= first - 1_000,
      )
      if (cause) explained++
      else
        v(
          'double-delete',
          `${provider} ${d.id}: deleted at ${iso(first)} (answer delivered), DELETE again at ${iso(d.at)}`,
          d.at,
        )
    }
  }
  if (explained > 0)
    notes.push(
      `${explained} provider delete(s) sent again after a delivered 200 that a Postgres cut or a killed replica kept from being recorded`,
    )
}

const RECORD_FAULTS = new Set<FaultWindow['kind']>(['db-refuse', 'db-hang', 'replica-sigkill', 'replica-crash'])

/** Each live row's original is in the bucket; each object there belongs to a row (or is a young staging object). */
async function originals(input: InvariantInputs, rows: Row[], v: Note): Promise<void> {
  const objects = await listBucket(input.s3)
  const prefix = input.s3.prefix ? `${input.s3.prefix}/` : ''
  const content = new Set<string>()
  for (const o of objects) {
    const key = o.key.slice(prefix.length)
    if (key.startsWith('.staging/') || key.startsWith('.resumable/')) {
      if (Date.now() - o.modified > input.stagingAgeMs)
        v('original-orphan', `staging object ${key} from ${iso(o.modified)} still there`)
      continue
    }
    content.add(key)
  }
  const referenced = new Set<string>()
  for (const r of rows) {
    const key = `${r.tenant_id}/${r.sha256}`
    if (!r.deleted_at || !r.provider_deleted) referenced.add(key)
    if (!r.deleted_at && r.original_stored && !content.has(key))
      v('original-missing', `row ${r.id}: ${key} not in the bucket`)
  }
  for (const key of content) {
    if (!referenced.has(key)) v('original-orphan', `${key}: no live row of its tenant uses it, still in the bucket`)
  }
}

async function listBucket(s3: InvariantInputs['s3']): Promise<Array<{ key: string; modified: number }>> {
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  })
  const out: Array<{ key: string; modified: number }> = []
  try {
    let token: string | undefined
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: s3.prefix || undefined, ContinuationToken: token }),
      )
      for (const o of page.Contents ?? []) out.push({ key: o.Key ?? '', modified: o.LastModified?.getTime() ?? 0 })
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token)
  } finally {
    client.destroy()
  }
  return out
}

/** No crash, every line JSON, RSS within its bound. */
function processes(input: InvariantInputs, v: Note, notes: string[]): void {
  for (const e of input.observed.exits) {
    if (!e.caused) {
      v(
        'crash',
        `${e.replica} exited (code ${e.code}, signal ${e.signal}) at ${iso(e.at)}; last lines: ${e.lastLines.join(' ⏎ ').slice(0, 600)}`,
        e.at,
      )
    }
  }
  for (const p of input.observed.outputProblems) v('log-not-json', `${p.replica} ${p.stream}: ${p.line}`, p.at)
  for (const [replica, series] of input.observed.rss) {
    const peak = Math.max(...series.map((s) => s.rss))
    if (peak > input.rssLimitBytes) {
      const at = series.find((s) => s.rss === peak)?.at
      v('rss', `${replica} peaked at ${mb(peak)} MB, over ${mb(input.rssLimitBytes)} MB`, at)
    }
    notes.push(`${replica} RSS: ${rssShape(series)}`)
  }
}

function rssShape(series: Array<{ rss: number }>): string {
  if (series.length === 0) return 'no samples'
  const at = (q: number) =>
    mb((series[Math.min(series.length - 1, Math.floor(q * series.length))] as { rss: number }).rss)
  return `${at(0)} → ${at(0.25)} → ${at(0.5)} → ${at(0.75)} → ${at(0.999)} MB (quartiles), peak ${mb(Math.max(...series.map((s) => s.rss)))} MB over ${series.length} samples`
}

const mb = (bytes: number) => Math.round(bytes / 1024 / 1024)
export const iso = (ms: number) => new Date(ms).toISOString().slice(11, 23)
