/** Provider resolution on its own: the catalogue and the provider variables, without the rest of the configuration. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfig } from '../../src/config.js'
import { anthropicFacts } from '../../src/providers/anthropic-facts.js'
import { geminiFacts } from '../../src/providers/gemini-facts.js'
import { glmFacts } from '../../src/providers/glm-facts.js'
import { kimiFacts } from '../../src/providers/kimi-facts.js'
import { openAiFacts } from '../../src/providers/openai-facts.js'
import { resolveAutoProviders, resolveProviders } from '../../src/providers/resolve.js'

const MB = 1024 * 1024

describe('resolveProviders', () => {
  test('with nothing set: every built-in kind with its documented defaults, unconfigured', () => {
    const problems: string[] = []
    const [kimi, glm, openai, anthropic, gemini, ...rest] = resolveProviders({}, problems)
    assert.deepEqual(problems, [])
    assert.equal(rest.length, 0)
    assert.equal(kimi?.name, 'kimi')
    assert.equal(kimi?.configured, false)
    assert.equal(kimi?.baseUrl, kimiFacts().baseUrl)
    assert.equal(kimi?.maxFileBytes, kimiFacts().maxFileBytes)
    assert.equal(kimi?.defaultPurpose, kimiFacts().defaultPurpose)
    assert.equal(glm?.baseUrl, glmFacts().baseUrl)
    assert.equal(glm?.defaultPurpose, glmFacts().defaultPurpose)
    assert.equal(glm?.maxFiles, null, 'GLM has no account cap unless the operator sets one')
    assert.equal(openai?.name, 'openai')
    assert.equal(openai?.kind, 'openai')
    assert.equal(openai?.configured, false)
    assert.deepEqual(openai?.expiresAfter, openAiFacts().expiresAfter)
    assert.equal(openai?.defaultPurpose, 'user_data')
    assert.equal(openai?.maxFileBytes, 8 * 1024 * MB, '512 MB in one request, to 8 GB through the Uploads API')
    assert.equal(anthropic?.name, 'anthropic')
    assert.equal(anthropic?.baseUrl, 'https://api.anthropic.com/v1')
    assert.equal(anthropic?.defaultPurpose, 'file')
    assert.equal(anthropic?.maxFileBytes, 500 * MB)
    assert.equal(anthropic?.purposes.file?.content, false, 'uploaded Anthropic files are not downloadable')
    assert.equal(gemini?.name, 'gemini')
    assert.equal(gemini?.kind, 'gemini')
    assert.equal(gemini?.configured, false)
    assert.equal(gemini?.baseUrl, 'https://generativelanguage.googleapis.com')
    assert.equal(gemini?.maxFileBytes, geminiFacts().maxFileBytes)
    assert.equal(gemini?.maxTotalBytes, 20 * 1024 * 1024 * 1024, '20 GB a project')
    assert.equal(gemini?.maxFiles, null, 'no file count is documented')
    assert.equal(gemini?.defaultPurpose, 'file')
  })

  test('OPENAI_* and ANTHROPIC_*: key, base URL and caps; a key configures the provider', () => {
    const problems: string[] = []
    const resolved = resolveProviders(
      {
        OPENAI_API_KEY: 'sk-openai-0123456789',
        OPENAI_BASE_URL: 'http://127.0.0.1:9/v1/',
        OPENAI_MAX_FILE_BYTES: 1000,
        OPENAI_MAX_FILES: 7,
        OPENAI_MAX_TOTAL_BYTES: 0,
        ANTHROPIC_API_KEY: 'sk-ant-0123456789',
        ANTHROPIC_MAX_TOTAL_BYTES: 5000,
      },
      problems,
    )
    assert.deepEqual(problems, [])
    const openai = resolved.find((p) => p.name === 'openai')
    assert.equal(openai?.configured, true)
    assert.equal(openai?.baseUrl, 'http://127.0.0.1:9/v1')
    assert.equal(openai?.maxFileBytes, 1000)
    assert.equal(openai?.maxFiles, 7)
    assert.equal(openai?.maxTotalBytes, null, '0 = no cap')
    const anthropic = resolved.find((p) => p.name === 'anthropic')
    assert.equal(anthropic?.configured, true)
    assert.equal(anthropic?.maxTotalBytes, 5000)
    assert.equal(anthropic?.maxFileBytes, 500 * MB)
  })

  test("EXTRA_PROVIDERS with a kind: a second account inheriting that kind's documented facts", () => {
    const problems: string[] = []
    const resolved = resolveProviders(
      {
        EXTRA_PROVIDERS: JSON.stringify([
          { name: 'claude-eu', kind: 'anthropic', base_url: 'http://127.0.0.1:9/v1', api_key: 'k1', max_files: 3 },
          { name: 'kimi-cn', kind: 'kimi', base_url: 'https://api.moonshot.cn/v1', api_key: 'k2' },
          { name: 'oa2', kind: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'k3' },
          { name: 'compat', base_url: 'http://127.0.0.1:9/v1', api_key: 'k4' },
        ]),
      },
      problems,
    )
    assert.deepEqual(problems, [])
    const byName = (n: string) => resolved.find((p) => p.name === n)
    assert.equal(byName('claude-eu')?.kind, 'anthropic')
    assert.deepEqual(Object.keys(byName('claude-eu')?.purposes ?? {}), ['file'])
    assert.equal(byName('claude-eu')?.maxFiles, 3)
    assert.equal(byName('claude-eu')?.maxTotalBytes, anthropicFacts().maxTotalBytes)
    assert.equal(byName('kimi-cn')?.kind, 'kimi')
    assert.match(byName('kimi-cn')?.docs?.region ?? '', /China/)
    assert.equal(byName('kimi-cn')?.maxFiles, 1000)
    assert.deepEqual(byName('oa2')?.expiresAfter, openAiFacts().expiresAfter, "kind openai: OpenAI's own facts")
    assert.equal(byName('compat')?.kind, 'openai')
    assert.equal(byName('compat')?.expiresAfter, undefined, 'no kind: a generic OpenAI-compatible API')
    assert.ok(Object.hasOwn(byName('compat')?.purposes ?? {}, 'file-extract'))
  })

  test('EXTRA_PROVIDERS kind problems: unknown kind, purposes with a kind, a purpose the kind lacks, reserved names', () => {
    const problems: string[] = []
    resolveProviders(
      {
        EXTRA_PROVIDERS: JSON.stringify([{ name: 'x', kind: 'mistral', base_url: 'http://x' }]),
      },
      problems,
    )
    assert.ok(
      problems.some((p) => p.startsWith('EXTRA_PROVIDERS.0.kind')),
      problems.join('\n'),
    )
    const more: string[] = []
    resolveProviders(
      {
        EXTRA_PROVIDERS: JSON.stringify([
          { name: 'a', kind: 'anthropic', base_url: 'http://x', purposes: ['batch'] },
          { name: 'b', kind: 'glm', base_url: 'http://x', default_purpose: 'file' },
          { name: 'openai', base_url: 'http://x' },
          { name: 'anthropic', base_url: 'http://x' },
          { name: 'gemini', base_url: 'http://x' },
        ]),
      },
      more,
    )
    assert.equal(more.length, 5, more.join('\n'))
    assert.match(more[0] ?? '', /"a" names kind anthropic, which brings its documented purposes/)
    assert.match(more[1] ?? '', /"b" default_purpose is not a glm purpose/)
    for (const [i, name] of ['openai', 'anthropic', 'gemini'].entries()) {
      assert.match(more[2 + i] ?? '', new RegExp(`"${name}" is reserved or repeated`))
    }
  })

  test('the same providers loadConfig gives for the same variables', () => {
    const env = {
      KIMI_API_KEY: 'sk-kimi-0123456789',
      GLM_BASE_URL: 'https://api.z.ai/api/paas/v4/',
      GLM_MAX_FILES: 50,
      ALLOWED_EXTENSIONS: 'pdf,txt',
      EXTRA_PROVIDERS: JSON.stringify([{ name: 'acme', base_url: 'http://127.0.0.1:9/v1/', purposes: ['batch'] }]),
    }
    const problems: string[] = []
    const resolved = resolveProviders(env, problems)
    assert.deepEqual(problems, [])
    assert.deepEqual(resolved, loadConfig({ ...env, GLM_MAX_FILES: '50' }).providers)
    assert.equal(resolved[1]?.baseUrl, 'https://api.z.ai/api/paas/v4', 'trailing slashes go')
    assert.equal(resolved.at(-1)?.name, 'acme', 'extras come after the built-in providers')
    assert.deepEqual(
      resolved.at(-1)?.purposes.batch?.extensions,
      ['pdf', 'txt'],
      'ALLOWED_EXTENSIONS narrows extras too',
    )
  })

  test('every problem is pushed onto the list, none thrown', () => {
    const problems: string[] = []
    resolveProviders(
      {
        KIMI_DEFAULT_PURPOSE: 'nope',
        EXTRA_PROVIDERS: JSON.stringify([
          { name: 'glm', base_url: 'http://x' },
          { name: 'b', base_url: 'http://x', purposes: ['batch'], default_purpose: 'vision' },
        ]),
      },
      problems,
    )
    assert.equal(problems.length, 3, problems.join('\n'))
    assert.match(problems[0] ?? '', /^KIMI_DEFAULT_PURPOSE: "nope" is not a kimi purpose/)
    assert.match(problems[1] ?? '', /"glm" is reserved or repeated/)
    assert.match(problems[2] ?? '', /"b" default_purpose is not among its purposes/)
  })
})

describe('resolveAutoProviders', () => {
  const providers = resolveProviders(
    { EXTRA_PROVIDERS: JSON.stringify([{ name: 'acme', base_url: 'http://127.0.0.1:9/v1' }]) },
    [],
  )

  test('unset: glm, then kimi (the behaviour before AUTO_PROVIDERS)', () => {
    const problems: string[] = []
    assert.deepEqual(resolveAutoProviders(undefined, providers, problems), ['glm', 'kimi'])
    assert.deepEqual(problems, [])
  })

  test('any known providers, in the order given, spaces ignored', () => {
    const problems: string[] = []
    assert.deepEqual(resolveAutoProviders(' anthropic, acme ,openai,glm', providers, problems), [
      'anthropic',
      'acme',
      'openai',
      'glm',
    ])
    assert.deepEqual(problems, [])
  })

  test('unknown and repeated names are problems, reported with the rest of the configuration', () => {
    const problems: string[] = []
    resolveAutoProviders('glm,nope,glm,auto', providers, problems)
    assert.equal(problems.length, 3, problems.join('\n'))
    assert.match(problems[0] ?? '', /^AUTO_PROVIDERS: "nope" is not a known provider/)
    assert.match(problems[1] ?? '', /^AUTO_PROVIDERS: "glm" is named twice/)
    assert.match(problems[2] ?? '', /^AUTO_PROVIDERS: "auto" is not a known provider/)
    const all = (() => {
      try {
        loadConfig({ AUTO_PROVIDERS: 'nope', EXTRA_PROVIDERS: '[{"name":"openai","base_url":"http://x"}]' })
        return []
      } catch (err) {
        return (err as { problems: string[] }).problems
      }
    })()
    assert.ok(
      all.some((p) => p.startsWith('AUTO_PROVIDERS')),
      all.join('\n'),
    )
    assert.ok(
      all.some((p) => p.includes('"openai" is reserved')),
      'one message lists every problem',
    )
  })
})
