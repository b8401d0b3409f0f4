/** Builds the domain services from the store, providers and metrics and decorates the app with them. */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { CleanupService, refreshUnknownFilesGauge } from '../domain/cleanup.js'
import { FileService } from '../domain/files.js'
import { createResumableUploads, type ResumableUploads } from '../domain/resumable.js'
import { atMostEvery, usageRefreshMs } from '../metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    files: FileService
    cleanup: CleanupService
    /** Resumable uploads (tus at /v1/uploads, OpenAI Uploads on the facade). */
    resumable: ResumableUploads
  }
}

export default fp(
  async function servicesPlugin(app: FastifyInstance, opts: { config: Config }) {
    const files = new FileService({
      store: app.store,
      providers: app.providers,
      config: opts.config,
      metrics: app.metrics,
      originals: app.originals,
      log: app.log,
    })
    app.decorate('files', files)
    // Each process sweeps its own journal of unsettled provider copies, as often as a claim is renewed.
    files.unsettled.start((opts.config.claimLeaseSeconds * 1000) / 3)
    app.addHook('onClose', () => files.unsettled.stop())
    const resumable = createResumableUploads({
      store: app.store,
      originals: app.originals,
      files,
      metrics: app.metrics,
      config: opts.config,
      log: app.log,
    })
    app.decorate('resumable', resumable)
    // Completions the resumable job took up finish before the store closes (or their lease runs out
    // and another replica takes them up, when shutdown is cut short).
    app.addHook('preClose', () => resumable.stop())
    app.decorate(
      'cleanup',
      new CleanupService({
        store: app.store,
        providers: app.providers,
        config: opts.config,
        metrics: app.metrics,
        deletion: files.deletionDeps,
        log: app.log,
        originals: app.originals,
        healer: files.healer,
        resumable,
      }),
    )

    // Live usage gauges are read from the database when Prometheus scrapes, at most every few
    // seconds (an unauthenticated scrape loop must not become a database load); a scrape during a
    // database outage keeps the last values rather than failing the whole exposition.
    app.metrics.hooks.refreshUsage = atMostEvery(usageRefreshMs, async () => {
      if (app.readiness.schemaReady) await files.refreshUsageGauges().catch(() => {})
    })
    app.metrics.hooks.refreshReconcile = atMostEvery(usageRefreshMs, async () => {
      if (app.readiness.schemaReady) {
        await refreshUnknownFilesGauge(app.store, app.providers, app.metrics).catch(() => {})
      }
    })
    if (app.originals) {
      app.metrics.hooks.refreshOriginals = atMostEvery(usageRefreshMs, async () => {
        if (app.readiness.schemaReady) await files.refreshOriginalsGauges().catch(() => {})
      })
    }
  },
  {
    name: 'filegate-services',
    dependencies: ['filegate-store', 'filegate-providers', 'filegate-metrics', 'filegate-originals'],
  },
)
