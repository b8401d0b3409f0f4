/**
 * bench/harness/perf.ts (BENCH_PERF=1): `perf report` text is read into rows, and a real recording
 * of a process that spends its time hashing names OpenSSL's SHA-256 among its top symbols.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { parsePerfReport, parseSampleCount, perfAvailable, startPerf, summarisePerf } from '../../bench/harness/perf.js'
import { tempDir } from '../helper.js'

const reportText = `# To display the perf.data header info, please use --header/--header-only options.
#
# Total Lost Samples: 0
#
# Samples: 3K of event 'cpu-clock'
# Event count (approx.): 1598000000
#
# Overhead  Shared Object        Symbol
# ........  ...................  ......
#
    34.29%  node                 [.] sha256_block_data_order_shaext
     4.54%  libc.so.6            [.] __memmove_avx512_unaligned_erms
     3.85%  [kernel.kallsyms]    [k] _copy_from_iter
     3.50%  [JIT] tid 7771       [.] 0x00007f3a
`

describe('bench perf summary', () => {
  it('reads the rows and the sample count of perf report --stdio', () => {
    const rows = parsePerfReport(reportText)
    assert.equal(rows.length, 4)
    assert.deepEqual(rows[0], { share: 0.3429, name: 'node                 [.] sha256_block_data_order_shaext' })
    assert.equal(rows[3]?.name, '[JIT] tid 7771       [.] 0x00007f3a')
    // "Total Lost Samples: 0" comes first and must not be taken for the count.
    assert.equal(parseSampleCount(reportText), 3000)
    assert.equal(parseSampleCount("# Samples: 812 of event 'cpu-clock'"), 812)
    assert.equal(parseSampleCount('no header'), 0)
  })

  it('records a hashing process and names SHA-256 among its top symbols', async (t) => {
    if (!perfAvailable()) return t.skip('perf cannot record on this machine')
    const dir = await tempDir(t)
    // The child hashes until it is killed, so the recording's length does not depend on start-up time.
    const script =
      "const h = require('node:crypto').createHash('sha256'); const b = Buffer.alloc(1 << 20); for (;;) h.update(b)"
    const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' })
    const exited = new Promise((resolve) => child.once('exit', resolve))
    t.after(() => child.kill('SIGKILL'))
    const file = join(dir, 'hash.data')
    const recording = await startPerf(child.pid as number, file)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    await recording.stop()
    child.kill('SIGKILL')
    await exited
    const summary = summarisePerf(file)
    assert.ok(summary, 'perf report read the recording')
    assert.ok(summary.samples > 100, `${summary.samples} samples`)
    assert.ok(
      summary.topSymbols.slice(0, 5).some((s) => /sha256/i.test(s.name)),
      summary.topSymbols.map((s) => `${s.share} ${s.name}`).join('\n'),
    )
    assert.ok(summary.byObject.some((o) => o.name === 'node'))
    assert.ok(summary.byThread.length >= 1)
  })
})
