/**
 * Prepares the spool directory and runs the cleanup sweeps on CLEANUP_CRON with node-cron. Every replica schedules; the per-job
 * lease in Postgres lets one run each job at a time. Beside them, on the same schedule, each
 * process sweeps its host's spool directory (spool files are local: no lease), also when the
 * cleanup jobs are disabled. On close the schedule stops and a sweep in flight finishes its
 * current batch before the store closes.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import cron from 'node-cron'
import type { Config } from '../config.js'
import { scheduledJobs } from '../domain/cleanup.js'
import { prepareSpoolDir, removeStaleSpools } from '../domain/spool.js'

export default fp(
  async function schedulerPlugin(app: FastifyInstance, opts: { config: Config }) {
    const { cleanup: lc } = opts.config
    if (!lc.enabled) app.log.info('scheduled cleanup disabled (CLEANUP_ENABLED=false); spool sweeps still run')
    const sweepSpools = async () => {
      const removed = await removeStaleSpools(opts.config.uploadTmpDir, opts.config.timeouts.uploadMs)
      if (removed > 0) app.log.info({ removed, dir: opts.config.uploadTmpDir }, 'removed stale upload spool files')
    }
    // The spool directory is made 0700, or refused when another user could reach into it; spool
    // files no live process owns are removed at start, then on every tick.
    await prepareSpoolDir(opts.config.uploadTmpDir)
    await sweepSpools()

    let running: Promise<unknown> | undefined
    const task = cron.schedule(
      lc.cron,
      async () => {
        if (app.readiness.shuttingDown || running) return
        const cleanup =
          lc.enabled && app.readiness.schemaReady
            ? app.cleanup.run({ dryRun: false, jobs: scheduledJobs(app.originals !== undefined) })
            : undefined
        running = Promise.all([
          sweepSpools().catch((err) => app.log.error({ err }, 'spool sweep failed')),
          cleanup?.catch((err) => app.log.error({ err }, 'scheduled cleanup failed')),
        ]).finally(() => {
          running = undefined
        })
        await running
      },
      { name: 'filegate-cleanup', noOverlap: true },
    )
    app.addHook('preClose', async () => {
      await task.stop()
      app.cleanup.stop()
      await running
      await task.destroy()
    })
  },
  { name: 'filegate-scheduler', dependencies: ['filegate-services', 'filegate-store'] },
)
