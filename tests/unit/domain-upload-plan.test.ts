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
function registry(configured: string[], circuits: Record<string, CircuitState> = {}, retryAfterMs = 12_000) {
  const config = loadConfig({
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

  test('refusals: unknown provider, unsupported purpose, disallowed extension, unconfigured provider', () => {
    assert.throws(
      () => planUpload(providers, reg, { provider: 'nope', filename: 'a.pdf' }),
      (err: unknown) => {
        assert.ok(isAppError(err) && err.code === 'UNKNOWN_PROVIDER')
        assert.deepEqual(err.extensions.allowed, ['auto', 'kimi', 'glm'])
        return true
      },
    )
    assert.throws(
      () => planUpload(providers, reg, { provider: 'kimi', purpose: 'batch', filename: 'a.jsonl' }),
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
    // GLM does not take .py for file-extract: Kimi only
    const py = planUpload(providers, reg, { provider: 'auto', filename: 'x.py' })
    assert.deepEqual(
      py.candidates.map((c) => c.config.name),
      ['kimi'],
    )
    // a purpose only GLM has
    const batch = planUpload(providers, reg, { provider: 'auto', purpose: 'batch', filename: 'x.jsonl' })
    assert.deepEqual(
      batch.candidates.map((c) => c.config.name),
      ['glm'],
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
