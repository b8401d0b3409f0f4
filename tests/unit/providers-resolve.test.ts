/** Provider resolution on its own: the catalogue and the provider variables, without the rest of the configuration. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfig } from '../../src/config.js'
import { geminiFacts } from '../../src/providers/gemini-facts.js'
import { glmFacts } from '../../src/providers/glm-facts.js'
import { kimiFacts } from '../../src/providers/kimi-facts.js'
import { resolveProviders } from '../../src/providers/resolve.js'

describe('resolveProviders', () => {
  test('with nothing set: kimi, glm and gemini with their documented defaults, unconfigured', () => {
    const problems: string[] = []
    const [kimi, glm, gemini, ...rest] = resolveProviders({}, problems)
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
    assert.equal(gemini?.name, 'gemini')
    assert.equal(gemini?.kind, 'gemini')
    assert.equal(gemini?.configured, false)
    assert.equal(gemini?.baseUrl, 'https://generativelanguage.googleapis.com')
    assert.equal(gemini?.maxFileBytes, geminiFacts().maxFileBytes)
    assert.equal(gemini?.maxTotalBytes, 20 * 1024 * 1024 * 1024, '20 GB a project')
    assert.equal(gemini?.maxFiles, null, 'no file count is documented')
    assert.equal(gemini?.defaultPurpose, 'file')
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
    assert.equal(resolved[2]?.name, 'gemini')
    assert.equal(resolved[3]?.name, 'acme')
    assert.deepEqual(resolved[3]?.purposes.batch?.extensions, ['pdf', 'txt'], 'ALLOWED_EXTENSIONS narrows extras too')
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
