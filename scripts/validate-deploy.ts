/**
 * `npm run validate:deploy`: checks deploy/kubernetes, the Dockerfile and .dockerignore offline.
 *
 * 1. Schema: every manifest is validated against the Kubernetes OpenAPI schemas that the npm
 *    packages kubernetes-models (Kubernetes 1.27 API) and @kubernetes-models/prometheus-operator
 *    ship as compiled validators (types, required fields, enums, formats).
 * 2. Unknown fields: those schemas allow extra properties (as the API server's non-strict decoder
 *    does), so a typo such as `readOnlyRootFilesytem` would pass and silently do nothing. Each
 *    manifest is therefore also type-checked as an object literal against the packages'
 *    TypeScript interfaces, whose excess-property check rejects any field the API does not know.
 * 3. Wiring: what no schema can see: selectors match the pod labels, named ports exist, the
 *    kustomizations list every manifest, the probes hit /healthz and /readyz, the grace period
 *    covers the configured shutdown, the root filesystem is read-only with the spool on an
 *    emptyDir, the ConfigMap plus the example Secret pass filegate's own config validation, and
 *    the Dockerfile keeps its promises (Node 24 slim, production deps only, numeric non-root
 *    user, node as PID 1), supabase/migrations holds the same files as migrations/, and the
 *    PrometheusRule carries exactly the groups of deploy/observability/filegate-rules.yaml, is
 *    picked up by the same Prometheus as the ServiceMonitor, and its `up{job=...}` names the
 *    scraped Service.
 * 4. Where kubectl is installed, each kustomization is rendered with `kubectl kustomize`.
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { isDeepStrictEqual } from 'node:util'
import ts from 'typescript'
import { parseAllDocuments } from 'yaml'
import { ConfigError, loadConfig } from '../src/config.js'

const root = resolve(fileURLToPath(new URL('..', import.meta.url)))

// biome-ignore lint/suspicious/noExplicitAny: manifests are free-form YAML; each check narrows what it reads
type Manifest = Record<string, any>

export interface ManifestFile {
  /** Path relative to the repository root. */
  path: string
  docs: Manifest[]
}

export interface DeployInputs {
  manifests: ManifestFile[]
  dockerfile: string
  dockerignore: string
  /** package.json's `start` script: the image's CMD must run the same node command. */
  startScript: string
  /** deploy/observability/filegate-rules.yaml: the plain Prometheus rules file. */
  alertRules: { path: string; groups: Manifest[] }
}

/** Where the model (class and interface) for an apiVersion lives. */
function modelModule(apiVersion: string): string | undefined {
  if (apiVersion.startsWith('monitoring.coreos.com/')) return `@kubernetes-models/prometheus-operator/${apiVersion}`
  if (apiVersion.startsWith('kustomize.config.k8s.io/')) return undefined
  return `kubernetes-models/${apiVersion}`
}

const alertRulesPath = 'deploy/observability/filegate-rules.yaml'

export async function loadDeployInputs(dir = join(root, 'deploy/kubernetes')): Promise<DeployInputs> {
  const manifests: ManifestFile[] = []
  const walk = async (d: string): Promise<void> => {
    for (const entry of (await readdir(d, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = join(d, entry.name)
      if (entry.isDirectory()) await walk(full)
      else if (/\.ya?ml$/.test(entry.name))
        manifests.push(parseManifestFile(relative(root, full), await readFile(full, 'utf8')))
    }
  }
  await walk(dir)
  return {
    manifests,
    dockerfile: await readFile(join(root, 'Dockerfile'), 'utf8'),
    dockerignore: await readFile(join(root, '.dockerignore'), 'utf8'),
    startScript:
      (JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { scripts?: { start?: string } }).scripts
        ?.start ?? '',
    alertRules: {
      path: alertRulesPath,
      groups:
        parseManifestFile(alertRulesPath, await readFile(join(root, alertRulesPath), 'utf8')).docs[0]?.groups ?? [],
    },
  }
}

export function parseManifestFile(path: string, text: string): ManifestFile {
  const docs = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: false })
  const parsed: Manifest[] = []
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    if (doc.errors.length > 0) throw new Error(`${path}: ${doc.errors.map((e) => e.message).join('; ')}`)
    const value = doc.toJS()
    if (value !== null && value !== undefined) parsed.push(value as Manifest)
  }
  return { path, docs: parsed }
}

/** 1. The packaged OpenAPI schema validators. */
async function schemaProblems(files: ManifestFile[]): Promise<string[]> {
  const problems: string[] = []
  for (const file of files) {
    for (const doc of file.docs) {
      const where = `${file.path} ${doc.kind}/${doc.metadata?.name ?? '?'}`
      if (typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string') {
        problems.push(`${file.path}: a document without apiVersion and kind`)
        continue
      }
      const module = modelModule(doc.apiVersion)
      if (!module) continue
      let Model: (new (data: unknown) => { validate(): void }) | undefined
      try {
        Model = (await import(module))[doc.kind]
      } catch {
        Model = undefined
      }
      if (!Model) {
        problems.push(`${where}: no schema for ${doc.apiVersion} ${doc.kind}`)
        continue
      }
      try {
        new Model(doc).validate()
      } catch (err) {
        problems.push(`${where}: ${(err as Error).message}`)
      }
    }
  }
  return problems
}

const parsedDeclarations = new Map<string, ts.SourceFile>()
/**
 * A document's problems, by where it is and what it holds: a document's type check does not depend
 * on the others, so one checked before (the tests validate many edits of the same manifests, each
 * changing one document) is not checked again in this process.
 */
const checkedDocuments = new Map<string, string[]>()

/** 2. Excess-property check against the models' TypeScript interfaces, in memory. */
function unknownFieldProblems(files: ManifestFile[]): string[] {
  const virtual = join(root, 'scripts', '__deploy-manifests__.ts')
  const imports: string[] = []
  const bodies: Array<{ where: string; text: string; key: string }> = []
  const keys: string[] = []
  for (const file of files) {
    for (const doc of file.docs) {
      const module = typeof doc.apiVersion === 'string' ? modelModule(doc.apiVersion) : undefined
      if (!module || typeof doc.kind !== 'string') continue
      const where = `${file.path} ${doc.kind}/${doc.metadata?.name ?? '?'}`
      const key = `${where}\0${module}\0${JSON.stringify(doc)}`
      keys.push(key)
      if (checkedDocuments.has(key) || bodies.some((b) => b.key === key)) continue
      const n = bodies.length
      imports.push(`import type { I${doc.kind} as M${n} } from '${module}/${doc.kind}'`)
      bodies.push({ where, key, text: `export const m${n}: M${n} = ${JSON.stringify(doc, null, 1)}` })
    }
  }
  const unplaced = bodies.length > 0 ? checkDocuments(virtual, imports, bodies) : []
  return [...unplaced, ...keys.flatMap((key) => checkedDocuments.get(key) ?? [])]
}

/** Type-checks `bodies` in one program, files each one's problems under its key; returns those no document owns. */
function checkDocuments(
  virtual: string,
  imports: string[],
  bodies: Array<{ where: string; text: string; key: string }>,
): string[] {
  const sourceLines = [...imports]
  const starts: number[] = []
  for (const body of bodies) {
    starts.push(sourceLines.length)
    sourceLines.push(...body.text.split('\n'))
  }
  const source = sourceLines.join('\n')
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (name, version, ...rest) => {
    if (resolve(name) === virtual) return ts.createSourceFile(name, source, version)
    // The libraries and the models' declarations are parsed once per process (the tests check
    // many edited manifests): TypeScript reuses a parsed declaration file across programs.
    const key = `${name}\0${JSON.stringify(version)}`
    let file = parsedDeclarations.get(key)
    if (!file) {
      file = getSourceFile(name, version, ...rest)
      if (file) parsedDeclarations.set(key, file)
    }
    return file
  }
  const fileExists = host.fileExists.bind(host)
  host.fileExists = (name) => resolve(name) === virtual || fileExists(name)
  const program = ts.createProgram([virtual], options, host)
  const found = bodies.map((): string[] => [])
  const unplaced: string[] = []
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, ' ')
    if (!d.file || d.start === undefined) {
      unplaced.push(`manifest types: ${message}`)
      continue
    }
    const { line } = d.file.getLineAndCharacterOfPosition(d.start)
    const doc = starts.filter((start) => start <= line).length - 1
    const at = line >= (starts[0] ?? 0) ? ` (at ${sourceLines[line]?.trim().slice(0, 80)})` : ''
    const text = `${bodies[doc]?.where ?? 'manifest'}: ${message}${at}`
    if (doc >= 0 && found[doc]) found[doc].push(text)
    else unplaced.push(text)
  }
  bodies.forEach((body, i) => {
    checkedDocuments.set(body.key, found[i] ?? [])
  })
  return unplaced
}

const byKind = (files: ManifestFile[], kind: string) =>
  files.flatMap((f) => f.docs.filter((d) => d.kind === kind).map((doc) => ({ file: f.path, doc })))

const matches = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v)

/** 3. The wiring between resources, filegate's configuration, and the image. */
export function wiringProblems(inputs: DeployInputs): string[] {
  const problems: string[] = []
  const problem = (message: string) => problems.push(message)
  const files = inputs.manifests

  // Kustomizations: every listed resource exists, every manifest is listed by one of them.
  const listed = new Set<string>()
  for (const { file, doc } of byKind(files, 'Kustomization')) {
    const here = dirname(join(root, file))
    for (const entry of doc.resources ?? []) {
      const target = resolve(here, entry)
      if (!existsSync(target)) problem(`${file}: resource ${entry} does not exist`)
      // kustomize refuses a resource directory that contains the kustomization itself.
      if (here === target || here.startsWith(`${target}/`))
        problem(`${file}: resource ${entry} contains this kustomization (a cycle)`)
      listed.add(
        relative(root, existsSync(join(target, 'kustomization.yaml')) ? join(target, 'kustomization.yaml') : target),
      )
    }
  }
  for (const file of files) {
    const isKustomization = file.docs.some((d) => d.kind === 'Kustomization')
    const isExample = /\.example\.ya?ml$/.test(file.path)
    if (!isKustomization && !isExample && !listed.has(file.path))
      problem(`${file.path}: not listed in any kustomization.yaml`)
    if (isExample && listed.has(file.path)) problem(`${file.path}: an example must not be applied by a kustomization`)
  }

  const deployments = byKind(files, 'Deployment')
  if (deployments.length !== 1) {
    problem(`expected one Deployment, found ${deployments.length}`)
    return problems
  }
  const { file: deploymentFile, doc: deployment } = deployments[0] as { file: string; doc: Manifest }
  const spec = deployment.spec ?? {}
  const pod = spec.template?.spec ?? {}
  const podLabels = spec.template?.metadata?.labels
  const container = (pod.containers ?? [])[0] ?? {}
  const where = `${deploymentFile} Deployment/${deployment.metadata?.name}`

  if (!matches(spec.selector?.matchLabels, podLabels)) problem(`${where}: selector does not match the pod labels`)
  if (!(spec.replicas >= 2)) problem(`${where}: fewer than 2 replicas`)
  const probePath = (p: Manifest | undefined) => p?.httpGet?.path
  if (probePath(container.livenessProbe) !== '/healthz') problem(`${where}: liveness probe is not GET /healthz`)
  if (probePath(container.readinessProbe) !== '/readyz') problem(`${where}: readiness probe is not GET /readyz`)
  for (const kind of ['requests', 'limits']) {
    for (const resource of ['cpu', 'memory']) {
      if (!container.resources?.[kind]?.[resource]) problem(`${where}: no ${resource} ${kind}`)
    }
  }
  const containerPorts = new Map<string, number>(
    (container.ports ?? []).map((p: Manifest) => [p.name, p.containerPort] as [string, number]),
  )
  for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
    const port = container[probe]?.httpGet?.port
    if (typeof port === 'string' && !containerPorts.has(port)) problem(`${where}: ${probe} uses unknown port ${port}`)
  }
  const podSecurity = pod.securityContext ?? {}
  const containerSecurity = container.securityContext ?? {}
  if (podSecurity.runAsNonRoot !== true && containerSecurity.runAsNonRoot !== true)
    problem(`${where}: runAsNonRoot is not set`)
  if (!((podSecurity.runAsUser ?? containerSecurity.runAsUser) > 0)) problem(`${where}: no non-zero runAsUser`)
  if (containerSecurity.readOnlyRootFilesystem !== true) problem(`${where}: root filesystem is not read-only`)
  if (containerSecurity.allowPrivilegeEscalation !== false) problem(`${where}: privilege escalation is allowed`)
  if (!(containerSecurity.capabilities?.drop ?? []).includes('ALL')) problem(`${where}: capabilities are not dropped`)

  // The environment the pod gets: ConfigMap + the Secret (its example stands in for it).
  const configMaps = new Map(byKind(files, 'ConfigMap').map(({ doc }) => [doc.metadata?.name, doc]))
  const secrets = new Map(byKind(files, 'Secret').map(({ doc }) => [doc.metadata?.name, doc]))
  const env: Record<string, string> = {}
  for (const source of container.envFrom ?? []) {
    if (source.configMapRef) {
      const cm = configMaps.get(source.configMapRef.name)
      if (!cm) problem(`${where}: ConfigMap ${source.configMapRef.name} is not defined`)
      else Object.assign(env, cm.data)
    }
    if (source.secretRef) {
      const secret = secrets.get(source.secretRef.name)
      if (!secret) problem(`${where}: Secret ${source.secretRef.name} has no example`)
      else Object.assign(env, secret.stringData)
    }
  }
  for (const e of container.env ?? []) if (typeof e.value === 'string') env[e.name] = e.value
  for (const key of ['API_KEYS', 'DATABASE_URL', 'KIMI_API_KEY', 'GLM_API_KEY']) {
    if (![...secrets.values()].some((s) => s.stringData?.[key] !== undefined))
      problem(`the Secret example has no ${key}`)
  }
  try {
    const config = loadConfig(env)
    if (config.store.transport !== 'postgres') problem(`${where}: the pods would not use DATABASE_URL`)
    const graceMs = (pod.terminationGracePeriodSeconds ?? 30) * 1000
    if (!(graceMs > config.timeouts.shutdownMs + config.shutdownDrainMs)) {
      problem(
        `${where}: terminationGracePeriodSeconds ${graceMs / 1000}s is not above SHUTDOWN_DRAIN_MS + SHUTDOWN_TIMEOUT_MS ` +
          `(${(config.timeouts.shutdownMs + config.shutdownDrainMs) / 1000}s)`,
      )
    }
    if (config.shutdownDrainMs <= 0)
      problem(`${where}: SHUTDOWN_DRAIN_MS is 0: requests still routed to a closing pod fail`)
    const mounts: Manifest[] = container.volumeMounts ?? []
    const spool = mounts.find(
      (m) => config.uploadTmpDir === m.mountPath || config.uploadTmpDir.startsWith(`${m.mountPath}/`),
    )
    const volume = spool && (pod.volumes ?? []).find((v: Manifest) => v.name === spool.name)
    if (!volume?.emptyDir) problem(`${where}: UPLOAD_TMP_DIR ${config.uploadTmpDir} is not on an emptyDir volume`)
    const metricsPort = config.metricsPort ?? config.port
    const annotations = spec.template?.metadata?.annotations ?? {}
    if (annotations['prometheus.io/scrape'] !== 'true') problem(`${where}: no prometheus.io/scrape annotation`)
    if (Number(annotations['prometheus.io/port']) !== metricsPort) {
      problem(`${where}: prometheus.io/port is not the metrics port ${metricsPort}`)
    }
    if (![...containerPorts.values()].includes(metricsPort))
      problem(`${where}: metrics port ${metricsPort} is not declared`)
    if (!containerPorts.has('http') || containerPorts.get('http') !== config.port) {
      problem(`${where}: port "http" is not PORT ${config.port}`)
    }
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    problem(`${where}: the ConfigMap and Secret do not make a valid filegate configuration: ${err.message}`)
  }

  // Services, PDB, HPA and ServiceMonitor point at this Deployment.
  const services = byKind(files, 'Service')
  if (services.length === 0) problem('no Service')
  for (const { file, doc } of services) {
    if (!matches(doc.spec?.selector, podLabels)) problem(`${file}: Service selector does not match the pod labels`)
    for (const port of doc.spec?.ports ?? []) {
      if (typeof port.targetPort === 'string' && !containerPorts.has(port.targetPort)) {
        problem(`${file}: Service targetPort ${port.targetPort} is not a container port`)
      }
    }
  }
  const pdbs = byKind(files, 'PodDisruptionBudget')
  if (pdbs.length === 0) problem('no PodDisruptionBudget')
  for (const { file, doc } of pdbs) {
    if (!matches(doc.spec?.selector?.matchLabels, podLabels))
      problem(`${file}: PDB selector does not match the pod labels`)
  }
  const hpas = byKind(files, 'HorizontalPodAutoscaler')
  if (hpas.length === 0) problem('no HorizontalPodAutoscaler')
  for (const { file, doc } of hpas) {
    const target = doc.spec?.scaleTargetRef ?? {}
    if (target.kind !== 'Deployment' || target.name !== deployment.metadata?.name)
      problem(`${file}: HPA does not target the Deployment`)
    if (!(doc.spec?.minReplicas >= 2)) problem(`${file}: HPA minReplicas below 2`)
  }
  const monitors = byKind(files, 'ServiceMonitor')
  if (monitors.length === 0) problem('no ServiceMonitor')
  for (const { file, doc } of monitors) {
    const service = services.find(({ doc: s }) => matches(doc.spec?.selector?.matchLabels, s.metadata?.labels))
    if (!service) {
      problem(`${file}: ServiceMonitor selects no Service`)
      continue
    }
    const portNames = new Set((service.doc.spec?.ports ?? []).map((p: Manifest) => p.name))
    for (const endpoint of doc.spec?.endpoints ?? []) {
      if (!portNames.has(endpoint.port)) problem(`${file}: ServiceMonitor port ${endpoint.port} is not a Service port`)
    }
  }

  problems.push(...alertRuleProblems(inputs, monitors, services))
  problems.push(...dockerProblems(inputs.dockerfile, inputs.dockerignore, inputs.startScript))
  return problems
}

type Located = { file: string; doc: Manifest }

/** The PrometheusRule is the rules file, for the Prometheus that scrapes through the ServiceMonitor. */
function alertRuleProblems(inputs: DeployInputs, monitors: Located[], services: Located[]): string[] {
  const problems: string[] = []
  const rules = byKind(inputs.manifests, 'PrometheusRule')
  if (rules.length !== 1) return [`expected one PrometheusRule, found ${rules.length}`]
  const { file, doc } = rules[0] as Located
  if (inputs.alertRules.groups.length === 0) problems.push(`${inputs.alertRules.path}: no rule groups`)
  if (!isDeepStrictEqual(doc.spec?.groups, inputs.alertRules.groups))
    problems.push(`${file}: spec.groups differ from the groups of ${inputs.alertRules.path}`)
  const release = doc.metadata?.labels?.release
  for (const monitor of monitors) {
    if (monitor.doc.metadata?.labels?.release !== release)
      problems.push(`${file}: label release=${release} differs from the ServiceMonitor's (another Prometheus)`)
  }
  // The Prometheus Operator names the scrape job after the Service.
  const jobs = new Set(services.map((s) => s.doc.metadata?.name))
  for (const group of doc.spec?.groups ?? []) {
    for (const rule of group.rules ?? []) {
      for (const m of String(rule.expr).matchAll(/\bup\{[^}]*\bjob="([^"]*)"/g)) {
        if (!jobs.has(m[1])) problems.push(`${file}: ${rule.alert ?? rule.record} watches job "${m[1]}", not a Service`)
      }
    }
  }
  return problems
}

/** The Dockerfile's promises, read statically (no Docker engine needed). */
export function dockerProblems(dockerfile: string, dockerignore: string, startScript?: string): string[] {
  const problems: string[] = []
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
  const args = Object.fromEntries(
    instructions.flatMap((l) => {
      const m = /^ARG\s+(\w+)=(\S+)/.exec(l)
      return m ? [[m[1], m[2]]] : []
    }),
  )
  const expand = (s: string) => s.replace(/\$\{(\w+)\}/g, (_, name) => args[name] ?? '')
  const froms = instructions.filter((l) => /^FROM\s/i.test(l)).map((l) => expand(l.split(/\s+/)[1] ?? ''))
  if (froms.length < 2) problems.push('Dockerfile: not multi-stage')
  for (const image of froms)
    if (!/^node:24(\.\d+)*-(bookworm-|trixie-)?slim$/.test(image))
      problems.push(`Dockerfile: base ${image} is not node:24-slim`)
  const finalStage = instructions.slice(instructions.map((l) => /^FROM\s/i.test(l)).lastIndexOf(true))
  if (!finalStage.some((l) => /^RUN .*npm ci\b.*--omit=dev/.test(l)))
    problems.push('Dockerfile: the final stage does not npm ci --omit=dev')
  const user =
    finalStage
      .filter((l) => /^USER\s/.test(l))
      .pop()
      ?.split(/\s+/)[1] ?? ''
  if (!/^[1-9]\d*(:\d+)?$/.test(user)) problems.push(`Dockerfile: final USER "${user}" is not a numeric non-root user`)
  const cmd = finalStage.filter((l) => /^CMD\s/.test(l)).pop() ?? ''
  let argv: unknown
  try {
    argv = JSON.parse(cmd.replace(/^CMD\s+/, ''))
  } catch {
    argv = undefined
  }
  if (!Array.isArray(argv) || argv[0] !== 'node')
    problems.push('Dockerfile: CMD is not exec-form node (SIGTERM must reach node as PID 1)')
  // The image and `npm start` run the service with the same Node flags (GC tuning the bench measured).
  else if (startScript !== undefined && argv.join(' ') !== startScript.trim().split(/\s+/).join(' '))
    problems.push(`Dockerfile: CMD ${argv.join(' ')} differs from npm start (${startScript})`)
  for (const l of finalStage.filter((l) => /^COPY\s/.test(l) && !l.includes('--from='))) {
    const sources = l
      .split(/\s+/)
      .slice(1, -1)
      .filter((s) => !s.startsWith('--'))
    for (const s of sources)
      if (!/^(package(-lock)?\.json|migrations)$/.test(s))
        problems.push(`Dockerfile: the final stage copies ${s} from the context`)
  }
  const allowed = dockerignore
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('!'))
    .map((l) => l.slice(1).replace(/\/$/, ''))
  if (!dockerignore.split('\n').some((l) => l.trim() === '*'))
    problems.push('.dockerignore: not an allow-list (no "*")')
  for (const l of instructions.filter((l) => /^COPY\s/.test(l) && !l.includes('--from='))) {
    for (const s of l
      .split(/\s+/)
      .slice(1, -1)
      .filter((s) => !s.startsWith('--'))) {
      if (!allowed.includes(s.replace(/\/$/, '')))
        problems.push(`.dockerignore: ${s} is copied but not allowed into the context`)
    }
  }
  return problems
}

/**
 * `supabase db push` reads supabase/migrations: it must hold exactly the files of migrations/
 * (a symlink in this repository; a copy would do as long as it stays identical).
 */
export async function supabaseMigrationProblems(base = root): Promise<string[]> {
  const read = async (dir: string) => {
    const entries = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort()
    return Promise.all(entries.map(async (f) => [f, await readFile(join(dir, f), 'utf8')] as const))
  }
  try {
    const ours = await read(join(base, 'migrations'))
    const supabase = await read(join(base, 'supabase', 'migrations'))
    if (JSON.stringify(ours) === JSON.stringify(supabase)) return []
    return [
      'supabase/migrations differs from migrations/: it must hold the same files (ln -sfn ../migrations supabase/migrations)',
    ]
  } catch (err) {
    return [`supabase/migrations: ${(err as Error).message}`]
  }
}

export async function validateDeploy(inputs: DeployInputs): Promise<string[]> {
  return [
    ...(await schemaProblems(inputs.manifests)),
    ...unknownFieldProblems(inputs.manifests),
    ...wiringProblems(inputs),
  ]
}

/**
 * Renders each kustomization with `kubectl kustomize` (offline) when kubectl is installed, which
 * catches what only kustomize itself knows (its own field names, patches, generators).
 */
export function kustomizeProblems(files: ManifestFile[]): { problems: string[]; skipped: boolean } {
  const probe = spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' })
  if (probe.error || probe.status !== 0) return { problems: [], skipped: true }
  const problems: string[] = []
  for (const file of files.filter((f) => f.docs.some((d) => d.kind === 'Kustomization'))) {
    const dir = dirname(join(root, file.path))
    const run = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' })
    if (run.status !== 0)
      problems.push(`${file.path}: kubectl kustomize failed: ${(run.stderr || '').trim().slice(0, 500)}`)
  }
  return { problems, skipped: false }
}

async function main() {
  const inputs = await loadDeployInputs()
  const kustomize = kustomizeProblems(inputs.manifests)
  if (kustomize.skipped)
    process.stdout.write('validate:deploy: NOTICE: kubectl not found, kustomizations not rendered\n')
  const problems = [...(await validateDeploy(inputs)), ...(await supabaseMigrationProblems()), ...kustomize.problems]
  const count = inputs.manifests.reduce((n, f) => n + f.docs.length, 0)
  if (problems.length > 0) {
    process.stderr.write(
      `validate:deploy: ${problems.length} problem(s):\n${problems.map((p) => `  - ${p}`).join('\n')}\n`,
    )
    process.exit(1)
  }
  process.stdout.write(
    `validate:deploy: ${count} manifests in ${inputs.manifests.length} files, Dockerfile, .dockerignore, supabase/migrations: OK\n`,
  )
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`validate:deploy failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  })
}
