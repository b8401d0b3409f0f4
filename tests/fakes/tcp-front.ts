/**
 * A TCP front on loopback before a real server (s3rver, Postgres) that a test switches between
 * failures of the network, not of the protocol: `refuse` (the port stops listening, so a connect
 * fails with ECONNREFUSED; open connections are reset), `reset` (each connection is forwarded, then
 * reset with a TCP RST once the client sent `afterBytes`: a request cut mid-body), `pause`
 * (connections are accepted and held, nothing is forwarded, until the mode changes: held ones are
 * then reset, as a store that hung and then failed), `delay` (each connection is forwarded only
 * `ms` after it was accepted: a slow handshake), `drop` (the next `requests` times a client sends on
 * any connection, new or kept alive, that connection is reset before anything reaches the server: a
 * store, or a proxy before it, that closed an idle keep-alive connection as the client reused it;
 * then as `pass`), and `pass`.
 */
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'
import type { TestContext } from 'node:test'

export type FrontMode =
  | { kind: 'pass' }
  | { kind: 'refuse' }
  | { kind: 'reset'; afterBytes: number }
  | { kind: 'pause' }
  | { kind: 'delay'; ms: number }
  | { kind: 'drop'; requests: number }

export interface TcpFront {
  readonly port: number
  /** `http://127.0.0.1:<port>` */
  readonly origin: string
  /** Switches the mode; connections held by `pause` and (for `refuse`) every open one are reset. */
  set(mode: FrontMode): Promise<void>
  /** Connections accepted so far, and those held (paused) now. */
  accepted(): number
  held(): number
  /** Connections a `drop` mode reset so far. */
  dropped(): number
  close(): Promise<void>
}

export async function startTcpFront(
  t: Pick<TestContext, 'after'>,
  target: { host: string; port: number },
  initial: FrontMode = { kind: 'pass' },
): Promise<TcpFront> {
  let mode = initial
  let accepted = 0
  /** What is left of a `drop` mode's budget. */
  let drops = initial.kind === 'drop' ? initial.requests : 0
  let dropped = 0
  const open = new Set<Socket>()
  const held = new Set<Socket>()
  const reset = (socket: Socket) => {
    if (!socket.destroyed) socket.resetAndDestroy()
  }

  const forward = (client: Socket, afterBytes?: number) => {
    const upstream = connect(target.port, target.host)
    open.add(upstream)
    upstream.on('close', () => {
      open.delete(upstream)
      client.destroy()
    })
    upstream.on('error', () => reset(client))
    client.on('close', () => upstream.destroy())
    let sent = 0
    client.on('data', (chunk: Buffer) => {
      if (mode.kind === 'drop' && drops > 0) {
        drops--
        dropped++
        reset(client)
        upstream.destroy()
        return
      }
      sent += chunk.length
      if (afterBytes !== undefined && sent > afterBytes) {
        reset(client)
        upstream.destroy()
        return
      }
      upstream.write(chunk)
    })
    upstream.pipe(client)
  }

  const onConnection = (client: Socket) => {
    accepted++
    open.add(client)
    client.on('close', () => {
      open.delete(client)
      held.delete(client)
    })
    client.on('error', () => {})
    const now = mode
    if (now.kind === 'pause') {
      client.pause()
      held.add(client)
    } else if (now.kind === 'delay') {
      client.pause()
      setTimeout(() => {
        if (client.destroyed) return
        forward(client)
        client.resume()
      }, now.ms)
    } else forward(client, now.kind === 'reset' ? now.afterBytes : undefined)
  }

  let server: Server = createServer(onConnection)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  let listening = true

  const stopListening = () =>
    new Promise<void>((resolve) => {
      if (!listening) return resolve()
      listening = false
      server.close(() => resolve())
    })
  const listen = async () => {
    if (listening) return
    server = createServer(onConnection)
    // The same port again: clients keep the endpoint they were given.
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => resolve())
    })
    listening = true
  }

  const front: TcpFront = {
    port,
    origin: `http://127.0.0.1:${port}`,
    async set(next) {
      mode = next
      drops = next.kind === 'drop' ? next.requests : 0
      for (const socket of held) reset(socket)
      held.clear()
      if (next.kind === 'refuse') {
        const closing = stopListening()
        for (const socket of open) reset(socket)
        await closing
      } else await listen()
    },
    accepted: () => accepted,
    held: () => held.size,
    dropped: () => dropped,
    async close() {
      for (const socket of open) socket.destroy()
      await stopListening()
    },
  }
  if (initial.kind === 'refuse') await stopListening()
  t.after(() => front.close())
  return front
}
