/**
 * The dedup probe (is there a live copy of this content?) of every upload, batched: the probes
 * requests make during one turn of the event loop go to the database as one call of
 * `find_live_duplicates` (migrations/0002). Under load that is one round trip for many uploads
 * instead of one each; a lone request waits for nothing but the end of the current turn.
 */
import DataLoader from 'dataloader'
import type { StorePort } from '../store/port.js'
import { type DedupProbe, findLiveDuplicates } from '../store/queries.js'
import type { FileRow } from './file-record.js'

/** At most this many probes per call: bounds one statement's work and its row locks. */
export const maxProbesPerCall = 64

export type DedupProber = (probe: DedupProbe) => Promise<FileRow | null>

export function createDedupProber(store: StorePort): DedupProber {
  const loader = new DataLoader<DedupProbe, FileRow | null>(
    async (probes) => {
      const answers = await findLiveDuplicates(store, probes)
      if (!Array.isArray(answers) || answers.length !== probes.length) {
        throw new Error(`find_live_duplicates answered ${answers?.length} rows for ${probes.length} probes`)
      }
      return answers
    },
    {
      // Every probe is asked afresh: a cached answer could be a file deleted since.
      cache: false,
      maxBatchSize: maxProbesPerCall,
      // The end of the event-loop turn, not of the current tick: requests read from different
      // sockets in one turn land in one batch.
      batchScheduleFn: (run) => setImmediate(run),
    },
  )
  return (probe) => loader.load(probe)
}
