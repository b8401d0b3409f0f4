/**
 * The schedules in the real process: CLEANUP_CRON and RECONCILE_CRON every second, a reconcile that
 * outlasts its schedule (a slow provider listing). Every line the process writes is JSON (node-cron
 * writes through pino); the overrun is logged once and counted; the reconcile's findings are
 * exposed as filegate_provider_unknown_files.
 */
import assert from 'node:assert/strict'
import { describe, it, type TestContext } from 'node:test'
import { createTestDatabase, freePort, postgresSuiteSkip, startFakes } from '../helper.js'
import { httpRequest, serverEnv, spawnNode, waitForStatus, waitUntil, within } from '../process-support.js'

const needsPostgres = await postgresSuiteSkip()

async function database(t: TestContext) {
  const db = await createTestDatabase('filegate_sched')
  t.after(() => db.drop())
  return db
}

/** The value of one series in a Prometheus exposition, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

const lines = (text: string) => text.split('\n').filter((l) => l.trim() !== '')

describe('scheduled jobs in the real process', { skip: needsPostgres }, () => {
  it('an overrunning reconcile on a 1 s schedule is logged once through pino and counted; every line is JSON', async (t) => {
    const db = await database(t)
    const fakes = await startFakes(t)
    // A file at the provider no row knows, and a listing slow enough to outlast two ticks.
    fakes.kimi.addFile({ filename: 'stranger.txt', created_at: Math.floor(Date.now() / 1000) - 3600 })
    fakes.kimi.ops = ['list']
    fakes.kimi.latencyMs = 2_500
    const port = await freePort()
    const child = spawnNode(
      t,
      'src/server.ts',
      await serverEnv(t, port, {
        ...fakes.env,
        DATABASE_URL: db.url,
        LOG_LEVEL: 'info',
        CLEANUP_ENABLED: 'true',
        CLEANUP_CRON: '* * * * * *',
        RECONCILE_CRON: '* * * * * *',
        RECONCILE_GRACE_MINUTES: '0',
      }),
    )
    await waitForStatus(child, port, '/readyz', 200, 60_000)
    // The reconcile's overruns. (On a loaded machine the 1 s cleanup may overrun too: logged and
    // counted the same way, under its own schedule, and not what this test is about.)
    const overruns = () =>
      lines(child.stdout())
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.msg === 'scheduled run overran its schedule' && l.schedule === 'reconcile')
    await waitUntil('an overrun of the reconcile to be logged', () => overruns().length > 0, 60_000)

    const first = overruns()[0] as Record<string, unknown>
    assert.equal(first.job, 'reconcile')
    assert.ok(Number(first.duration_ms) >= 2_500, JSON.stringify(first))
    assert.ok(Number(first.skipped_runs) >= 1)
    assert.equal(first.level, 40, 'a warning')

    const metrics = await httpRequest(port, '/metrics')
    assert.equal(metrics.status, 200)
    const counted = sample(metrics.body, 'filegate_cleanup_overruns_total{job="reconcile"}')
    assert.ok(counted !== undefined && counted >= 1, metrics.body)
    assert.ok(counted >= overruns().length, 'counted once per overrunning run, logged once when it ends')
    assert.equal(sample(metrics.body, 'filegate_provider_unknown_files{provider="kimi"}'), 1)
    assert.equal(sample(metrics.body, 'filegate_provider_unknown_files{provider="glm"}'), 0)
    assert.ok(fakes.kimi.files.size === 1, 'reported, not deleted (RECONCILE_DELETE_UNKNOWN is false)')

    child.proc.kill('SIGTERM')
    await within(30_000, 'the service to stop', child.exited, child.output)
    const out = lines(child.stdout())
    assert.ok(out.length > 5, child.output())
    for (const line of [...out, ...lines(child.stderr())]) {
      assert.doesNotThrow(() => JSON.parse(line), `every line is JSON; this one is not:\n${line}`)
    }
    assert.doesNotMatch(child.output(), /NODE-CRON/)
  })
})
