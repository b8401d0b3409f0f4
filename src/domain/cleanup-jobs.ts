/**
 * The names of the cleanup jobs, apart from the sweeps themselves, so that a caller that only needs
 * the names (the command line's help) does not load the store and the providers.
 */
/**
 * In the order they run: stuck feeds orphaned (failed rows), every job feeds provider_deletes, and
 * originals last (an original goes once its rows' provider deletes are done).
 */
export const cleanupJobs = [
  'stuck',
  'expired',
  'orphaned',
  'reconcile',
  'provider_deletes',
  'originals',
  'resumable',
] as const
export type CleanupJob = (typeof cleanupJobs)[number]
export const defaultJobs: CleanupJob[] = ['stuck', 'expired', 'orphaned', 'provider_deletes', 'resumable']

/** The jobs the scheduler (and POST /v1/cleanup without `jobs`) runs: `originals` too when they are kept. */
export const jobsByDefault = (originalsKept: boolean): CleanupJob[] =>
  originalsKept ? [...defaultJobs, 'originals'] : defaultJobs
