/**
 * How the runner's reports name a test file: by its source, relative to the repository's root. A
 * file run from the run's build (scripts/run-tests.ts: `.test-build/…/x.test.js`) is `…/x.test.ts`.
 */
import { relative } from 'node:path'

export const sourceName = (file: string): string =>
  relative(process.cwd(), file).replace(/^\.test-build\/(.*)\.js$/, '$1.ts')
