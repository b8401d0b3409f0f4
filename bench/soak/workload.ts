/**
 * The seeded workload: clients as tenants (three per tenant by default) each sending about
 * four requests a second (at most four outstanding): new uploads of 1 KB–3 MB, re-uploads of a
 * tenant's content, the same new content twice at once, the same bytes from two tenants at once,
 * short-lived uploads, gets, lists, deletes, copies to the other provider, ensures and originals
 * downloads; and an admin running reconcile every 15 s. A tenant keeps at most `workingSet`
 * live files per provider (the fake GLM caps a purpose at 1,000 files, as GLM documents), so a
 * full tenant deletes instead of uploading.
 */
import { bufferedForm } from '../harness/client.js'
import { type Answer, json, outcomeOf, type Router, type SoakClient } from './http.js'
import type { Content, KnownFile, Ledger, Op, Outcome } from './ledger.js'
import { contentBytes, type Rng, sha256Hex } from './rng.js'

export interface Tenant {
  name: string
  key: string
}

export interface WorkloadOptions {
  seed: number
  tenants: Tenant[]
  adminKey: string
  clientsPerTenant: number
  providers: string[]
  /** Mean ms between one client's request starts. */
  paceMs: number
  /** Requests one client has outstanding at most. */
  maxInFlight: number
  workingSet: number
  minBytes: number
  maxBytes: number
}

const WEIGHTS: Record<Exclude<Op, 'reconcile'>, number> = {
  upload: 22,
  'upload-dup': 9,
  'upload-twin': 3,
  'cross-tenant': 3,
  expiring: 2,
  get: 14,
  list: 9,
  delete: 10,
  copy: 5,
  ensure: 6,
  original: 10,
}

interface FileAnswer {
  id?: string
  tenant_id?: string
  provider?: string
  sha256?: string
  bytes?: number
  deduplicated?: boolean
}

export class Workload {
  #stopped = false
  readonly #running: Promise<void>[] = []

  constructor(
    private readonly options: WorkloadOptions,
    private readonly rng: Rng,
    private readonly ledger: Ledger,
    private readonly router: Router,
    private readonly client: SoakClient,
  ) {}

  start(): void {
    const { tenants, clientsPerTenant } = this.options
    for (const tenant of tenants) {
      for (let i = 0; i < clientsPerTenant; i++) {
        this.#running.push(this.#clientLoop(tenant, this.rng.fork(`${tenant.name}/${i}`)))
      }
    }
    this.#running.push(this.#adminLoop())
  }

  async stop(): Promise<void> {
    this.#stopped = true
    await Promise.all(this.#running)
  }

  /**
   * Starts a request every `paceMs` on average (exponential gaps), not waiting for the last answer
   * unless `maxInFlight` are outstanding: a slow answer slows the client down only that far.
   */
  async #clientLoop(tenant: Tenant, rng: Rng): Promise<void> {
    const inFlight = new Set<Promise<void>>()
    await sleep(rng.int(0, this.options.paceMs))
    while (!this.#stopped) {
      if (inFlight.size >= this.options.maxInFlight) {
        await Promise.race(inFlight)
        continue
      }
      const step = this.step(tenant, rng).finally(() => inFlight.delete(step))
      inFlight.add(step)
      await sleep(-Math.log(1 - rng.next()) * this.options.paceMs)
    }
    await Promise.all(inFlight)
  }

  async #adminLoop(): Promise<void> {
    while (!this.#stopped) {
      await sleepUnless(15_000, () => this.#stopped)
      if (this.#stopped) return
      const target = this.router.pick()
      const start = Date.now()
      const answer = await this.client.send(`${target.baseUrl}/v1/cleanup`, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.options.adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ dry_run: false, jobs: ['reconcile'] }),
      })
      this.#record({ op: 'reconcile', tenant: '*', replica: target.name, start, end: Date.now(), ...outcomeOf(answer) })
    }
  }

  /** One request (or two at once) of a kind drawn from the weights. */
  async step(tenant: Tenant, rng: Rng): Promise<void> {
    const provider = rng.pick(this.options.providers)
    const live = this.ledger.live(tenant.name)
    let op: Exclude<Op, 'reconcile'> = rng.weighted(WEIGHTS)
    if (live.length === 0 && !['upload', 'upload-twin', 'cross-tenant', 'expiring', 'list'].includes(op)) op = 'upload'
    if (isUpload(op) && this.ledger.live(tenant.name, provider).length >= this.options.workingSet) op = 'delete'
    switch (op) {
      case 'upload':
        return void (await this.upload('upload', tenant, this.newContent(rng), provider, rng.chance(0.3)))
      case 'expiring':
        return void (await this.upload('expiring', tenant, this.newContent(rng), provider, false, 3))
      case 'upload-dup': {
        const file = rng.pick(live)
        return void (await this.upload('upload-dup', tenant, file.content, file.provider, rng.chance(0.3)))
      }
      case 'upload-twin':
        return this.twins(tenant, this.newContent(rng), provider)
      case 'cross-tenant':
        return this.crossTenant(tenant, rng, provider)
      case 'list':
        return this.list(tenant)
      default:
        return this.onFile(op, tenant, rng.pick(live))
    }
  }

  newContent(rng: Rng): Content {
    const index = this.ledger.contents.length
    const size = rng.logUniform(this.options.minBytes, this.options.maxBytes)
    const content: Content = { index, size, sha256: sha256Hex(contentBytes(this.options.seed, index, size)) }
    this.ledger.contents.push(content)
    return content
  }

  /** POST /v1/files; the answer is checked to name this tenant's file of this content. */
  async upload(
    op: Op,
    tenant: Tenant,
    content: Content,
    provider: string,
    declareHash: boolean,
    expiresIn?: number,
  ): Promise<FileAnswer | undefined> {
    const bytes = contentBytes(this.options.seed, content.index, content.size)
    const fields: Array<[string, string]> = [['provider', provider]]
    if (expiresIn !== undefined) fields.push(['expires_in', String(expiresIn)])
    const form = bufferedForm(fields, bytes, `soak-${content.index}.txt`)
    const target = this.router.pick()
    const start = Date.now()
    const headers: Record<string, string> = { authorization: `Bearer ${tenant.key}`, 'content-type': form.contentType }
    if (declareHash) headers['x-content-sha256'] = content.sha256
    const answer = await this.client.send(`${target.baseUrl}/v1/files`, { method: 'POST', headers, body: form.body })
    const outcome: Outcome = { op, tenant: tenant.name, replica: target.name, start, end: Date.now(), provider }
    const file = this.#fileAnswer(
      answer,
      tenant,
      content,
      provider,
      outcome,
      expiresIn === undefined ? 'live' : 'expiring',
    )
    this.#record({ ...outcome, ...outcomeOf(answer) })
    return file
  }

  #fileAnswer(
    answer: Answer,
    tenant: Tenant,
    content: Content,
    provider: string,
    outcome: Outcome,
    state: KnownFile['state'],
  ): FileAnswer | undefined {
    if (answer.status === undefined || answer.status >= 300) return undefined
    const file = json<FileAnswer>(answer)
    if (!file?.id || file.sha256 !== content.sha256 || file.tenant_id !== tenant.name || file.provider !== provider) {
      outcome.contentProblem = `a 2xx naming ${file?.tenant_id}/${file?.provider}/${file?.sha256?.slice(0, 12)} for ${tenant.name}/${provider}/${content.sha256.slice(0, 12)}`
      return undefined
    }
    outcome.fileId = file.id
    this.ledger.noteFile(file.id, tenant.name, provider, content, state, outcome.end)
    return file
  }

  /** The same new content twice at once, same tenant and provider: one provider upload, one id. */
  async twins(tenant: Tenant, content: Content, provider: string): Promise<void> {
    const [a, b] = await Promise.all([
      this.upload('upload-twin', tenant, content, provider, false),
      this.upload('upload-twin', tenant, content, provider, true),
    ])
    // Two files are right only when another client deleted the first before the second claimed.
    const deletedBetween = [a?.id, b?.id].some((id) => id && this.ledger.files.get(id)?.deleteSentAt !== undefined)
    if (a?.id && b?.id && (a.id !== b.id || a.deduplicated === b.deduplicated) && !deletedBetween) {
      this.ledger.findings.push({
        cls: 'dedup-split',
        at: Date.now(),
        detail: `${tenant.name}'s twin uploads of content ${content.index} to ${provider} answered ${a.id} (dedup ${a.deduplicated}) and ${b.id} (dedup ${b.deduplicated})`,
      })
    }
  }

  /** The same new bytes from two tenants at once: two files, neither a dedup hit. */
  async crossTenant(tenant: Tenant, rng: Rng, provider: string): Promise<void> {
    const other = rng.pick(this.options.tenants.filter((t) => t.name !== tenant.name))
    const content = this.newContent(rng)
    const [a, b] = await Promise.all([
      this.upload('cross-tenant', tenant, content, provider, rng.chance(0.5)),
      this.upload('cross-tenant', other, content, provider, rng.chance(0.5)),
    ])
    if (a?.id && b?.id && (a.id === b.id || a.deduplicated || b.deduplicated)) {
      this.ledger.findings.push({
        cls: 'cross-tenant-dedup',
        at: Date.now(),
        detail: `${tenant.name} and ${other.name} uploading content ${content.index} at once got ${a.id} and ${b.id} (dedup ${a.deduplicated}/${b.deduplicated})`,
      })
    }
  }

  async list(tenant: Tenant): Promise<void> {
    const target = this.router.pick()
    const start = Date.now()
    const answer = await this.client.send(`${target.baseUrl}/v1/files?limit=20`, {
      method: 'GET',
      headers: { authorization: `Bearer ${tenant.key}` },
    })
    this.#record({
      op: 'list',
      tenant: tenant.name,
      replica: target.name,
      start,
      end: Date.now(),
      ...outcomeOf(answer),
    })
  }

  /** get, delete, copy, ensure, original: one request about a file the tenant holds. */
  async onFile(op: Op, tenant: Tenant, file: KnownFile): Promise<void> {
    const target = this.router.pick()
    const headers: Record<string, string> = { authorization: `Bearer ${tenant.key}` }
    const base = `${target.baseUrl}/v1/files/${file.id}`
    const otherProvider = this.options.providers.find((p) => p !== file.provider) ?? file.provider
    if (op === 'copy' && this.ledger.live(tenant.name, otherProvider).length >= this.options.workingSet) op = 'get'
    const start = Date.now()
    let answer: Answer
    if (op === 'delete') {
      file.deleteSentAt ??= start
      file.state = 'maybe-deleted'
      answer = await this.client.send(base, { method: 'DELETE', headers })
      if (answer.status === 200) file.state = 'deleted'
    } else if (op === 'copy') {
      answer = await this.client.send(`${base}/copies`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({ provider: otherProvider }),
      })
    } else if (op === 'ensure') {
      answer = await this.client.send(`${base}/ensure`, { method: 'POST', headers })
    } else if (op === 'original') {
      answer = await this.client.send(`${base}/original`, { method: 'GET', headers })
    } else {
      answer = await this.client.send(base, { method: 'GET', headers })
    }
    const end = Date.now()
    const outcome: Outcome = {
      op,
      tenant: tenant.name,
      replica: target.name,
      start,
      end,
      provider: op === 'copy' ? otherProvider : file.provider,
      fileId: file.id,
      ...outcomeOf(answer),
    }
    if (file.deleteSentAt !== undefined && file.deleteSentAt <= end && op !== 'delete') outcome.fileDeleted = true
    this.#checkFileAnswer(op, file, answer, outcome, otherProvider)
    this.#record(outcome)
  }

  #checkFileAnswer(op: Op, file: KnownFile, answer: Answer, outcome: Outcome, otherProvider: string): void {
    if (answer.status === undefined || answer.status >= 300) return
    if (op === 'original') {
      const body = answer.body ?? Buffer.alloc(0)
      if (body.length !== file.content.size || sha256Hex(body) !== file.content.sha256) {
        outcome.contentProblem = `original of ${file.id}: ${body.length} bytes, not the ${file.content.size} uploaded`
      }
      return
    }
    const tenant = { name: file.tenant, key: '' }
    const provider = op === 'copy' ? otherProvider : file.provider
    const state = op === 'copy' ? 'live' : file.state
    if (op === 'copy') this.#fileAnswer(answer, tenant, file.content, provider, outcome, state)
    else {
      const got = json<FileAnswer>(answer)
      if (got?.id !== file.id || got.sha256 !== file.content.sha256) {
        outcome.contentProblem = `${op} of ${file.id} answered ${got?.id} (${got?.sha256?.slice(0, 12)})`
      }
    }
  }

  #record(outcome: Outcome): void {
    this.ledger.record(outcome)
  }
}

const isUpload = (op: Op) => op === 'upload' || op === 'upload-twin' || op === 'cross-tenant' || op === 'expiring'

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

async function sleepUnless(ms: number, stop: () => boolean): Promise<void> {
  const until = Date.now() + ms
  while (Date.now() < until && !stop()) await sleep(Math.min(250, until - Date.now()))
}
