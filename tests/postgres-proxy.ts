/**
 * A TCP proxy in front of the test Postgres, for the faults a database connection meets: held at
 * connect (a server slow to answer), cut and refused (a restart, a failover: connections reset,
 * new ones refused), or cut silent (a partition: nothing answers, nothing is refused), then
 * restored on the same port.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import { adminUrl } from './helper.js'

export type CutMode = 'refuse' | 'silent'

export interface PostgresProxy {
  port: number
  /** `databaseUrl` with its host and port replaced by the proxy's. */
  urlFor(databaseUrl: string): string
  /**
   * `refuse`: every open connection is reset, new ones are refused. `silent`: open connections stop
   * carrying anything either way and new ones are accepted and never answered.
   */
  cut(mode: CutMode): Promise<void>
  /** Connections go through again (those a silent cut held are reset first). */
  restore(): Promise<void>
}

/**
 * Starts the proxy (closed after the test). `heldUntil`: each connection is held, unanswered,
 * until then, and forwarded after.
 */
export async function postgresProxy(
  t: { after(fn: () => Promise<void>): void },
  options: { heldUntil?: number } = {},
): Promise<PostgresProxy> {
  const target = new URL(adminUrl)
  const sockets = new Set<Socket>()
  const pairs = new Set<[Socket, Socket]>()
  let mode: CutMode | undefined
  const track = (socket: Socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.once('close', () => sockets.delete(socket))
  }
  const forward = (client: Socket) => {
    if (client.destroyed || mode === 'silent') return
    const upstream = connect(Number(target.port || 5432), target.hostname)
    track(upstream)
    const pair: [Socket, Socket] = [client, upstream]
    pairs.add(pair)
    upstream.once('close', () => {
      pairs.delete(pair)
      client.destroy()
    })
    client.once('close', () => upstream.destroy())
    client.pipe(upstream).pipe(client)
    client.resume()
  }
  const onConnection = (client: Socket) => {
    track(client)
    client.pause()
    setTimeout(() => forward(client), Math.max(0, (options.heldUntil ?? 0) - Date.now()))
  }
  let server: Server = createServer(onConnection)
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => resolve((server.address() as { port: number }).port))
    })
  const closeListener = () => new Promise<void>((resolve) => server.close(() => resolve()))
  const port = await listen(0)
  t.after(async () => {
    for (const s of sockets) s.destroy()
    if (server.listening) await closeListener()
  })
  return {
    port,
    urlFor(databaseUrl) {
      const url = new URL(databaseUrl)
      url.hostname = '127.0.0.1'
      url.port = String(port)
      return url.toString()
    },
    async cut(how) {
      mode = how
      if (how === 'refuse') {
        const closed = closeListener()
        for (const s of sockets) s.destroy()
        await closed
      } else {
        for (const [client, upstream] of pairs) {
          client.unpipe(upstream)
          upstream.unpipe(client)
          client.pause()
          upstream.pause()
        }
      }
    },
    async restore() {
      const wasRefusing = mode === 'refuse'
      mode = undefined
      // What the silence held is broken for good for its client, which connects again.
      for (const s of sockets) s.destroy()
      if (wasRefusing) {
        server = createServer(onConnection)
        await listen(port)
      }
    },
  }
}
