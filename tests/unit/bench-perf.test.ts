/**
 * bench/harness/perf.ts (BENCH_PERF=1): `perf report` text is read into rows. Recording a real
 * process needs perf and a machine free enough to sample it: that check is a tool of the bench
 * (`npm run bench:perf-check`), not a unit test.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parsePerfReport, parseSampleCount } from '../../bench/harness/perf.js'

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
})
