/**
 * BENCH_QUICK=1: small sizes and short windows for every setting left unset, so a whole run
 * proves each scenario works in a few minutes on a busy machine. Its figures are not figures:
 * such a run writes RESULTS.partial.md, never RESULTS.md.
 */
const quickDefaults: Record<string, string> = {
  BENCH_LARGE_BYTES: String(16_000_000),
  BENCH_LARGE_RUNS: '1',
  BENCH_MEMORY_CONCURRENCY: '2',
  BENCH_SMALL_SECONDS: '1',
  BENCH_SMALL_WARMUP_S: '0.5',
  BENCH_SMALL_ROUNDS: '1',
  BENCH_SWEEP_ROWS: '2000',
  BENCH_DEDUP_ROWS: '10000,20000',
  BENCH_DEDUP_CALLS: '200',
  BENCH_ORIGINALS_RUNS: '1',
  BENCH_CLIENT_RUNS: '1',
  BENCH_ACCESS_ROUNDS: '1',
  BENCH_RESUMABLE_BYTES: String(64_000_000),
  BENCH_TUS_CHUNKED_BYTES: String(16_000_000),
  BENCH_OPENAI_PART_BYTES: String(16 * 1024 * 1024),
  BENCH_RESUMABLE_RUNS: '1',
}

/** Sets the quick defaults into process.env when BENCH_QUICK=1; returns the `NAME=value` pairs set. */
export function quickSettings(): string[] {
  if (process.env.BENCH_QUICK !== '1') return []
  const set: string[] = []
  for (const [name, value] of Object.entries(quickDefaults)) {
    if (process.env[name] !== undefined && process.env[name] !== '') continue
    process.env[name] = value
    set.push(`${name}=${value}`)
  }
  return set
}
