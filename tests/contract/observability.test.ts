/**
 * deploy/observability: the alert rules pass `promtool check rules`, their unit tests
 * (filegate-rules.test.yaml) pass `promtool test rules` with a case where each alert fires and one
 * where it stays silent, and every PromQL expression of the Grafana dashboard parses (promtool
 * checks each one as a recording rule: it has no offline query command) and, like the alert
 * rules, names only metrics that a scrape of the running service declares. Without promtool the
 * promtool steps skip with a notice; with CI=true they fail (.ci/run installs it).
 */
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { auth, build, multipart, pgliteStore, startFakes, tempDir, testKeys } from '../helper.js'
import { requirePromtool, runPromtool } from '../tools.js'

const dir = fileURLToPath(new URL('../../deploy/observability/', import.meta.url))
const rulesPath = join(dir, 'filegate-rules.yaml')
const rulesTestPath = join(dir, 'filegate-rules.test.yaml')
const dashboardPath = join(dir, 'filegate-dashboard.json')

interface Rule {
  alert?: string
  record?: string
  expr: string
  annotations?: Record<string, string>
}
interface RulesTest {
  name: string
  alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }>
}
interface Panel {
  id: number
  type: string
  title: string
  datasource?: { uid?: string }
  targets?: Array<{ expr: string; refId: string; datasource?: { uid?: string } }>
}

const loadRules = async () =>
  (parse(await readFile(rulesPath, 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules)
const loadDashboard = async () =>
  JSON.parse(await readFile(dashboardPath, 'utf8')) as {
    panels: Panel[]
    templating: { list: Array<{ name: string; type: string; query: unknown }> }
  }

/** Grafana's variables in a dashboard query, replaced by what a selection would give. */
export function substituteGrafanaVariables(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__interval', '1m')
    .replaceAll('$__range', '6h')
    .replaceAll('$job', 'filegate')
    .replaceAll('$instance', '.*')
}

const promqlKeywords = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'offset',
  'and',
  'or',
  'unless',
  'atan2',
  'inf',
  'nan',
])

/**
 * The metric names a PromQL expression selects: identifiers left once strings, label matchers,
 * ranges and grouping clauses are removed, other than functions (followed by "(") and keywords.
 */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
  const names = new Set<string>()
  for (const m of stripped.matchAll(/(?<![\w.$])[A-Za-z_:][\w:]*(?![\w:]|\s*\()/g)) {
    if (!promqlKeywords.has(m[0].toLowerCase())) names.add(m[0])
  }
  return [...names]
}

/** Series names a scrape declares (# TYPE), with the suffixes histograms and summaries expose. */
export function declaredNames(exposition: string): Set<string> {
  const names = new Set<string>()
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string]
    names.add(name)
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s)
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(name + s)
  }
  return names
}

/** A scrape of the running service (a real listener) after uploads, a dedup, refusals, a delete and a sweep. */
async function scrapeRunningService(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const store = await pgliteStore(t)
  const fakes = await startFakes(t)
  const app = await build(t, { ...fakes.env, UPLOAD_TMP_DIR: await tempDir(t, 'filegate-spool-') }, { store })
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  const upload = async (content: string, filename = 'notes.txt') => {
    const body = multipart([
      ['provider', 'kimi'],
      ['file', { filename, content, type: 'text/plain' }],
    ])
    return fetch(`${base}/v1/files`, {
      method: 'POST',
      headers: { ...auth(testKeys.alice), ...body.headers },
      body: body.payload,
    })
  }
  const created = await upload('dashboard check\n')
  assert.equal(created.status, 201)
  const { id } = (await created.json()) as { id: string }
  assert.equal((await upload('dashboard check\n')).status, 200)
  assert.equal((await upload('x', 'tool.exe')).status, 415)
  assert.equal((await fetch(`${base}/v1/files/${id}`, { method: 'DELETE', headers: auth(testKeys.alice) })).status, 200)
  const cleanup = await fetch(`${base}/v1/cleanup`, {
    method: 'POST',
    headers: { ...auth(testKeys.admin), 'content-type': 'application/json' },
    body: JSON.stringify({ dry_run: false }),
  })
  assert.equal(cleanup.status, 200)
  const scrape = await fetch(`${base}/metrics`)
  assert.equal(scrape.status, 200)
  return scrape.text()
}

describe('PromQL name extraction', () => {
  it('finds the selected metrics and nothing else', () => {
    assert.deepEqual(
      metricNames(
        'histogram_quantile(0.99, sum by (provider, le) (rate(a_bucket{job=~"x|y",le!="1e3"}[5m]))) > 60 ' +
          'or on (job) label_replace(b / ignoring (instance) group_left c offset 5m, "cap", "files", "", "") ' +
          'unless time() - max without (x) (d_total:ratio) > 1e3 and bool up',
      ),
      ['a_bucket', 'b', 'c', 'd_total:ratio', 'up'],
    )
  })

  it('reads declared names from an exposition, histograms with their suffixes', () => {
    const names = declaredNames('# HELP h x\n# TYPE h histogram\n# TYPE g gauge\ng 1\n')
    assert.deepEqual([...names].sort(), ['g', 'h', 'h_bucket', 'h_count', 'h_sum'])
  })
})

describe('alert rules', () => {
  it('pass promtool check rules', async (t) => {
    if (!requirePromtool(t)) return
    const { code, output } = await runPromtool(t, ['check', 'rules', rulesPath])
    assert.equal(code, 0, output)
    const rules = await loadRules()
    assert.match(output, new RegExp(`SUCCESS: ${rules.length} rules found`))
  })

  it('carry a summary, a description and a runbook section, and every alert has firing and silent unit tests', async (t) => {
    const rules = await loadRules()
    const alerts = rules.filter((r) => r.alert).map((r) => r.alert as string)
    assert.deepEqual(alerts.sort(), [
      'FilegateAuthFailureBurst',
      'FilegateCleanupJobStale',
      'FilegateDown',
      'FilegateHighErrorRatio',
      'FilegateProviderCircuitOpen',
      'FilegateProviderNearCap',
      'FilegateProviderUnknownFiles',
      'FilegateSlowUploads',
    ])
    const operations = await readFile(fileURLToPath(new URL('../../docs/operations.md', import.meta.url)), 'utf8')
    const runbook = operations.slice(operations.indexOf('\n## Runbook'))
    assert.ok(operations.includes('\n## Runbook'), 'docs/operations.md has a "## Runbook" section')
    for (const rule of rules.filter((r) => r.alert)) {
      const a = rule.annotations ?? {}
      assert.ok(a.summary && a.description, `${rule.alert} has a summary and a description`)
      assert.equal(a.runbook_url, `docs/operations.md#${rule.alert?.toLowerCase()}`)
      assert.match(runbook, new RegExp(`^### ${rule.alert}$`, 'm'), `the runbook has a section for ${rule.alert}`)
    }

    const tests = (parse(await readFile(rulesTestPath, 'utf8')) as { tests: RulesTest[] }).tests
    const cases = tests.flatMap((group) => group.alert_rule_test ?? [])
    for (const alert of alerts) {
      const mine = cases.filter((c) => c.alertname === alert)
      assert.ok(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${alert} has a case where it fires`,
      )
      assert.ok(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${alert} has a case where it stays silent`,
      )
    }
    t.diagnostic(`${cases.length} alert test cases for ${alerts.length} alerts in ${tests.length} groups`)
    console.log(`# promtool test rules: ${cases.length} alert test cases for ${alerts.length} alerts`)
  })

  it('pass their unit tests (promtool test rules)', async (t) => {
    if (!requirePromtool(t)) return
    const { code, output } = await runPromtool(t, ['test', 'rules', rulesTestPath])
    assert.equal(code, 0, output)
    assert.match(output, /SUCCESS/)
  })
})

/** How a panel names the data source chosen in the dashboard's `datasource` variable. */
const datasourceVariable = `$${'{datasource}'}`

describe('Grafana dashboard', () => {
  it('is importable as is: the datasource is a variable, panel ids are unique', async () => {
    const dashboard = await loadDashboard()
    const variable = dashboard.templating.list.find((v) => v.type === 'datasource')
    assert.equal(variable?.name, 'datasource')
    assert.equal(variable?.query, 'prometheus')
    const ids = dashboard.panels.map((p) => p.id)
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique')
    for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
      assert.equal(panel.datasource?.uid, datasourceVariable, `${panel.title} uses the datasource variable`)
      assert.ok((panel.targets ?? []).length > 0, `${panel.title} has queries`)
      for (const target of panel.targets ?? []) assert.equal(target.datasource?.uid, datasourceVariable)
    }
    const titles = dashboard.panels.map((p) => p.title.toLowerCase())
    for (const wanted of [
      'uploads/s by provider and outcome',
      'dedup hit ratio',
      'bytes/s',
      'upload duration p50 / p99 by provider',
      'active uploads',
      'circuit state per provider',
      'provider usage against its caps',
      'cleanup runs',
      'cleanup failures',
      'age of the last successful run',
      'http error ratio by route',
      'http latency',
      'process memory',
      'event loop lag',
    ]) {
      assert.ok(
        titles.some((title) => title.includes(wanted)),
        `a panel "${wanted}"`,
      )
    }
  })

  it('queries parse (promtool) and, with the alert rules, name only metrics the running service exports', async (t) => {
    const dashboard = await loadDashboard()
    const queries = dashboard.panels.flatMap((p) =>
      (p.targets ?? []).map((target) => ({
        where: `${p.title} / ${target.refId}`,
        expr: substituteGrafanaVariables(target.expr),
      })),
    )
    assert.ok(queries.length >= 20)
    for (const q of queries) assert.doesNotMatch(q.expr, /\$/, `${q.where}: a Grafana variable is left`)

    const declared = declaredNames(await scrapeRunningService(t))
    // `up` is the one series Prometheus itself writes for each target.
    declared.add('up')
    const rules = await loadRules()
    // Query variables: label_values(<selector>, <label>) takes a series selector.
    const variables = dashboard.templating.list.flatMap((v) => {
      const m = v.type === 'query' ? /^label_values\((.*),\s*\w+\)$/.exec((v.query as { query: string }).query) : null
      return m ? [{ where: `variable ${v.name}`, expr: substituteGrafanaVariables(m[1] as string) }] : []
    })
    assert.equal(variables.length, 2, 'the job and instance variables read a filegate metric')
    for (const q of [...queries, ...variables, ...rules.map((r) => ({ where: `rule ${r.alert}`, expr: r.expr }))]) {
      const names = metricNames(q.expr)
      assert.ok(names.length > 0, `${q.where} selects a metric`)
      for (const name of names) assert.ok(declared.has(name), `${q.where}: ${name} is not exported by filegate`)
    }

    if (!requirePromtool(t)) return
    // promtool has no offline query parser; a rules file with each query as a recording rule is.
    const file = join(await tempDir(t, 'filegate-dashboard-'), 'dashboard-queries.yaml')
    const recording = queries.map((q, i) => ({ record: `filegate_dashboard:query_${i}`, expr: q.expr }))
    await writeFile(file, JSON.stringify({ groups: [{ name: 'dashboard', rules: recording }] }))
    const { code, output } = await runPromtool(t, ['check', 'rules', file])
    assert.equal(code, 0, `promtool rejected a dashboard query:\n${output}`)
    assert.match(output, new RegExp(`SUCCESS: ${queries.length} rules found`))
    t.diagnostic(`${queries.length} dashboard queries parse and name exported metrics`)
  })
})
