/**
 * The soak's summary: operations by outcome, the fault timeline, violations by class with
 * examples (each with its time since the start, to replay with the same seed), notes, and the
 * database figures each replica exported when it has them.
 */
import type { Verdict } from './classify.js'
import type { FaultWindow } from './faults.js'
import type { Violation } from './invariants.js'
import type { Outcome } from './ledger.js'

export interface Judged {
  outcome: Outcome
  verdict: Verdict
}

export interface SummaryInput {
  seed: number
  seconds: number
  t0: number
  judged: Judged[]
  timeline: FaultWindow[]
  violations: Violation[]
  notes: string[]
  db: string[]
}

export function summarize(input: SummaryInput): string {
  const { t0 } = input
  const rel = (ms: number) => `+${((ms - t0) / 1000).toFixed(1)} s`
  const out: string[] = []
  out.push(`\nsoak: SOAK_SEED=${input.seed} SOAK_SECONDS=${input.seconds}`)
  out.push(...operations(input.judged, input.seconds))
  out.push('\nFault timeline:')
  for (const w of [...input.timeline].sort((a, b) => a.start - b.start)) {
    const end = w.end === undefined ? 'open' : w.end === w.start ? '(instant)' : `→ ${rel(w.end)}`
    out.push(
      `  ${rel(w.start).padStart(9)} ${end.padEnd(12)} ${w.kind.padEnd(16)} ${w.target.padEnd(8)} ${w.detail.slice(0, 160)}`,
    )
  }
  const all: Violation[] = [
    ...input.judged.flatMap(({ outcome, verdict }) =>
      verdict.kind === 'violation'
        ? [{ cls: verdict.cls, at: outcome.start, detail: describe(outcome, verdict.reason, rel) }]
        : [],
    ),
    ...input.violations,
  ]
  out.push(`\nViolations: ${all.length}`)
  const byClass = new Map<string, Violation[]>()
  for (const v of all) byClass.set(v.cls, [...(byClass.get(v.cls) ?? []), v])
  for (const [cls, list] of [...byClass].sort((a, b) => b[1].length - a[1].length)) {
    out.push(`  ${cls}: ${list.length}`)
    for (const v of list.slice(0, 4))
      out.push(`    ${v.at === undefined ? '' : `${rel(v.at)} `}${v.detail.slice(0, 400)}`)
  }
  if (input.notes.length > 0) out.push('\nNotes:', ...input.notes.map((n) => `  ${n}`))
  out.push(
    '\nDatabase connections (from /metrics):',
    ...(input.db.length > 0 ? input.db : ['  not exported by this build']),
  )
  out.push(`\n${all.length === 0 ? 'PASS' : 'FAIL'}: ${all.length} violation(s) in ${byClass.size} class(es)\n`)
  return out.join('\n')
}

function describe(o: Outcome, reason: string, rel: (ms: number) => string): string {
  const file = o.fileId ? ` file ${o.fileId}` : ''
  const id = o.requestId ? ` request ${o.requestId}` : ''
  return `${reason} (tenant ${o.tenant}${o.provider ? `, ${o.provider}` : ''}${file}${id}, ${rel(o.start)}–${rel(o.end)})`
}

function operations(judged: Judged[], seconds: number): string[] {
  const rows = new Map<
    string,
    { total: number; ok: number; expected: number; violation: number; answers: Map<string, number> }
  >()
  for (const { outcome, verdict } of judged) {
    const row = rows.get(outcome.op) ?? { total: 0, ok: 0, expected: 0, violation: 0, answers: new Map() }
    row.total++
    row[verdict.kind === 'ok' ? 'ok' : verdict.kind]++
    const answer =
      outcome.status !== undefined
        ? `${outcome.status}${outcome.code ? ` ${outcome.code}` : ''}`
        : (outcome.error ?? '?')
    row.answers.set(answer, (row.answers.get(answer) ?? 0) + 1)
    rows.set(outcome.op, row)
  }
  const out = [`\nOperations: ${judged.length} (${(judged.length / seconds).toFixed(1)}/s)`]
  out.push(
    `  ${'op'.padEnd(13)}${'total'.padStart(7)}${'ok'.padStart(7)}${'fault'.padStart(7)}${'bad'.padStart(6)}  answers`,
  )
  for (const [op, r] of [...rows].sort((a, b) => b[1].total - a[1].total)) {
    const answers = [...r.answers]
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ×${n}`)
      .join(', ')
    out.push(
      `  ${op.padEnd(13)}${String(r.total).padStart(7)}${String(r.ok).padStart(7)}${String(r.expected).padStart(7)}${String(r.violation).padStart(6)}  ${answers}`,
    )
  }
  return out
}

/** A metric's samples in Prometheus text: name{labels} value. */
function samples(text: string, name: string): Array<{ labels: string; value: number }> {
  const out: Array<{ labels: string; value: number }> = []
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+|NaN|\+Inf)$/.exec(line)
    if (m && m[1] === name) out.push({ labels: m[2] ?? '', value: Number(m[3]) })
  }
  return out
}

/**
 * Connect durations (filegate_db_connect_duration_seconds) and pool waits
 * (filegate_db_pool_waiting, its highest scraped value) per replica incarnation, where exported.
 */
export function dbFigures(metrics: Map<string, string>, poolWaitingMax: Map<string, number>): string[] {
  const out: string[] = []
  for (const [incarnation, text] of [...metrics].sort()) {
    const count = samples(text, 'filegate_db_connect_duration_seconds_count').reduce((s, x) => s + x.value, 0)
    const sum = samples(text, 'filegate_db_connect_duration_seconds_sum').reduce((s, x) => s + x.value, 0)
    const buckets = samples(text, 'filegate_db_connect_duration_seconds_bucket')
    const waiting = poolWaitingMax.get(incarnation)
    if (count === 0 && buckets.length === 0 && waiting === undefined) continue
    const le = (b: { labels: string }) => Number(/le="([^"]+)"/.exec(b.labels)?.[1] ?? Number.NaN)
    const max = buckets
      .filter((b) => b.value >= count)
      .map(le)
      .sort((a, b) => a - b)[0]
    out.push(
      `  ${incarnation}: ${count} connects, mean ${count ? ((sum / count) * 1000).toFixed(1) : '-'} ms, all within ${max ?? '?'} s; pool waiting at most ${waiting ?? 'n/a'}`,
    )
  }
  return out
}

export const poolWaiting = (text: string): number | undefined => {
  const s = samples(text, 'filegate_db_pool_waiting')
  return s.length > 0 ? Math.max(...s.map((x) => x.value)) : undefined
}
