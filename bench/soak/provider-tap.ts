/**
 * An HTTP tap between the replicas and a fake provider: it forwards every request as it comes
 * and notes what the service was told. The fake records the deletes it carried out, not whether
 * the answer reached the caller; the tap does, so a second DELETE of a file whose 200 was
 * delivered is a file deleted twice, while one after a timed-out answer is a retry.
 */
import { Agent, createServer, type IncomingMessage, request, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export interface DeleteExchange {
  id: string
  at: number
  status: number | undefined
  /** The whole answer was written to the service's connection. */
  delivered: boolean
}

export interface UploadExchange {
  /** The id the fake's answer named. */
  id: string
  at: number
  delivered: boolean
}

export interface ProviderTap {
  /** The base URL to give the service (the fake's, through the tap). */
  baseUrl: string
  readonly deletes: DeleteExchange[]
  /** Upload answers by provider file id: when the service was told, and whether it heard. */
  readonly uploads: Map<string, UploadExchange>
  /** Answers the fake gave, by status, since the start. */
  statusCount(status: number): number
  close(): Promise<void>
}

export async function startProviderTap(fakeBaseUrl: string): Promise<ProviderTap> {
  const target = new URL(fakeBaseUrl)
  const agent = new Agent({ keepAlive: true, maxSockets: 256 })
  const deletes: DeleteExchange[] = []
  const uploads = new Map<string, UploadExchange>()
  const statuses = new Map<number, number>()
  const sockets = new Set<Socket>()

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const deleteId =
      req.method === 'DELETE' ? decodeURIComponent(/\/files\/([^/?]+)$/.exec(req.url ?? '')?.[1] ?? '') : undefined
    const exchange: DeleteExchange | undefined = deleteId
      ? { id: deleteId, at: Date.now(), status: undefined, delivered: false }
      : undefined
    if (exchange) deletes.push(exchange)
    const isUpload = req.method === 'POST' && /\/files\/?$/.test(req.url ?? '')
    let upload: UploadExchange | undefined
    const upstream = request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        const status = answer.statusCode ?? 0
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
        if (exchange) exchange.status = status
        res.writeHead(status, answer.headers)
        if (isUpload && status === 200) {
          const chunks: Buffer[] = []
          answer.on('data', (c: Buffer) => chunks.push(c))
          answer.once('end', () => {
            const id = parseId(Buffer.concat(chunks))
            if (id) {
              upload = { id, at: Date.now(), delivered: res.writableFinished }
              uploads.set(id, upload)
            }
          })
        }
        answer.pipe(res)
      },
    )
    upstream.on('error', () => res.destroy())
    res.once('finish', () => {
      if (exchange) exchange.delivered = true
      if (upload) upload.delivered = true
    })
    // The service gave up (its timeout): the fake sees the connection go, as it would directly.
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy()
    })
    req.pipe(upstream)
  }

  const server = createServer(handle)
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    baseUrl: `http://127.0.0.1:${port}${target.pathname.replace(/\/$/, '')}`,
    deletes,
    uploads,
    statusCount: (status) => statuses.get(status) ?? 0,
    async close() {
      for (const socket of sockets) socket.destroy()
      agent.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

function parseId(body: Buffer): string | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { id?: unknown }
    return typeof parsed.id === 'string' ? parsed.id : undefined
  } catch {
    return undefined
  }
}
