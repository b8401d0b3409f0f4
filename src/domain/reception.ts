/**
 * How an upload body is taken, once the form's parser has found the file part: streamed straight
 * to the provider (X-Content-SHA256 declared, one provider named, a Content-Length that bounds
 * the reservation) or spooled to a temp file under the provider's limit, then uploaded with the
 * fields that came after the file part too. The parser only parses; these choices are made here.
 * With originals kept, a body that spills to disk is staged in the originals store as it streams
 * (a tee beside the spool file); one held in memory is staged from memory once a claim needs it.
 */
import type { Readable } from 'node:stream'
import type { Config } from '../config.js'
import { AppError, errors } from '../errors.js'
import type { StagedOriginal } from '../originals/index.js'
import { inSpan } from '../spans.js'
import { type OriginalSource, type StagingDeps, StagingTee } from './original-writes.js'
import { MirrorClosedError, removeSpool, type SpooledFile, spoolToFile } from './spool.js'
import type { PlanRequest, UploadPlan } from './upload-plan.js'
import type { FileMeta, UploadResult, Uploads } from './uploads.js'

/** The form as far as it was read: the fields the upload needs, and the file's metadata. */
export interface UploadForm {
  provider: string | undefined
  purpose: string | undefined
  filename: string
  /** The file's metadata from the fields read so far (throws a form field's validation error). */
  meta(): FileMeta
}

/** The bytes of a resumable upload, as its staging area yields them, and what the client declared of them. */
export interface StagedBody {
  /** The segments in order, as one stream (read once). */
  stream: Readable
  /** The declared size, which the segments add up to. */
  bytes: number
  /** Declared before the bytes (tus metadata `sha256`): a live duplicate answers unread; checked once read. */
  sha256?: string | undefined
  /** OpenAI's `md5` on complete: checked once read, before any provider hears of the upload. */
  md5?: string | undefined
  /**
   * The original, assembled by the originals store from the staged segments themselves: kept as is
   * (committed once the read hashed them), the stream not staged again. Undefined: staged as it is read.
   */
  original?: StagedOriginal | undefined
}

/** What the request says about its body before the form is read. */
export interface UploadRequest {
  tenant: string
  /** X-Content-SHA256, lower case. */
  declaredSha256: string | undefined
  /** Content-Length; undefined for a chunked body. */
  contentLength: number | undefined
  /** The providers the caller may upload to; null or absent = every provider. */
  providers?: readonly string[] | null | undefined
  /** The body's original, staged already from where the body comes from (see StagedBody.original). */
  original?: StagedOriginal | undefined
}

export type Planner = (request: PlanRequest) => UploadPlan

export class UploadReception {
  private spool: SpooledFile | undefined
  private result: UploadResult | undefined
  /** The body's staging in the originals store, opened when it spilled to disk. */
  private tee: StagingTee | undefined

  constructor(
    private readonly uploads: Uploads,
    private readonly plan: Planner,
    private readonly config: Pick<Config, 'providers' | 'uploadTmpDir' | 'defaultProvider'>,
    private readonly request: UploadRequest,
    /** The originals store and its write counter; undefined = originals are not kept. */
    private readonly originals?: StagingDeps | undefined,
  ) {}

  /** Until the provider is known, the largest limit of any provider bounds the stream. */
  get largestFileBytes(): number {
    return Math.max(...this.config.providers.map((p) => p.maxFileBytes))
  }

  /**
   * The file part has begun: streams it through, or spools it under the named provider's limit
   * (the largest limit while the provider is not named yet). The stream is consumed, or left for
   * the caller to discard when a duplicate answered without it.
   */
  async takeFile(form: UploadForm, stream: Readable): Promise<void> {
    const { declaredSha256, contentLength, tenant } = this.request
    const plan =
      form.provider !== undefined
        ? this.plan({
            provider: form.provider,
            purpose: form.purpose,
            filename: form.filename,
            allowed: this.request.providers,
          })
        : undefined
    // Streamed straight through only with a Content-Length, which bounds what is reserved on the
    // provider account while it streams; a chunked body is received first, and counted exactly.
    if (plan && declaredSha256 && !plan.auto && contentLength !== undefined) {
      const body = { stream, declaredSha256, declaredBytes: contentLength }
      this.result = await this.uploads.uploadStreamThrough(tenant, plan, form.meta(), body)
      return
    }
    const maxBytes = plan?.maxBytes ?? this.largestFileBytes
    const limitOwner = plan?.candidates.find((c) => c.maxBytes === maxBytes)?.config.name ?? 'any provider'
    const { originals } = this
    const mirror =
      originals && !this.request.original
        ? () => {
            this.tee = new StagingTee(originals, tenant)
            return this.tee.sink
          }
        : undefined
    try {
      this.spool = await inSpan(
        'filegate.upload.receive',
        {},
        () =>
          spoolToFile(stream, {
            dir: this.config.uploadTmpDir,
            maxBytes,
            onLimit: () => errors.fileTooLarge(limitOwner, maxBytes),
            ...(mirror ? { mirror } : {}),
          }),
        (received) => ({ 'filegate.bytes': received.bytes }),
      )
    } catch (err) {
      // The originals store stopped taking the staged body: that is the answer (503), not the spool's.
      if (err instanceof MirrorClosedError) throw (await this.tee?.storeFailure()) ?? errors.originalsUnavailable(err)
      throw err
    }
  }

  /** The body is in: the streamed answer, or the spooled file checked and uploaded. */
  async finish(form: UploadForm): Promise<UploadResult> {
    if (this.result) return this.result
    const stored = this.spool as SpooledFile
    const { declaredSha256, tenant } = this.request
    if (declaredSha256 && stored.sha256 !== declaredSha256) {
      throw new AppError('CHECKSUM_MISMATCH', {
        detail: "The content does not match its declared sha256 (X-Content-SHA256, or the upload's sha256)",
        extensions: { declared: declaredSha256, actual: stored.sha256 },
      })
    }
    const plan = this.plan({
      provider: form.provider ?? this.config.defaultProvider,
      purpose: form.purpose,
      filename: form.filename,
      allowed: this.request.providers,
    })
    return this.uploads.uploadSpooled(tenant, plan, form.meta(), stored, await this.original())
  }

  /** The staged original of a body that spilled (throws 503 when the store failed it); undefined otherwise. */
  private async original(): Promise<OriginalSource | undefined> {
    if (this.request.original) return { kind: 'staged', staged: this.request.original }
    if (!this.tee) return undefined
    return { kind: 'staged', staged: await this.tee.stagedOriginal() }
  }

  /** Removes the spool file and an original staged and not kept, whatever happened. */
  async dispose(): Promise<void> {
    await Promise.all([removeSpool(this.spool), this.tee?.discard(), this.request.original?.discard()])
  }
}
