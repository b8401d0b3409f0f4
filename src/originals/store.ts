/**
 * The originals store: each tenant's file bytes kept once per content, under `<tenant>/<sha256>`, in
 * a local directory or an S3-compatible bucket. Provider copies can then be remade from it.
 *
 * Writes are staged: a body streams into a staging object while it is counted, and only `commit`
 * makes it visible under its content address. The content's SHA-256 is computed once, by the writer
 * that hands the store its bytes (an upload hashes its body anyway, the very chunks it stages): the
 * store checks the count, not the hash again. Reads verify the hash as they stream and withhold the
 * last chunk until it matched, so an object that does not hash to its key (a writer's mistake, the
 * disk, the bucket) is never delivered whole to a client or a provider.
 */
import type { Readable } from 'node:stream'
import type { SegmentObjects } from '../staging/segments.js'
import { tenantIdPattern } from '../tenant.js'

export interface OriginalKey {
  tenant: string
  sha256: string
}

/** What the writer knows of the content it staged: its hash (computed as it passed) and its size. */
export interface StagedContent {
  sha256: string
  bytes: number
}

export interface StagedOriginal {
  /** The bytes the store took. */
  readonly bytes: number
  /**
   * Moves the staged bytes to `<tenant>/<content.sha256>`. Refuses (and discards) when the store took
   * another number of bytes than `content.bytes`, or the hash is not the one declared to `stage`.
   * `existing` when the content was already stored: the staged copy is dropped, so N concurrent
   * writers of one content leave one object.
   */
  commit(content: StagedContent): Promise<'created' | 'existing'>
  discard(): Promise<void>
}

/** A resumable upload's segment, as the staging area read it (see OriginalsStore.assemble). */
export interface SegmentSource {
  /** Its key among the segment objects: `<upload id>/<segment id>`. */
  key: string
  bytes: number
  /** The version the read found (S3: the ETag); undefined until the segment has been read. */
  version(): string | undefined
}

export interface StoredObject extends OriginalKey {
  bytes: number
  modifiedAt: Date
}

export interface StagingObject {
  id: string
  bytes: number
  modifiedAt: Date
}

export interface OriginalsStore {
  readonly kind: 'file' | 's3'
  /**
   * Streams `body` into a staging object of `tenant`, counting it (the caller hashes it). `declared`:
   * the hash the content should have, known before the body (X-Content-SHA256): a store may then
   * write it straight under its content address, still invisible until `commit`, which refuses any
   * other hash.
   */
  stage(
    tenant: string,
    body: Readable | AsyncIterable<Uint8Array>,
    declared?: { sha256: string },
  ): Promise<StagedOriginal>
  /** The object's size, or null when it is not stored. */
  stat(key: OriginalKey): Promise<number | null>
  /** The object's bytes, verified against its key as they stream (see `verifyingStream`). */
  read(key: OriginalKey): Promise<{ bytes: number; stream: Readable }>
  /** Removes the object; removing one that is gone is not an error. */
  remove(key: OriginalKey): Promise<void>
  /** Every stored object, for the originals job's bookkeeping. */
  list(): AsyncIterable<StoredObject>
  /** Staging objects (a crash between write and commit leaves them), removed after a grace. */
  listStaging(): AsyncIterable<StagingObject>
  removeStaging(id: string): Promise<void>
  /**
   * The pieces of resumable uploads while they arrive (`.resumable/<upload>/<segment>`), so that an
   * upload begun on one replica continues on another.
   */
  readonly segments: SegmentObjects
  /**
   * The original of a finished resumable upload, assembled in the store from its segments, in order,
   * without their bytes passing through filegate again. Nothing is written before `commit`, which
   * the writer calls once it has read and hashed those very segments (each taken at the version it
   * read); the content address is then written whole, or not at all. Undefined where the store
   * cannot: a directory (docs/originals.md says why), or S3 when a segment other than the last is
   * under 5 MiB (S3's smallest part) or the store does not copy parts.
   */
  assemble(tenant: string, segments: ReadonlyArray<SegmentSource>): StagedOriginal | undefined
  /** A cheap round trip that proves the store answers (readiness). */
  ping(): Promise<void>
  close(): Promise<void>
}

export class OriginalCorruptError extends Error {
  readonly code = 'ORIGINAL_CORRUPT'
  constructor(
    readonly key: OriginalKey,
    readonly actualSha256: string,
  ) {
    super(`original ${key.tenant}/${key.sha256} is corrupt: its bytes hash to ${actualSha256}`)
    this.name = 'OriginalCorruptError'
  }
}

export class OriginalMissingError extends Error {
  readonly code = 'ORIGINAL_MISSING'
  constructor(readonly key: OriginalKey) {
    super(`original ${key.tenant}/${key.sha256} is not stored`)
    this.name = 'OriginalMissingError'
  }
}

// Tenant ids (src/tenant.ts: no `/`, never `.` or `..`) are checked again here because they become
// path segments and object keys.
const tenantPattern = tenantIdPattern
const sha256Pattern = /^[0-9a-f]{64}$/

/** Throws unless both parts of the key are safe to use as path segments. */
export function checkKey(key: OriginalKey): OriginalKey {
  if (!tenantPattern.test(key.tenant)) throw new TypeError(`invalid tenant for an original: ${key.tenant}`)
  if (!sha256Pattern.test(key.sha256)) throw new TypeError('invalid sha256 for an original')
  return key
}

export function checkTenant(tenant: string): string {
  if (!tenantPattern.test(tenant)) throw new TypeError(`invalid tenant for an original: ${tenant}`)
  return tenant
}

/**
 * Why a commit must be refused: the store took another number of bytes than the writer counted, or
 * the content is not the one declared before the body (see `stage`); undefined when it may proceed.
 */
export function stagedContentError(
  staged: number,
  content: StagedContent,
  declared?: { sha256: string },
): Error | undefined {
  if (staged !== content.bytes) return new Error(`the store took ${staged} bytes of a ${content.bytes}-byte original`)
  if (declared && declared.sha256 !== content.sha256) return new Error('the content is not the one declared')
  return undefined
}

export const isContentKey = (tenant: string, sha256: string) => tenantPattern.test(tenant) && sha256Pattern.test(sha256)
