/**
 * scripts/validate-deploy.ts: the shipped manifests and Dockerfile pass, and each kind of mistake
 * an edit could make is caught (a validator that cannot fail checks nothing).
 */
import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { before, describe, it } from 'node:test'
import {
  type DeployInputs,
  loadDeployInputs,
  supabaseMigrationProblems,
  validateDeploy,
} from '../../scripts/validate-deploy.js'
import { tempDir } from '../helper.js'

// biome-ignore lint/suspicious/noExplicitAny: manifests are free-form; each case edits one field
type Manifest = Record<string, any>

describe('validate:deploy', () => {
  let shipped: DeployInputs
  before(async () => {
    shipped = await loadDeployInputs()
  })

  /** A copy of the shipped inputs with one edit applied to the first document of `kind`. */
  function withEdit(kind: string, edit: (doc: Manifest) => void): DeployInputs {
    const copy = structuredClone(shipped)
    const doc = copy.manifests.flatMap((f) => f.docs).find((d) => d.kind === kind)
    assert.ok(doc, `a ${kind} is shipped`)
    edit(doc)
    return copy
  }
  const container = (d: Manifest) => d.spec.template.spec.containers[0]

  async function assertCaught(inputs: DeployInputs, pattern: RegExp) {
    const problems = await validateDeploy(inputs)
    assert.ok(
      problems.some((p) => pattern.test(p)),
      `expected a problem matching ${pattern}, got:\n${problems.join('\n') || '(none)'}`,
    )
  }

  it('accepts the shipped manifests, Dockerfile and .dockerignore', async () => {
    assert.ok(shipped.manifests.length >= 8)
    assert.deepEqual(await validateDeploy(shipped), [])
  })

  it('rejects a misspelt field (the schemas alone would let it through)', async () => {
    await assertCaught(
      withEdit('Deployment', (d) => {
        const security = container(d).securityContext
        security.readOnlyRootFilesytem = security.readOnlyRootFilesystem
        delete security.readOnlyRootFilesystem
      }),
      /readOnlyRootFilesytem/,
    )
  })

  it('rejects a value of the wrong type', async () => {
    await assertCaught(
      withEdit('Deployment', (d) => {
        container(d).ports[0].containerPort = 'eighty'
      }),
      /containerPort must be integer/,
    )
  })

  it('rejects a grace period shorter than the configured shutdown', async () => {
    await assertCaught(
      withEdit('Deployment', (d) => {
        d.spec.template.spec.terminationGracePeriodSeconds = 60
      }),
      /terminationGracePeriodSeconds 60s is not above/,
    )
  })

  it('rejects probes on the wrong paths and a writable root filesystem', async () => {
    const inputs = withEdit('Deployment', (d) => {
      container(d).readinessProbe.httpGet.path = '/healthz'
      container(d).securityContext.readOnlyRootFilesystem = false
    })
    await assertCaught(inputs, /readiness probe is not GET \/readyz/)
    await assertCaught(inputs, /root filesystem is not read-only/)
  })

  it('rejects a Service, PDB or ServiceMonitor that points nowhere', async () => {
    await assertCaught(
      withEdit('Service', (d) => {
        d.spec.selector = { 'app.kubernetes.io/name': 'other' }
      }),
      /Service selector does not match/,
    )
    await assertCaught(
      withEdit('PodDisruptionBudget', (d) => {
        d.spec.selector.matchLabels = { app: 'filegate' }
      }),
      /PDB selector does not match/,
    )
    await assertCaught(
      withEdit('ServiceMonitor', (d) => {
        d.spec.endpoints[0].port = 'prometheus'
      }),
      /ServiceMonitor port prometheus is not a Service port/,
    )
  })

  it('rejects a PrometheusRule that drifts from the rules file, another Prometheus, or a job that is no Service', async () => {
    await assertCaught(
      withEdit('PrometheusRule', (d) => {
        d.spec.groups[0].rules[1].for = '10m'
      }),
      /prometheusrule\.yaml: spec\.groups differ from the groups of deploy\/observability\/filegate-rules\.yaml/,
    )
    const ruleFileEdited = structuredClone(shipped)
    const group = ruleFileEdited.alertRules.groups[0]
    assert.ok(group)
    group.rules.pop()
    await assertCaught(ruleFileEdited, /spec\.groups differ/)
    await assertCaught(
      withEdit('PrometheusRule', (d) => {
        d.metadata.labels.release = 'kube-prometheus'
      }),
      /label release=kube-prometheus differs from the ServiceMonitor's/,
    )
    const renamed = withEdit('Service', (d) => {
      d.metadata.name = 'files'
    })
    await assertCaught(renamed, /FilegateDown watches job "filegate", not a Service/)
    const missing = structuredClone(shipped)
    for (const f of missing.manifests) f.docs = f.docs.filter((d) => d.kind !== 'PrometheusRule')
    await assertCaught(missing, /expected one PrometheusRule, found 0/)
  })

  it('rejects a kustomization that lists a missing file or its own parent (a cycle)', async () => {
    const copy = structuredClone(shipped)
    const overlay = copy.manifests.find((f) => f.path.endsWith('prometheus-operator/kustomization.yaml'))
    assert.ok(overlay?.docs[0])
    overlay.docs[0].resources = ['../', 'servicemonitor.yml']
    await assertCaught(copy, /resource \.\.\/ contains this kustomization \(a cycle\)/)
    await assertCaught(copy, /resource servicemonitor\.yml does not exist/)
    await assertCaught(copy, /servicemonitor\.yaml: not listed in any kustomization/)
  })

  it("rejects a ConfigMap that filegate's own configuration check refuses", async () => {
    await assertCaught(
      withEdit('ConfigMap', (d) => {
        d.data.PROVIDER_TIMEOUT_MS = '900000'
      }),
      /do not make a valid filegate configuration/,
    )
  })

  it('rejects a Dockerfile that runs npm as PID 1, as root, or ships the sources', async () => {
    const edit = (from: RegExp, to: string) => ({ ...shipped, dockerfile: shipped.dockerfile.replace(from, to) })
    await assertCaught(edit(/^CMD .*$/m, 'CMD ["npm", "start"]'), /CMD is not exec-form node/)
    await assertCaught(edit(/^USER .*$/m, 'USER node'), /not a numeric non-root user/)
    await assertCaught(edit(/^COPY migrations/m, 'COPY src ./src\nCOPY migrations'), /final stage copies src/)
    await assertCaught(edit(/node:24-slim/, 'node:22'), /is not node:24-slim/)
    await assertCaught(
      edit(/^CMD \["node", .*$/m, 'CMD ["node", "dist/src/server.js"]'),
      /CMD node dist\/src\/server\.js differs from npm start/,
    )
  })

  it('requires supabase/migrations to hold the same files as migrations/', async (t) => {
    assert.deepEqual(await supabaseMigrationProblems(), [], 'the shipped link resolves')
    const base = await tempDir(t)
    await mkdir(join(base, 'migrations'))
    await mkdir(join(base, 'supabase', 'migrations'), { recursive: true })
    await writeFile(join(base, 'migrations', '0001_a.sql'), 'select 1;')
    await writeFile(join(base, 'supabase', 'migrations', '0001_a.sql'), 'select 1;')
    assert.deepEqual(await supabaseMigrationProblems(base), [])
    await writeFile(join(base, 'migrations', '0002_b.sql'), 'select 2;')
    assert.match((await supabaseMigrationProblems(base))[0] ?? '', /differs from migrations/)
  })
})
