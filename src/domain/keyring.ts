/**
 * Keys kept in the database, as authentication sees them. A key is `fg_<id>_<secret>`: looked up
 * by its public id, then the SHA-256 of the whole key is compared in constant time with the stored
 * digest (and, during a rotation's grace, with the previous one).
 *
 * Lookups are cached in this process, so a known key costs no database round trip (a cache hit is
 * answered synchronously). The cache stays true through announcements: every change to a key is
 * announced on `filegate_keys` when it commits (Postgres LISTEN/NOTIFY, in-process on PGlite), and
 * the key is dropped from every replica's cache at once. While announcements are not heard (the
 * Supabase transport has none; a listening connection that broke), an entry is trusted only for
 * `unannouncedTtlMs`; when listening starts again the whole cache is dropped, since whatever was
 * announced in between is lost. Expiry and the end of a rotation's grace are checked at each use.
 *
 * Open mode (no credentials configured) lasts until the first key is created: a key's creation is
 * announced too, and without announcements the table is asked every second while open mode lasts.
 *
 * last_used_at is written off the request path: used keys are collected and written in one
 * statement every few seconds, each at most once a minute (the SQL checks the minute too, so
 * replicas together write it at most once a minute).
 */
import { hash, randomInt, timingSafeEqual } from 'node:crypto'
import type { StorePort } from '../store/port.js'
import { apiKeysExist, findApiKeyForAuth, type KeyAuthRow, touchApiKeys } from '../store/queries.js'

export type { KeyAuthRow } from '../store/queries.js'

/** The channel key changes are announced on (migrations/0008_access.sql). */
export const keysChannel = 'filegate_keys'

const idAlphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'
const secretAlphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
const idLength = 16
/** 43 base-62 characters: 256 random bits. */
const secretLength = 43
const keyPattern = /^fg_([a-z0-9]{16})_[A-Za-z0-9]{43}$/

const randomText = (alphabet: string, length: number) =>
  Array.from({ length }, () => alphabet[randomInt(alphabet.length)]).join('')

/** A new key: its public id and the whole key, shown once. */
export function newKey(id = randomText(idAlphabet, idLength)): { id: string; key: string } {
  return { id, key: `fg_${id}_${randomText(secretAlphabet, secretLength)}` }
}

/** The id of a token shaped like a database key, or undefined. */
export const keyIdOf = (token: string): string | undefined => keyPattern.exec(token)?.[1]

export const keyDigest = (key: string): string => hash('sha256', key, 'hex')

/** The last four characters of a key: enough to tell keys apart in a list, nothing to guess from. */
export const keyHint = (key: string): string => key.slice(-4)

export type KeyVerdict = { ok: true; key: KeyAuthRow } | { ok: false; reason: 'invalid' | 'expired' | 'revoked' }

export interface KeyringOptions {
  store: StorePort
  /** How long a lookup is trusted while changes are not announced. */
  unannouncedTtlMs: number
  /** How long a lookup is trusted at most even while they are (a missed announcement's bound). */
  maxAgeMs?: number
  /** How often used keys' last_used_at is written. */
  touchEveryMs?: number
  maxEntries?: number
}

/** A looked-up key as the checks need it: decoded once, when it is cached, not on every use. */
interface KnownKey {
  digest: Buffer
  previous: Buffer | null
  previousUntil: number
  expiresAt: number
  revoked: boolean
  accepted: KeyVerdict
}

interface Entry {
  known: KnownKey | null
  at: number
}

function knownKey(row: KeyAuthRow | null): KnownKey | null {
  if (!row) return null
  return {
    digest: Buffer.from(row.key_sha256, 'hex'),
    previous: row.previous_sha256 === null ? null : Buffer.from(row.previous_sha256, 'hex'),
    previousUntil: row.previous_until === null ? Number.NEGATIVE_INFINITY : Date.parse(row.previous_until),
    expiresAt: row.expires_at === null ? Number.POSITIVE_INFINITY : Date.parse(row.expires_at),
    revoked: row.revoked_at !== null,
    accepted: { ok: true, key: row },
  }
}

const touchIntervalMs = 60_000

const refusals = {
  invalid: { ok: false, reason: 'invalid' },
  expired: { ok: false, reason: 'expired' },
  revoked: { ok: false, reason: 'revoked' },
} as const satisfies Record<string, KeyVerdict>

export class Keyring {
  readonly #store: StorePort
  readonly #unannouncedTtlMs: number
  readonly #maxAgeMs: number
  readonly #maxEntries: number
  readonly #entries = new Map<string, Entry>()
  readonly #inFlight = new Map<string, Promise<KnownKey | null>>()
  /** Bumped by every invalidation: a lookup that began before one is not cached. */
  #generation = 0
  #announced = false
  /** Whether a key was ever created; undefined until the table was asked. */
  #keysExist: boolean | undefined
  #keysExistCheck: Promise<boolean> | undefined
  readonly #lastTouched = new Map<string, number>()
  readonly #toTouch = new Set<string>()
  readonly #touchTimer: NodeJS.Timeout
  #touching: Promise<void> | undefined

  constructor(options: KeyringOptions) {
    this.#store = options.store
    this.#unannouncedTtlMs = options.unannouncedTtlMs
    this.#maxAgeMs = options.maxAgeMs ?? 60_000
    this.#maxEntries = options.maxEntries ?? 10_000
    this.#touchTimer = setInterval(() => void this.flushLastUsed(), options.touchEveryMs ?? 5_000)
    this.#touchTimer.unref()
  }

  /**
   * The verdict on a token shaped like a database key: synchronous when its lookup is cached, else a
   * promise (one database call, shared by concurrent requests for the same id).
   */
  verify(token: string, id: string, now = Date.now()): KeyVerdict | Promise<KeyVerdict> {
    const cached = this.#cached(id, now)
    if (cached !== undefined) return this.#judge(token, cached, now)
    return this.#lookup(id).then((known) => this.#judge(token, known, Date.now()))
  }

  #cached(id: string, now: number): KnownKey | null | undefined {
    const entry = this.#entries.get(id)
    if (!entry) return undefined
    const ttl = this.#announced ? this.#maxAgeMs : this.#unannouncedTtlMs
    if (now - entry.at < ttl) return entry.known
    this.#entries.delete(id)
    return undefined
  }

  #lookup(id: string): Promise<KnownKey | null> {
    const pending = this.#inFlight.get(id)
    if (pending) return pending
    const generation = this.#generation
    const lookup = findApiKeyForAuth(this.#store, id)
      .then((row) => {
        const known = knownKey(row)
        if (generation === this.#generation) this.#remember(id, known)
        if (row?.last_used_at && !this.#lastTouched.has(id)) this.#lastTouched.set(id, Date.parse(row.last_used_at))
        return known
      })
      .finally(() => this.#inFlight.delete(id))
    this.#inFlight.set(id, lookup)
    return lookup
  }

  #remember(id: string, known: KnownKey | null): void {
    if (this.#entries.size >= this.#maxEntries) {
      // The oldest lookups go first (a Map iterates in insertion order).
      const oldest = this.#entries.keys().next().value
      if (oldest !== undefined) this.#entries.delete(oldest)
    }
    this.#entries.set(id, { known, at: Date.now() })
  }

  /** The secret first (a wrong one learns nothing of the key's state), then revocation and expiry. */
  #judge(token: string, known: KnownKey | null, now: number): KeyVerdict {
    if (!known) return refusals.invalid
    const digest = hash('sha256', token, 'buffer')
    const current = timingSafeEqual(digest, known.digest)
    const previous = known.previous !== null && known.previousUntil > now && timingSafeEqual(digest, known.previous)
    if (!current && !previous) return refusals.invalid
    if (known.revoked) return refusals.revoked
    if (known.expiresAt <= now) return refusals.expired
    if (known.accepted.ok) this.#used(known.accepted.key.id, now)
    return known.accepted
  }

  #used(id: string, now: number): void {
    if (now - (this.#lastTouched.get(id) ?? Number.NEGATIVE_INFINITY) < touchIntervalMs) return
    this.#lastTouched.set(id, now)
    this.#toTouch.add(id)
  }

  /** Writes the last_used_at of the keys used since the last write (in the background; also on close). */
  flushLastUsed(): Promise<void> {
    if (this.#touching || this.#toTouch.size === 0) return this.#touching ?? Promise.resolve()
    const ids = [...this.#toTouch]
    this.#toTouch.clear()
    this.#touching = touchApiKeys(this.#store, ids)
      .then(() => undefined)
      // Not written now (the database is away): the next round tries again.
      .catch(() => {
        for (const id of ids) this.#toTouch.add(id)
      })
      .finally(() => {
        this.#touching = undefined
      })
    return this.#touching
  }

  // ---- what is announced ----

  /** A change to one key was announced (`<event>:<id>`): its lookup is dropped. */
  announced(payload: string): void {
    const [event, id] = payload.split(':', 2)
    if (id === undefined) return
    this.#generation++
    this.#entries.delete(id)
    if (event === 'create') this.#keysExist = true
  }

  /** Announcements are heard (again): what was cached before may have missed some. */
  listening(): void {
    this.#generation++
    this.#entries.clear()
    this.#announced = true
    if (this.#keysExist === false) void this.checkKeysExist().catch(() => {})
  }

  /** Announcements are not heard: cached lookups are trusted only for unannouncedTtlMs. */
  notListening(): void {
    this.#announced = false
  }

  get announcing(): boolean {
    return this.#announced
  }

  // ---- open mode ----

  /**
   * Whether a key was ever created, as far as this process knows: asked of the database the first
   * time, then kept (it never turns false again) and set by the announcement of a creation. While
   * creations are not announced, a "no" is asked again after a second.
   */
  keysExist(): boolean | Promise<boolean> {
    if (this.#keysExist === true) return true
    if (this.#keysExist === false && this.#announced) return false
    return this.checkKeysExist()
  }

  /** Asks the database, one question at a time. */
  checkKeysExist(): Promise<boolean> {
    this.#keysExistCheck ??= apiKeysExist(this.#store)
      .then((exist) => {
        if (exist) this.#keysExist = true
        else if (this.#keysExist === undefined) this.#keysExist = false
        return this.#keysExist === true
      })
      .finally(() => {
        // Without announcements a "no" is asked again after a second (open mode ends within one).
        const forget = setTimeout(
          () => {
            this.#keysExistCheck = undefined
          },
          this.#announced ? 0 : 1_000,
        )
        forget.unref()
      })
    return this.#keysExistCheck
  }

  async close(): Promise<void> {
    clearInterval(this.#touchTimer)
    await this.flushLastUsed()
  }
}
