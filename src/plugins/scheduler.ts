/**
 * Prepares the spool directory and runs the cleanup sweeps on CLEANUP_CRON, and the reconcile job on
 * RECONCILE_CRON when set, with node-cron. Every replica schedules; the per-job lease in Postgres
 * lets one run each job at a time. Beside the sweeps, on the same schedule, each process sweeps its
 * host's spool directory (spool files are local: no lease), also when the cleanup jobs are disabled.
 * On close the schedules stop and a run in flight finishes its current batch before the store closes.
 *
 * A run still going when its schedule comes round again is an overrun: that tick is skipped, the
 * overrun counted once (filegate_cleanup_overruns_total, by the job then running) and logged once
 * when the run ends, with how long it ran. node-cron writes through pino too (its own logger writes
 * coloured lines to the console), so every line the service writes is JSON.
 */
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import cron, { type ScheduledTask } from 'node-cron'
import type { Config } from '../config.js'
import { type CleanupJob, scheduledJobs } from '../domain/cleanup.js'
import { removeStaleSpools } from '../domain/spool.js'
import type { Metrics } from '../metrics.js'

/** What a schedule's run reports as it goes: the job in progress (the overrun's label). */
interface RunProgress {
  job: CleanupJob | 'spool'
}

/** node-cron's logger interface, written through pino. */
const cronLogger = (log: FastifyBaseLogger) => ({
  info: (message: string) => log.info(message),
  warn: (message: string) => log.warn(message),
  error: (message: string | Error, err?: Error) =>
    message instanceof Error ? log.error({ err: message }, message.message) : log.error({ err }, message),
  debug: (message: string | Error, err?: Error) =>
    message instanceof Error ? log.debug({ err: message }, message.message) : log.debug({ err }, message),
})

/**
 * Runs `run` on `expression`, never two at once: a tick that finds the last run still going is
 * skipped, counted and, when that run ends, logged once.
 */
function schedule(
  name: string,
  expression: string,
  run: (progress: RunProgress) => Promise<unknown>,
  deps: { log: FastifyBaseLogger; metrics: Metrics; skip: () => boolean },
) {
  let running: Promise<unknown> | undefined
  let current: { progress: RunProgress; started: number; skipped: number } | undefined
  const tick = async () => {
    if (current) {
      if (current.skipped++ === 0) deps.metrics.cleanupOverruns.inc({ job: current.progress.job })
      return
    }
    if (deps.skip()) return
    const state = { progress: { job: 'spool' } as RunProgress, started: Date.now(), skipped: 0 }
    current = state
    running = run(state.progress).finally(() => {
      current = undefined
      running = undefined
      if (state.skipped === 0) return
      deps.log.warn(
        {
          schedule: name,
          job: state.progress.job,
          duration_ms: Date.now() - state.started,
          skipped_runs: state.skipped,
        },
        'scheduled run overran its schedule',
      )
    })
    await running
  }
  const task: ScheduledTask = cron.schedule(expression, tick, {
    name: `filegate-${name}`,
    logger: cronLogger(deps.log.child({ component: 'node-cron' })),
  })
  return {
    async stop() {
      await task.stop()
    },
    async drain() {
      await running
      await task.destroy()
    },
  }
}

export default fp(
  async function schedulerPlugin(app: FastifyInstance, opts: { config: Config }) {
    const { cleanup: lc } = opts.config
    if (!lc.enabled) app.log.info('scheduled cleanup disabled (CLEANUP_ENABLED=false); spool sweeps still run')
    const sweepSpools = async () => {
      const removed = await removeStaleSpools(opts.config.uploadTmpDir, opts.config.timeouts.uploadMs)
      if (removed > 0) app.log.info({ removed, dir: opts.config.uploadTmpDir }, 'removed stale upload spool files')
    }
    // Spool files no live process owns are removed at start, then on every tick (buildApp made or
    // checked the directory first).
    await sweepSpools()

    const deps = { log: app.log, metrics: app.metrics, skip: () => app.readiness.shuttingDown }
    const schedules = [
      schedule(
        'cleanup',
        lc.cron,
        async (progress) => {
          const cleanup =
            lc.enabled && app.readiness.schemaReady
              ? app.cleanup
                  .run({
                    dryRun: false,
                    jobs: scheduledJobs(app.originals !== undefined),
                    onJob: (job) => {
                      progress.job = job
                    },
                  })
                  .finally(() => {
                    progress.job = 'spool'
                  })
              : undefined
          await Promise.all([
            sweepSpools().catch((err) => app.log.error({ err }, 'spool sweep failed')),
            cleanup?.catch((err) => app.log.error({ err }, 'scheduled cleanup failed')),
          ])
        },
        deps,
      ),
    ]
    // Reconcile on its own schedule: opt-in (RECONCILE_CRON), and part of the scheduled cleanup,
    // so CLEANUP_ENABLED=false turns it off too. Deleting what it finds stays RECONCILE_DELETE_UNKNOWN's.
    if (lc.reconcileCron !== undefined && lc.enabled) {
      schedules.push(
        schedule(
          'reconcile',
          lc.reconcileCron,
          async (progress) => {
            progress.job = 'reconcile'
            if (!app.readiness.schemaReady) return
            await app.cleanup
              .run({ dryRun: false, jobs: ['reconcile'] })
              .catch((err) => app.log.error({ err }, 'scheduled reconcile failed'))
          },
          deps,
        ),
      )
    }
    app.addHook('preClose', async () => {
      await Promise.all(schedules.map((s) => s.stop()))
      app.cleanup.stop()
      await Promise.all(schedules.map((s) => s.drain()))
    })
  },
  { name: 'filegate-scheduler', dependencies: ['filegate-services', 'filegate-store', 'filegate-metrics'] },
)
