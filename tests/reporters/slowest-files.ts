/**
 * A node:test reporter that prints, once the run ends, the test files that took longest: the sum
 * of each file's top-level tests and suites (a file's own start-up is not in it). Used beside the
 * usual reporter: `--test-reporter=spec --test-reporter-destination=stdout
 * --test-reporter=./tests/reporters/slowest-files.ts --test-reporter-destination=stderr`.
 * SLOWEST_FILES sets how many are listed (15).
 */
import type { TestEvent } from 'node:test/reporters'
import { sourceName } from '../source-name.js'

export default async function* slowestFiles(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const totals = new Map<string, number>()
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue
    const { data } = event
    if (data.nesting !== 0 || !data.file) continue
    const file = sourceName(data.file)
    totals.set(file, (totals.get(file) ?? 0) + data.details.duration_ms)
  }
  const count = Number(process.env.SLOWEST_FILES ?? 15)
  const ranked = [...totals].sort((a, b) => b[1] - a[1]).slice(0, count)
  const sum = [...totals.values()].reduce((a, b) => a + b, 0)
  yield `\n# the ${ranked.length} slowest of ${totals.size} test files (their tests' time; ${(sum / 1000).toFixed(0)} s in all)\n`
  for (const [file, ms] of ranked) yield `# ${(ms / 1000).toFixed(1).padStart(7)} s  ${file}\n`
}
