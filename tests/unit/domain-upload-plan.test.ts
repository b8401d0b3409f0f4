/** planUpload / candidatesFor: which provider(s) an upload may go to, decided before the body is read. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfig } from '../../src/config.js'
import { candidatesFor, limitFor, planUpload } from '../../src/domain/upload-plan.js'
import { AppError, isAppError } from '../../src/errors.js'
import type { ProviderRegistry } from '../../src/providers/registry.js'
import type { CircuitState, ProviderAdapter } from '../../src/providers/types.js'

const MB = 1024 * 1024

/** A registry of adapters that only answer the questions the planner asks (no HTTP). */
function registry(
  configured: string[],
  circuits: Record<string, CircuitState> = {},
  retryAfterMs = 12_000,
  env: Record<string, string> = {},
) {
  const config = loadConfig({
    ...env,
    ...(configured.includes('kimi') ? { KIMI_API_KEY: 'sk-kimi-unit-test-key' } : {}),
    ...(configured.includes('glm') ? { GLM_API_KEY: 'glm-unit-test-key' } : {}),
  })
  const adapters = new Map<string, ProviderAdapter>()
  for (const p of config.providers.filter((p) => p.configured)) {
    adapters.set(p.name, {
      name: p.name,
      config: p,
      circuitState: () => circuits[p.name] ?? 'closed',
      retryAfterMs: () => (circuits[p.name] === 'open' ? retryAfterMs : 0),
    } as ProviderAdapter)
  }
  const reg: ProviderRegistry = {
    get: (name) => adapters.get(name),
    require(name) {
      const a = adapters.get(name)
      if (a) return a
      throw new AppError(config.providers.some((p) => p.name === name) ? 'PROVIDER_NOT_CONFIGURED' : 'UNKNOWN_PROVIDER')
    },
    list: () => [...adapters.values()],
    close: async () => {},
  }
  return { providers: config.providers, reg }
}

const code = (c: string) => (err: unknown) => isAppError(err) && err.code === c

describe('planUpload', () => {
  const { providers, reg } = registry(['kimi', 'glm'])

  test('a named provider: its default purpose and per-file limit', () => {
    const plan = planUpload(providers, reg, { provider: 'kimi', filename: 'a.pdf' })
    assert.equal(plan.auto, false)
    assert.equal(plan.extension, 'pdf')
    assert.deepEqual(
      plan.candidates.map((c) => [c.config.name, c.purpose, c.maxBytes]),
      [['kimi', 'file-extract', 100 * MB]],
    )
    assert.equal(plan.maxBytes, 100 * MB)
  })

  test('GLM images have their own 5 MB cap', () => {
    const plan = planUpload(providers, reg, { provider: 'glm', filename: 'photo.PNG' })
    assert.equal(plan.maxBytes, 5 * MB)
    assert.equal(limitFor(providers.find((p) => p.name === 'glm') as never, 'file-extract', 'pdf'), 20 * MB)
  })

  test('GLM without a purpose is agent, which takes .txt (GLM_DEFAULT_PURPOSE)', () => {
    const plan = planUpload(providers, reg, { provider: 'glm', filename: 'notes.txt' })
    assert.deepEqual(
      plan.candidates.map((c) => [c.purpose, c.maxBytes]),
      [['agent', 20 * MB]],
    )
  })

  test('refusals: unknown provider, unsupported purpose, disallowed extension, unconfigured provider', () => {
    assert.throws(
      () => planUpload(providers, reg, { provider: 'nope', filename: 'a.pdf' }),
      (err: unknown) => {
        assert.ok(isAppError(err) && err.code === 'UNKNOWN_PROVIDER')
        assert.deepEqual(err.extensions.allowed, ['auto', 'kimi', 'glm', 'openai', 'anthropic', 'gemini'])
        return true
      },
    )
    assert.throws(
      () => planUpload(providers, reg, { provider: 'kimi', purpose: 'fine-tune', filename: 'a.jsonl' }),
      code('UNSUPPORTED_PURPOSE'),
    )
    assert.throws(
      () => planUpload(providers, reg, { provider: 'kimi', filename: 'run.exe' }),
      (err: unknown) => {
        assert.ok(isAppError(err) && err.code === 'UNSUPPORTED_FILE_TYPE')
        assert.equal(err.extensions.provider, 'kimi')
        assert.equal(err.extensions.extension, 'exe')
        return true
      },
    )
    assert.throws(
      () => planUpload(providers, reg, { provider: 'glm', filename: 'noext' }),
      code('UNSUPPORTED_FILE_TYPE'),
    )
    const onlyKimi = registry(['kimi'])
    assert.throws(
      () => planUpload(onlyKimi.providers, onlyKimi.reg, { provider: 'glm', filename: 'a.pdf' }),
      code('PROVIDER_NOT_CONFIGURED'),
    )
  })

  test('auto: smallest limit first (GLM, then Kimi), only providers that take the file', () => {
    const plan = planUpload(providers, reg, { provider: 'auto', filename: 'a.pdf' })
    assert.equal(plan.auto, true)
    assert.deepEqual(
      plan.candidates.map((c) => c.config.name),
      ['glm', 'kimi'],
    )
    assert.equal(plan.maxBytes, 100 * MB)
    // GLM takes no .py for agent: Kimi only
    const py = planUpload(providers, reg, { provider: 'auto', filename: 'x.py' })
    assert.deepEqual(
      py.candidates.map((c) => c.config.name),
      ['kimi'],
    )
    // a purpose only GLM has
    const agent = planUpload(providers, reg, { provider: 'auto', purpose: 'agent', filename: 'x.pdf' })
    assert.deepEqual(
      agent.candidates.map((c) => c.config.name),
      ['glm'],
    )
    // both document batch: GLM first (the operator's 20 MB), then Kimi (100 MB)
    const batch = planUpload(providers, reg, { provider: 'auto', purpose: 'batch', filename: 'x.jsonl' })
    assert.deepEqual(
      batch.candidates.map((c) => [c.config.name, c.maxBytes]),
      [
        ['glm', 20 * MB],
        ['kimi', 100 * MB],
      ],
    )
    // nobody takes it: the first provider's refusal
    assert.throws(
      () => planUpload(providers, reg, { provider: 'auto', filename: 'x.exe' }),
      code('UNSUPPORTED_FILE_TYPE'),
    )
  })

  test('auto skips an open circuit, and answers PROVIDER_UNAVAILABLE with Retry-After when all are open', () => {
    const glmOpen = registry(['kimi', 'glm'], { glm: 'open' })
    const plan = planUpload(glmOpen.providers, glmOpen.reg, { provider: 'auto', filename: 'a.pdf' })
    assert.deepEqual(
      plan.candidates.map((c) => c.config.name),
      ['kimi'],
    )
    const halfOpen = registry(['kimi', 'glm'], { glm: 'half_open' })
    assert.equal(
      planUpload(halfOpen.providers, halfOpen.reg, { provider: 'auto', filename: 'a.pdf' }).candidates.length,
      2,
    )
    const allOpen = registry(['kimi', 'glm'], { glm: 'open', kimi: 'open' }, 12_500)
    assert.throws(
      () => planUpload(allOpen.providers, allOpen.reg, { provider: 'auto', filename: 'a.pdf' }),
      (err: unknown) => {
        assert.ok(isAppError(err) && err.code === 'PROVIDER_UNAVAILABLE')
        assert.equal(err.retryAfterSeconds, 13)
        return true
      },
    )
    const none = registry([])
    assert.throws(
      () => planUpload(none.providers, none.reg, { provider: 'auto', filename: 'a.pdf' }),
      code('PROVIDER_NOT_CONFIGURED'),
    )
  })
})

describe('planUpload with AUTO_PROVIDERS', () => {
  const plan = (env: Record<string, string>, filename = 'a.pdf', circuits: Record<string, CircuitState> = {}) => {
    const { providers, reg } = registry(['kimi', 'glm'], circuits, 12_000, env)
    const config = loadConfig({ ...env, KIMI_API_KEY: 'sk-kimi-unit-test-key', GLM_API_KEY: 'glm-unit-test-key' })
    return planUpload(providers, reg, { provider: 'auto', filename }, config.autoProviders)
  }
  const names = (p: ReturnType<typeof plan>) => p.candidates.map((c) => c.config.name)

  test('its order, not the size of the limits, decides', () => {
    assert.deepEqual(names(plan({ AUTO_PROVIDERS: 'kimi,glm' })), ['kimi', 'glm'])
    assert.deepEqual(names(plan({})), ['glm', 'kimi'], 'unset: glm,kimi')
  })

  test('a provider left out of it is never chosen; an unconfigured one is skipped', () => {
    assert.deepEqual(names(plan({ AUTO_PROVIDERS: 'kimi' })), ['kimi'])
    assert.deepEqual(names(plan({ AUTO_PROVIDERS: 'openai,glm' })), ['glm'], 'openai has no key here')
    const anthropic = { AUTO_PROVIDERS: 'anthropic,glm,kimi', ANTHROPIC_API_KEY: 'sk-ant-unit-test-key' }
    assert.deepEqual(names(plan(anthropic)), ['anthropic', 'glm', 'kimi'])
    assert.throws(() => plan({ AUTO_PROVIDERS: 'openai' }), code('PROVIDER_NOT_CONFIGURED'))
  })

  test('purposes that do not fit and open circuits are skipped in its order too', () => {
    const anthropic = { AUTO_PROVIDERS: 'anthropic,kimi,glm', ANTHROPIC_API_KEY: 'sk-ant-unit-test-key' }
    // Anthropic takes any type under its one purpose; GLM's agent takes no .py
    assert.deepEqual(names(plan(anthropic, 'x.py')), ['anthropic', 'kimi'])
    assert.deepEqual(names(plan(anthropic, 'a.pdf', { anthropic: 'open' })), ['kimi', 'glm'])
  })
})

describe('candidatesFor', () => {
  const { providers, reg } = registry(['kimi', 'glm'])
  const plan = planUpload(providers, reg, { provider: 'auto', filename: 'a.pdf' })

  test('drops providers too small for the body', () => {
    assert.deepEqual(
      candidatesFor(plan, 20 * MB).map((c) => c.config.name),
      ['glm', 'kimi'],
    )
    assert.deepEqual(
      candidatesFor(plan, 20 * MB + 1).map((c) => c.config.name),
      ['kimi'],
    )
  })

  test('FILE_TOO_LARGE naming the largest limit when none fits', () => {
    assert.throws(
      () => candidatesFor(plan, 100 * MB + 1),
      (err: unknown) => {
        assert.ok(isAppError(err) && err.code === 'FILE_TOO_LARGE')
        assert.deepEqual(err.extensions, { provider: 'kimi', limit_bytes: 100 * MB })
        return true
      },
    )
  })
})

describe('provider facts, as documented (read 2026-11-27)', () => {
  const { providers, reg } = registry(['kimi', 'glm'])
  const plan = (provider: string, filename: string, purpose?: string) =>
    planUpload(providers, reg, { provider, filename, ...(purpose ? { purpose } : {}) })
  const refusedType = (provider: string, filename: string, purpose?: string) =>
    assert.throws(
      () => plan(provider, filename, purpose),
      code('UNSUPPORTED_FILE_TYPE'),
      `${provider} ${purpose} ${filename}`,
    )
  const accepted = (provider: string, filename: string, purpose?: string) =>
    assert.equal(plan(provider, filename, purpose).candidates.length, 1, `${provider} ${purpose} ${filename}`)

  test('row 1: GLM caps per purpose apply beneath GLM_MAX_FILE_BYTES', () => {
    const raised = registry(['glm'], {}, 0, { GLM_MAX_FILE_BYTES: String(100 * MB) })
    const limit = (purpose: string, filename: string) =>
      planUpload(raised.providers, raised.reg, { provider: 'glm', purpose, filename }).maxBytes
    assert.equal(limit('batch', 'in.jsonl'), 100 * MB)
    assert.equal(limit('file-extract', 'a.pdf'), 50 * MB)
    assert.equal(limit('agent', 'a.pdf'), 20 * MB)
    assert.equal(limit('code-interpreter', 'a.pdf'), 20 * MB)
    assert.equal(limit('agent', 'a.png'), 5 * MB)
    assert.equal(limit('file-extract', 'a.jpg'), 5 * MB)
    // The default operator cap (20 MB) stays the ceiling.
    assert.equal(plan('glm', 'in.jsonl', 'batch').maxBytes, 20 * MB)
    assert.equal(plan('glm', 'a.pdf', 'file-extract').maxBytes, 20 * MB)
  })

  test("the same rule for Kimi: KIMI_MAX_FILE_BYTES above Kimi's documented 100 MB changes nothing", () => {
    const raised = registry(['kimi'], {}, 0, { KIMI_MAX_FILE_BYTES: String(200 * MB) })
    const limit = planUpload(raised.providers, raised.reg, { provider: 'kimi', filename: 'a.pdf' }).maxBytes
    assert.equal(limit, 100 * MB)
    const lowered = registry(['kimi'], {}, 0, { KIMI_MAX_FILE_BYTES: String(10 * MB) })
    assert.equal(planUpload(lowered.providers, lowered.reg, { provider: 'kimi', filename: 'a.pdf' }).maxBytes, 10 * MB)
  })

  test('row 2: GLM extensions per purpose, nothing wider', () => {
    for (const ext of ['pdf', 'docx', 'doc', 'xls', 'xlsx', 'ppt', 'pptx', 'png', 'jpg', 'jpeg', 'csv'])
      accepted('glm', `a.${ext}`, 'file-extract')
    for (const ext of ['txt', 'md', 'bmp', 'gif', 'webp', 'json']) refusedType('glm', `a.${ext}`, 'file-extract')
    for (const purpose of ['agent', 'code-interpreter']) {
      for (const ext of ['pdf', 'docx', 'doc', 'xls', 'xlsx', 'txt', 'png', 'jpg', 'jpeg', 'csv'])
        accepted('glm', `a.${ext}`, purpose)
      for (const ext of ['ppt', 'pptx', 'md', 'json', 'py', 'svg', 'avif', 'ico'])
        refusedType('glm', `a.${ext}`, purpose)
    }
    accepted('glm', 'a.mp3', 'voice-clone-input')
    accepted('glm', 'a.wav', 'voice-clone-input')
    refusedType('glm', 'a.m4a', 'voice-clone-input')
    accepted('glm', 'a.jsonl', 'batch')
    refusedType('glm', 'a.json', 'batch')
  })

  test('row 4: Kimi documents batch (.jsonl, 100 MB)', () => {
    const batch = plan('kimi', 'in.jsonl', 'batch')
    assert.deepEqual(
      batch.candidates.map((c) => [c.purpose, c.maxBytes]),
      [['batch', 100 * MB]],
    )
    refusedType('kimi', 'in.json', 'batch')
  })

  test("row 5: Kimi's documented extension lists, nothing wider", () => {
    for (const ext of ['dot', 'apng', 'jfif', 'pjpeg', 'pjp', 'svgz', 'xbm', 'dib', 'pdf', 'tsx', 'py3', 'jpeg'])
      accepted('kimi', `a.${ext}`, 'file-extract')
    for (const ext of ['rs', 'rb', 'sql', 'toml', 'xml', 'jsonl', 'markdown', 'htm', 'vue', 'mjs'])
      refusedType('kimi', `a.${ext}`, 'file-extract')
    for (const ext of ['png', 'jpeg', 'jpg', 'webp', 'gif']) accepted('kimi', `a.${ext}`, 'image')
    for (const ext of ['bmp', 'svg', 'tiff', 'avif', 'ico']) refusedType('kimi', `a.${ext}`, 'image')
    for (const ext of ['mp4', 'mpeg', 'mov', 'avi', 'flv', 'mpg', 'webm', 'wmv', '3gp'])
      accepted('kimi', `a.${ext}`, 'video')
    refusedType('kimi', 'a.mkv', 'video')
  })

  test('facts follow the base URL: api.z.ai documents agent differently from open.bigmodel.cn', () => {
    const intl = registry(['glm'], {}, 0, {
      GLM_BASE_URL: 'https://api.z.ai/api/paas/v4',
      GLM_MAX_FILE_BYTES: String(100 * MB),
    })
    const glm = intl.providers.find((p) => p.name === 'glm')
    assert.equal(glm?.docs?.region, 'international (api.z.ai)')
    const agent = (filename: string) =>
      planUpload(intl.providers, intl.reg, { provider: 'glm', purpose: 'agent', filename })
    assert.equal(agent('a.pdf').maxBytes, 100 * MB)
    assert.equal(agent('a.ppt').candidates.length, 1)
    assert.throws(() => agent('a.csv'), code('UNSUPPORTED_FILE_TYPE'))
    assert.equal(glm?.purposes.agent?.maxFiles, 100)
    const china = providers.find((p) => p.name === 'glm')
    assert.equal(china?.docs?.region, 'China (open.bigmodel.cn)')
    assert.equal(china?.purposes.agent?.maxFiles, 1000)
  })

  test('a purpose named like an Object.prototype member is unsupported, not a crash', () => {
    for (const purpose of ['toString', '__proto__', 'hasOwnProperty'])
      assert.throws(() => plan('glm', 'a.pdf', purpose), code('UNSUPPORTED_PURPOSE'))
  })
})

describe('planUpload with a providers allowlist', () => {
  const { providers, reg } = registry(['kimi', 'glm'])

  test('a named provider outside it is 403 FORBIDDEN, naming the allowed ones', () => {
    assert.throws(
      () => planUpload(providers, reg, { provider: 'glm', filename: 'a.txt', allowed: ['kimi'] }),
      (err: unknown) => code('FORBIDDEN')(err) && (err as AppError).extensions.allowed_providers?.toString() === 'kimi',
    )
    const plan = planUpload(providers, reg, { provider: 'kimi', filename: 'a.txt', allowed: ['kimi'] })
    assert.equal(plan.candidates[0]?.config.name, 'kimi')
  })

  test('auto chooses among the allowed only; none of them in AUTO_PROVIDERS is 403', () => {
    const plan = planUpload(providers, reg, { provider: 'auto', filename: 'a.txt', allowed: ['kimi'] }, ['glm', 'kimi'])
    assert.deepEqual(
      plan.candidates.map((c) => c.config.name),
      ['kimi'],
    )
    const every = planUpload(providers, reg, { provider: 'auto', filename: 'a.txt', allowed: null }, ['glm', 'kimi'])
    assert.deepEqual(
      every.candidates.map((c) => c.config.name),
      ['glm', 'kimi'],
    )
    assert.throws(
      () => planUpload(providers, reg, { provider: 'auto', filename: 'a.txt', allowed: [] }, ['glm', 'kimi']),
      code('FORBIDDEN'),
    )
  })
})
