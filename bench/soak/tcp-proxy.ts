/**
 * A TCP proxy the soak can cut, in front of Postgres and of the originals store: `pass` forwards
 * bytes both ways; `refuse` closes the listener (a connect is refused, ECONNREFUSED) and resets
 * every open connection; `hang` accepts connections but forwards nothing, and stops reading on
 * open ones (a network that drops packets, or a store that stopped answering). Back to `pass`,
 * held connections go on where they stopped.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'

export type ProxyMode = 'pass' | 'refuse' | 'hang'

interface Link {
  client: Socket
  upstream: Socket | undefined
}

export interface CuttableProxy {
  port: number
  mode(): ProxyMode
  set(mode: ProxyMode): Promise<void>
  /** Connections accepted so far. */
  accepted(): number
  close(): Promise<void>
}

/** Forwards `from` to `to` by hand (pipe() would resume a socket the proxy holds). */
function forward(from: Socket, to: Socket, held: () => boolean): void {
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause()
  })
  to.on('drain', () => {
    if (!held()) from.resume()
  })
  from.once('end', () => to.end())
}

export async function startCuttableProxy(targetHost: string, targetPort: number): Promise<CuttableProxy> {
  let current: ProxyMode = 'pass'
  let accepted = 0
  const links = new Set<Link>()
  const held = () => current === 'hang'

  const join = (link: Link) => {
    const upstream = connect(targetPort, targetHost)
    link.upstream = upstream
    upstream.on('error', () => link.client.destroy())
    upstream.once('close', () => link.client.destroy())
    forward(link.client, upstream, held)
    forward(upstream, link.client, held)
    link.client.resume()
  }

  const onConnection = (client: Socket) => {
    accepted++
    const link: Link = { client, upstream: undefined }
    links.add(link)
    client.pause()
    client.on('error', () => {})
    client.once('close', () => {
      links.delete(link)
      link.upstream?.destroy()
    })
    if (current === 'pass') join(link)
  }

  let server: Server = createServer(onConnection)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server = createServer(onConnection)
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => resolve())
    })
  const stopListening = () => new Promise<void>((resolve) => server.close(() => resolve()))

  return {
    port,
    mode: () => current,
    accepted: () => accepted,
    async set(mode) {
      if (mode === current) return
      const was = current
      current = mode
      if (was === 'refuse') await listen()
      if (mode === 'refuse') {
        const closing = stopListening()
        for (const link of links) {
          link.client.resetAndDestroy()
          link.upstream?.destroy()
        }
        await closing
      } else if (mode === 'hang') {
        for (const link of links) {
          link.client.pause()
          link.upstream?.pause()
        }
      } else {
        for (const link of links) {
          if (!link.upstream) join(link)
          else {
            link.client.resume()
            link.upstream.resume()
          }
        }
      }
    },
    async close() {
      for (const link of links) {
        link.client.destroy()
        link.upstream?.destroy()
      }
      if (current !== 'refuse') await stopListening()
    },
  }
}
