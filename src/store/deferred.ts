/**
 * The store the app holds from its first moment, before the transport is open: the service listens
 * at once (liveness answers, readiness says "starting") while the database opens and migrates in
 * the background. Until then every call answers DATABASE_UNAVAILABLE (503 with Retry-After).
 */
import { errors } from '../errors.js'
import type { CallArgs, MigrationTarget, StorePort, Transport } from './port.js'

export class DeferredStore implements StorePort {
  private target: StorePort | undefined

  constructor(readonly transport: Transport) {}

  /** Hands the open transport over; calls go straight to it from now on. */
  open(target: StorePort): void {
    this.target = target
  }

  get opened(): boolean {
    return this.target !== undefined
  }

  call<T = unknown>(fn: string, args?: CallArgs): Promise<T> {
    if (!this.target) {
      return Promise.reject(errors.databaseUnavailable('The service is starting: the database is not open yet'))
    }
    return this.target.call<T>(fn, args)
  }

  get migrator(): MigrationTarget | undefined {
    return this.target?.migrator
  }

  get listen(): StorePort['listen'] {
    return this.target?.listen
  }

  async close(): Promise<void> {
    await this.target?.close()
  }
}
