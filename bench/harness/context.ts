/** What every scenario gets from the runner, and what it hands back. */
import type { BenchDatabase } from './db.js'
import type { FakeHandle, ServiceHandle } from './processes.js'

export interface Figure {
  scenario: number
  name: string
  value: number
  unit: string
  baseline?: { name: string; value: number; unit: string }
  /** value / baseline (or the figure's own ratio, e.g. growth 1M vs 100k). */
  ratio?: number
  target: string
  /** null when the figure is informative only. */
  met: boolean | null
  detail?: string
  /**
   * Set on the figures of the summary (report.ts: summaryKeys): the same name in every run, so that
   * `npm run bench` prints them together and `npm run bench:ab` compares them between variants.
   */
  key?: string
}

export interface ScenarioResult {
  figures: Figure[]
  /** Markdown lines for the details section of RESULTS.md. */
  notes: string[]
}

export interface BenchContext {
  db: BenchDatabase
  fake: FakeHandle
  workDir: string
  /**
   * A fresh filegate process for this scenario, named `name` in the log: compiled as in production,
   * or through the tsx loader (`npm run dev`).
   */
  startService(name: string, env?: Record<string, string>, runtime?: 'service' | 'tsx'): Promise<ServiceHandle>
  log(message: string): void
}

export const envNumber = (name: string, fallback: number): number => {
  const raw = process.env[name]
  const n = raw === undefined || raw === '' ? Number.NaN : Number(raw)
  return Number.isFinite(n) && n > 0 ? n : fallback
}
