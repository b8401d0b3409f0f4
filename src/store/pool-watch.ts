/**
 * What the postgres driver's pool does not show: how long each connection took to establish
 * (filegate_db_connect_duration_seconds) and how many calls wait for a connection
 * (filegate_db_pool_waiting). Both through the driver's documented options: `socket` (the
 * connection's socket is ours: opened here, timed from its connect until the server's first
 * ReadyForQuery) and `debug` (called as a query is handed to a connection that is ready for it).
 * Protocol: https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 */
import { Socket } from 'node:net'
import type { Metrics } from '../metrics.js'

export type PoolMetrics = Pick<Metrics, 'dbConnectDuration' | 'dbPoolWaiting'>

/** The connection options the driver hands its `socket` factory (one host is tried after another). */
interface DriverOptions {
  host: string[]
  port: number[]
  path?: string | false
  ssl?: unknown
}

/** ReadyForQuery's type byte: the end of the start-up (authenticated, parameters sent). */
const readyForQuery = 0x5a

/**
 * A connection's socket that reports its close as a plain one, never "closed by an error". The
 * driver (postgres 3.4.9, connection.js `closed`) rejects the queries a connection still holds only
 * on a close without error, counting on its 'error' handler to have rejected them; but a socket
 * whose write failed (ECONNRESET) emits 'error' and 'close' apart, and a query the pool hands the
 * connection in between is queued on it and then never settles: the call hangs for good, and the
 * connection, reopened, starts with that query as its first reply's owner. Reported as a plain
 * close, every query still on it is rejected (CONNECTION_CLOSED: 503 DATABASE_UNAVAILABLE).
 */
class PoolSocket extends Socket {
  /**
   * Whether the driver wrote anything on it (its start-up message, first). A connection that
   * connected and closed without a byte written was stuck: the driver batches small writes behind a
   * setImmediate and, when a connection closes with a write batched, cancels that timer without
   * forgetting it; that connection never writes again (not even its start-up message), so each of
   * its connects ends in CONNECT_TIMEOUT, for good (postgres 3.4.9, connection.js `closed` and
   * `write`; reported upstream, LanternOps/breeze#3225).
   */
  wrote = false

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    return event === 'close' ? super.emit('close', false) : super.emit(event, ...args)
  }

  override write(chunk: string | Uint8Array, ...rest: never[]): boolean {
    this.wrote = true
    return (super.write as (chunk: string | Uint8Array, ...rest: never[]) => boolean)(chunk, ...rest)
  }
}

/**
 * The driver's socket factory: a PoolSocket connecting to the host's turn (the driver tries the
 * hosts of DATABASE_URL one after another), and, with `metrics`, each connection's establishment
 * timed. A stuck connection's first timed-out connect calls `onStuck` (the pool is to be replaced).
 * The driver starts its connect_timeout as the factory returns, and treats the socket as it treats
 * its own (errors, close), with TLS negotiated over it when configured.
 */
export function poolSockets(metrics?: PoolMetrics, onStuck?: () => void) {
  let next = 0
  return (options: DriverOptions): Socket => {
    const index = next++ % options.host.length
    const host = options.host[index] as string
    const socket = new PoolSocket()
    if (options.path) socket.connect(options.path)
    else socket.connect(options.port[index] ?? 5432, host)
    let connected = false
    socket.once('connect', () => {
      connected = true
    })
    socket.once('close', () => {
      if (connected && !socket.wrote) onStuck?.()
    })
    if (metrics) timeConnect(socket, metrics, Boolean(options.ssl))
    // The driver's TLS upgrade names the server by this (SNI), as for a socket of its own.
    Object.assign(socket, { host, port: options.port[index] })
    return socket
  }
}

/** Observes the connection's establishment: until the first ReadyForQuery (`connected`), or its close before (`failed`). */
function timeConnect(socket: Socket, metrics: PoolMetrics, ssl: boolean): void {
  const started = performance.now()
  let settled = false
  const observe = (outcome: 'connected' | 'failed') => {
    if (settled) return
    settled = true
    metrics.dbConnectDuration.observe({ outcome }, (performance.now() - started) / 1000)
  }
  socket.once('close', () => observe('failed'))
  // Over TLS the start-up is encrypted past this socket: the TCP connect is what is timed then.
  if (ssl) socket.once('connect', () => observe('connected'))
  else watchStartUp(socket, () => observe('connected'))
}

/** Calls `ready` at the server's first ReadyForQuery on `socket`, reading its messages (type byte, 4-byte length) until then. */
function watchStartUp(socket: Socket, ready: () => void): void {
  let pending: Buffer = Buffer.alloc(0)
  const onData = (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk
    while (pending.length >= 5) {
      const type = pending[0]
      const length = pending.readUInt32BE(1)
      if (type === readyForQuery) {
        socket.off('data', onData)
        ready()
        return
      }
      if (pending.length < length + 1) return
      pending = pending.subarray(length + 1)
    }
  }
  socket.on('data', onData)
}

/**
 * Counts the calls waiting for a connection: `enter` as a call is issued, its record dropped when
 * the driver hands a query of that text to a connection (`debug`), or when the call settles (one
 * that failed before any connection took it). Calls of one text are matched first in, first out:
 * the count is exact, whichever of them a connection took.
 */
export class WaitingCalls {
  readonly #byText = new Map<string, Array<{ waiting: boolean }>>()

  constructor(private readonly gauge: PoolMetrics['dbPoolWaiting']) {}

  /** A call of `text` issued; `done` once it settled. */
  enter(text: string): { done(): void } {
    const record = { waiting: true }
    const queue = this.#byText.get(text)
    if (queue) queue.push(record)
    else this.#byText.set(text, [record])
    this.gauge.inc()
    return { done: () => this.#leave(text, record) }
  }

  /** The driver's `debug` hook: a query of `text` was handed to a connection. */
  readonly handed = (_connection: number, text: string): void => {
    const first = this.#byText.get(text)?.[0]
    if (first) this.#leave(text, first)
  }

  #leave(text: string, record: { waiting: boolean }): void {
    if (!record.waiting) return
    record.waiting = false
    const queue = this.#byText.get(text)
    if (!queue) return
    queue.splice(queue.indexOf(record), 1)
    if (queue.length === 0) this.#byText.delete(text)
    this.gauge.dec()
  }
}
