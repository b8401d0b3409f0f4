/**
 * The soak's one source of chance: a seeded PRNG (mulberry32), so a run's workload choices and
 * fault schedule replay from `SOAK_SEED`, and the bytes of each content made from the seed and an
 * index (AES-256-CTR keystream: fast, and the same bytes again for a re-upload).
 */
import { createCipheriv, createHash } from 'node:crypto'

export class Rng {
  #state: number

  constructor(seed: number) {
    this.#state = seed >>> 0
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0
    let t = this.#state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1))
  }

  chance(p: number): boolean {
    return this.next() < p
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from nothing')
    return items[Math.floor(this.next() * items.length)] as T
  }

  /** A value between min and max whose logarithm is uniform (most small, some large). */
  logUniform(min: number, max: number): number {
    return Math.round(Math.exp(Math.log(min) + this.next() * (Math.log(max) - Math.log(min))))
  }

  /** A key of `weights` drawn in proportion to its weight. */
  weighted<K extends string>(weights: Record<K, number>): K {
    const entries = Object.entries(weights) as Array<[K, number]>
    let left = this.next() * entries.reduce((sum, [, w]) => sum + w, 0)
    for (const [key, weight] of entries) {
      left -= weight
      if (left < 0) return key
    }
    return (entries.at(-1) as [K, number])[0]
  }

  /** A new generator whose sequence depends on this one's seed and `label` only. */
  fork(label: string): Rng {
    return new Rng(createHash('sha256').update(`${this.#state}:${label}`).digest().readUInt32LE(0))
  }
}

/** The bytes of content `index` of a run: `size` bytes of AES-CTR keystream keyed by the seed. */
export function contentBytes(seed: number, index: number, size: number): Buffer {
  const key = createHash('sha256').update(`soak:${seed}:${index}`).digest()
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16))
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()])
}

export const sha256Hex = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex')
