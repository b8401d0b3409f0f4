/**
 * Runs the cleanup sweeps on CLEANUP_CRON with node-cron. Every replica schedules; the per-job
 * lease in Postgres lets one run each job at a time. On close the schedule stops and a sweep in
 * flight finishes its current batch before the store closes.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import cron from 'node-cron'
import type { Config } from '../config.js'
import { defaultJobs } from '../domain/lifecycle.js'

export default fp(
  async function schedulerPlugin(app: FastifyInstance, opts: { config: Config }) {
    const { lifecycle: lc } = opts.config
    if (!lc.enabled) {
      app.log.info('scheduled cleanup disabled (CLEANUP_ENABLED=false)')
      return
    }
    let running: Promise<unknown> | undefined
    const task = cron.schedule(
      lc.cron,
      async () => {
        if (!app.lifecycle.schemaReady || app.lifecycle.shuttingDown || running) return
        running = app.cleanup
          .run({ dryRun: false, jobs: defaultJobs })
          .catch((err) => app.log.error({ err }, 'scheduled cleanup failed'))
          .finally(() => {
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
