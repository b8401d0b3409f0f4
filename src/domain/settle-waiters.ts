/**
 * Waiting for another upload of the same content to settle. A waiter in this process is woken
 * at once when the uploader finishes here; one on another replica polls the row (the database
 * is the only thing replicas share).
 */
export class SettleWaiters {
  private readonly waiting = new Map<string, Set<() => void>>()

  /** Resolves on notify(id) or after `ms`, whichever comes first. */
  wait(id: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const set = this.waiting.get(id) ?? new Set()
      this.waiting.set(id, set)
      const done = () => {
        clearTimeout(timer)
        set.delete(done)
        if (set.size === 0) this.waiting.delete(id)
        resolve()
      }
      const timer = setTimeout(done, ms)
      set.add(done)
    })
  }

  notify(id: string): void {
    for (const done of [...(this.waiting.get(id) ?? [])]) done()
  }
}
