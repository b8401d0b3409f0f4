/**
 * Every metric filegate exports (docs/operations.md lists them), on its own prom-client Registry.
 * Plain module: the domain records events through it, the metrics plugin only exposes it. No
 * per-user label anywhere.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'

export type UploadOutcome = 'success' | 'failed' | 'deduplicated'
export type CleanupOutcome = 'success' | 'failure' | 'skipped'

export interface ScrapeHooks {
  /** Refreshes filegate_provider_files / filegate_provider_bytes from the database on scrape. */
  refreshUsage?: () => Promise<void>
  /** Refreshes filegate_originals_objects / filegate_originals_bytes (originals kept only). */
  refreshOriginals?: () => Promise<void>
  /** Refreshes filegate_provider_unknown_files from the last reconcile's findings in the database. */
  refreshReconcile?: () => Promise<void>
}

/** What became of one write of an original: written, already stored (dedup in the store), or failed. */
export type OriginalWriteOutcome = 'created' | 'existing' | 'failed'
/** A heal (`ensure`, reconcile): the copy was still there, was remade, could not be (no original), or failed. */
export type HealOutcome = 'present' | 'healed' | 'unavailable' | 'failed'
export type CopyOutcome = 'created' | 'deduplicated' | 'failed'
/**
 * A provider copy whose settle the database did not record in time: deleted at the provider before
 * the answer, written to the local journal, or (by the journal's sweep once the database answers)
 * found settled after all or recorded as a tombstone owing its delete; `lost` when it could be
 * neither deleted nor journaled (its id is in the error log).
 */
export type OrphanOutcome = 'deleted' | 'journaled' | 'settled' | 'recorded' | 'lost'
/** What became of a resumable upload (tus, OpenAI Uploads): each counted once, when it happens. */
export type ResumableOutcome = 'created' | 'completed' | 'deduplicated' | 'failed' | 'cancelled' | 'expired'
/** Why a request was refused access: no credentials, unknown or wrong, expired, revoked, out of scope, a bad JWT, too many failures. */
export type AuthFailureReason = 'missing' | 'invalid' | 'expired' | 'revoked' | 'forbidden' | 'jwt' | 'rate_limited'

/** The live-usage gauges are read from the database at most this often, whatever the scrape rate. */
export const usageRefreshMs = 5_000

/**
 * `refresh` run at most once every `intervalMs`: callers in between get the values of the last
 * run, and callers while one runs wait for that one. A scrape then costs the same at any rate.
 */
export function atMostEvery(intervalMs: number, refresh: () => Promise<void>): () => Promise<void> {
  let startedAt = Number.NEGATIVE_INFINITY
  let running: Promise<void> | undefined
  return () => {
    if (running) return running
    if (Date.now() - startedAt < intervalMs) return Promise.resolve()
    startedAt = Date.now()
    running = refresh().finally(() => {
      running = undefined
    })
    return running
  }
}

export function createMetrics() {
  const registry = new Registry()
  const hooks: ScrapeHooks = {}
  collectDefaultMetrics({ register: registry })
  // prom-client names three gauges *_total, a suffix the exposition format keeps for counters, so
  // `promtool check metrics` rejects them. Each is the sum of a per-type gauge that stays:
  // sum(nodejs_active_handles), sum(nodejs_active_requests), sum(nodejs_active_resources).
  for (const kind of ['handles', 'requests', 'resources']) registry.removeSingleMetric(`nodejs_active_${kind}_total`)
  const r = [registry]
  return {
    registry,
    hooks,
    uploadAttempts: new Counter({
      name: 'filegate_file_upload_attempts_total',
      help: 'Uploads accepted for processing, per target provider',
      labelNames: ['provider'] as const,
      registers: r,
    }),
    uploadBytes: new Counter({
      name: 'filegate_file_upload_bytes_total',
      help: 'Bytes of uploads by outcome',
      labelNames: ['provider', 'status'] as const,
      registers: r,
    }),
    uploadDuration: new Histogram({
      name: 'filegate_file_upload_duration_seconds',
      help: 'Time to put a new file at the provider (all attempts)',
      labelNames: ['provider'] as const,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers: r,
    }),
    activeUploads: new Gauge({
      name: 'filegate_file_active_uploads',
      help: 'Uploads being received or forwarded right now',
      registers: r,
    }),
    dedupHits: new Counter({
      name: 'filegate_file_deduplication_hits_total',
      help: 'Uploads answered from an existing live file',
      labelNames: ['provider'] as const,
      registers: r,
    }),
    circuitTrips: new Counter({
      name: 'filegate_file_circuit_breaker_trips_total',
      help: 'Transitions of a provider circuit breaker to open',
      labelNames: ['provider'] as const,
      registers: r,
    }),
    deletions: new Counter({
      name: 'filegate_file_deletions_total',
      help: 'Files deleted at the provider, by reason',
      labelNames: ['provider', 'reason'] as const,
      registers: r,
    }),
    uploadSlotRefusals: new Counter({
      name: 'filegate_file_upload_slot_refusals_total',
      help: 'Uploads refused a provider upload slot (PROVIDER_MAX_CONCURRENT_UPLOADS): too many waiting (queue_full) or none free in time (timeout)',
      labelNames: ['provider', 'reason'] as const,
      registers: r,
    }),
    validationFailures: new Counter({
      name: 'filegate_file_validation_failures_total',
      help: 'Uploads refused before reaching a provider, by reason (error code)',
      labelNames: ['reason'] as const,
      registers: r,
    }),
    circuitState: new Gauge({
      name: 'filegate_provider_circuit_state',
      help: 'Circuit breaker state per provider: 0 closed, 1 half-open, 2 open',
      labelNames: ['provider'] as const,
      registers: r,
    }),
    providerFiles: new Gauge({
      name: 'filegate_provider_files',
      help: 'Files occupying the provider account (live, in flight, or awaiting provider delete)',
      labelNames: ['provider'] as const,
      registers: r,
      async collect() {
        await hooks.refreshUsage?.()
      },
    }),
    providerBytes: new Gauge({
      name: 'filegate_provider_bytes',
      help: 'Bytes occupying the provider account',
      labelNames: ['provider'] as const,
      registers: r,
      // The registry collects its metrics concurrently: this gauge waits for the same refresh
      // as filegate_provider_files (one shared read) rather than showing the previous one.
      async collect() {
        await hooks.refreshUsage?.()
      },
    }),
    // The account caps (KIMI_MAX_FILES, …), set at start for capped providers only, so that usage
    // over cap is one division in PromQL (dashboards, the near-cap alert).
    providerMaxFiles: new Gauge({
      name: 'filegate_provider_max_files',
      help: 'Configured account cap on files per provider (absent when uncapped)',
      labelNames: ['provider'] as const,
      registers: r,
    }),
    providerMaxBytes: new Gauge({
      name: 'filegate_provider_max_bytes',
      help: 'Configured account cap on bytes per provider (absent when uncapped)',
      labelNames: ['provider'] as const,
      registers: r,
    }),
    cleanupRuns: new Counter({
      name: 'filegate_cleanup_runs_total',
      help: 'Cleanup job runs by outcome',
      labelNames: ['job', 'outcome'] as const,
      registers: r,
    }),
    cleanupOverruns: new Counter({
      name: 'filegate_cleanup_overruns_total',
      help: 'Scheduled runs still going when their schedule came round again (that tick skipped), by the job then running',
      labelNames: ['job'] as const,
      registers: r,
    }),
    providerUnknownFiles: new Gauge({
      name: 'filegate_provider_unknown_files',
      help: 'Provider files no row knows, older than RECONCILE_GRACE_MINUTES, still there after the last reconcile (any replica)',
      labelNames: ['provider'] as const,
      registers: r,
      async collect() {
        await hooks.refreshReconcile?.()
      },
    }),
    cleanupLastSuccess: new Gauge({
      name: 'filegate_cleanup_last_success_timestamp_seconds',
      help: 'Unix time of the last successful run of each cleanup job',
      labelNames: ['job'] as const,
      registers: r,
    }),
    originalsObjects: new Gauge({
      name: 'filegate_originals_objects',
      help: 'Originals kept in the originals store (one per tenant and content)',
      registers: r,
      async collect() {
        await hooks.refreshOriginals?.()
      },
    }),
    originalsBytes: new Gauge({
      name: 'filegate_originals_bytes',
      help: 'Bytes of the originals kept in the originals store',
      registers: r,
      async collect() {
        await hooks.refreshOriginals?.()
      },
    }),
    originalWrites: new Counter({
      name: 'filegate_original_writes_total',
      help: 'Writes of an original to the originals store, by outcome',
      labelNames: ['outcome'] as const,
      registers: r,
    }),
    heals: new Counter({
      name: 'filegate_heals_total',
      help: 'Checks of a provider copy that may have vanished (ensure, reconcile), by outcome',
      labelNames: ['provider', 'outcome'] as const,
      registers: r,
    }),
    copies: new Counter({
      name: 'filegate_copies_total',
      help: 'Copies of a file made at another provider from its original, by target provider and outcome',
      labelNames: ['provider', 'outcome'] as const,
      registers: r,
    }),
    providerOrphans: new Counter({
      name: 'filegate_provider_orphans_total',
      help: 'Provider copies whose settle could not be recorded (the database unreachable), by outcome: deleted, journaled, then settled or recorded by the journal sweep, or lost',
      labelNames: ['provider', 'outcome'] as const,
      registers: r,
    }),
    resumableUploads: new Counter({
      name: 'filegate_resumable_uploads_total',
      help: 'Resumable uploads by protocol (tus, openai) and outcome (created, completed, deduplicated, failed, cancelled, expired)',
      labelNames: ['protocol', 'outcome'] as const,
      registers: r,
    }),
    authFailures: new Counter({
      name: 'filegate_auth_failures_total',
      help: 'Requests refused access (401, 403, or 429 after too many failures), by reason',
      labelNames: ['reason'] as const,
      registers: r,
    }),
    dbConnectDuration: new Histogram({
      name: 'filegate_db_connect_duration_seconds',
      help: 'Establishing a connection to DATABASE_URL (TCP connect, startup, authentication, until ready for queries), by outcome (connected, failed)',
      labelNames: ['outcome'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    }),
    dbPoolWaiting: new Gauge({
      name: 'filegate_db_pool_waiting',
      help: 'Database calls waiting for a connection of the pool (none free, or the one given them still connecting)',
      registers: r,
    }),
    httpDuration: new Histogram({
      name: 'filegate_http_request_duration_seconds',
      help: 'HTTP request duration by route template',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: r,
    }),
  }
}

export type Metrics = ReturnType<typeof createMetrics>

export const circuitStateValue = { closed: 0, half_open: 1, open: 2 } as const
