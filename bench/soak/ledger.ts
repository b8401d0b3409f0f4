/**
 * What the soak knows from the answers it got: each content it made, each file a 2xx answer
 * named, which of them it deleted, and every request's outcome (classified later against the
 * fault then active).
 */

export type Op =
  | 'upload'
  | 'upload-dup'
  | 'upload-twin'
  | 'cross-tenant'
  | 'expiring'
  | 'get'
  | 'list'
  | 'delete'
  | 'copy'
  | 'ensure'
  | 'original'
  | 'reconcile'

export interface Outcome {
  op: Op
  tenant: string
  replica: string
  start: number
  end: number
  /** HTTP status, when an answer came. */
  status?: number
  /** The problem+json `code` of an error answer, when it had one. */
  code?: string
  /** A connection-level failure: ECONNREFUSED, ECONNRESET, UND_ERR_SOCKET, timeout… */
  error?: string
  /** The provider the request needed (upload target, copy target, the file's provider). */
  provider?: string
  fileId?: string
  /** A delete of this file was sent (by any client) before this request ended. */
  fileDeleted?: boolean
  /** A check of the answer's content that failed (a wrong hash, a split dedup…). */
  contentProblem?: string
  /** The answer's x-request-id, to find the replica's log line. */
  requestId?: string
}

export interface Content {
  index: number
  size: number
  sha256: string
}

export type FileState = 'live' | 'deleted' | 'maybe-deleted' | 'expiring'

export interface KnownFile {
  id: string
  tenant: string
  provider: string
  content: Content
  state: FileState
  /** When the first 2xx answer named it. */
  seenAt: number
  /** When a delete of it was first sent. */
  deleteSentAt?: number
}

/** A violation seen in the answers themselves, beyond one request's classification. */
export interface Finding {
  cls: string
  at: number
  detail: string
}

export class Ledger {
  readonly outcomes: Outcome[] = []
  readonly findings: Finding[] = []
  readonly files = new Map<string, KnownFile>()
  readonly contents: Content[] = []

  /** Files the soak believes live, of one tenant (and provider when given). */
  live(tenant: string, provider?: string): KnownFile[] {
    const out: KnownFile[] = []
    for (const f of this.files.values()) {
      if (f.state === 'live' && f.tenant === tenant && (provider === undefined || f.provider === provider)) out.push(f)
    }
    return out
  }

  /** Notes a file a 2xx answer named (an upload, a dedup hit, a copy). */
  noteFile(id: string, tenant: string, provider: string, content: Content, state: FileState, at: number): KnownFile {
    // A dedup hit names a file known already; its state stays what the deletes made it.
    const known = this.files.get(id)
    if (known) return known
    const file: KnownFile = { id, tenant, provider, content, state, seenAt: at }
    this.files.set(id, file)
    return file
  }

  record(outcome: Outcome): void {
    this.outcomes.push(outcome)
  }
}
