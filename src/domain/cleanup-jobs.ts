/**
 * The names of the cleanup jobs, apart from the sweeps themselves, so that a caller that only needs
 * the names (the command line's help) does not load the store and the providers.
 */

/**
 * In the order they run: stuck feeds orphaned (failed rows), every job feeds provider_deletes, and
 * originals last (an original goes once its rows' provider deletes are done); resumable (expired
 * uploads and settled uploads' staged bytes) and audit (events older than AUDIT_RETENTION_DAYS)
 * stand apart.
 */
export const cleanupJobs = [
  'stuck',
  'expired',
  'orphaned',
  'reconcile',
  'provider_deletes',
  'originals',
  'resumable',
  'audit',
] as const
export type CleanupJob = (typeof cleanupJobs)[number]
export const defaultJobs: CleanupJob[] = ['stuck', 'expired', 'orphaned', 'provider_deletes', 'resumable']

/** The jobs POST /v1/cleanup runs without `jobs`: `originals` too when they are kept. */
export const jobsByDefault = (originalsKept: boolean): CleanupJob[] =>
  originalsKept ? [...defaultJobs, 'originals'] : defaultJobs

/** What the schedule runs: the default jobs and the audit's retention. */
export const scheduledJobs = (originalsKept: boolean): CleanupJob[] => [...jobsByDefault(originalsKept), 'audit']
