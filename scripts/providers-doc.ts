/**
 * `npm run docs:providers`: writes docs/providers.md from the provider facts in code
 * (src/providers/kimi-facts.ts, glm-facts.ts) and from the error classifiers themselves, so the
 * page users read is the table filegate enforces. `--check` compares instead of writing (a unit
 * test does the same).
 */
import { readFile, writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { errorCatalog } from '../src/errors.js'
import { DOCS_READ_ON, type ProviderFacts } from '../src/providers/catalog.js'
import { classifyFailure, type ErrorDialect, mapUpstreamError } from '../src/providers/errors.js'
import { geminiErrors } from '../src/providers/gemini.js'
import { geminiFacts } from '../src/providers/gemini-facts.js'
import { glmDialect } from '../src/providers/glm.js'
import { glmFacts } from '../src/providers/glm-facts.js'
import { kimiDialect } from '../src/providers/kimi.js'
import { kimiFacts } from '../src/providers/kimi-facts.js'

export const providersDocPath = resolve(fileURLToPath(new URL('..', import.meta.url)), 'docs/providers.md')

const MB = 1024 * 1024
const GB = 1024 * MB
function size(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '—'
  if (bytes % GB === 0) return `${bytes / GB} GB`
  return bytes % MB === 0 ? `${bytes / MB} MB` : `${bytes} B`
}
const cell = (text: string) => text.replaceAll('|', '\\|')

function purposeTable(facts: ProviderFacts): string {
  const rows = Object.entries(facts.purposes).map(([purpose, rule]) => {
    const extensions = rule.extensions ? rule.extensions.map((e) => `.${e}`).join(' ') : 'any'
    const byCap = new Map<number, string[]>()
    for (const [ext, bytes] of Object.entries(rule.maxBytesByExtension ?? {})) {
      byCap.set(bytes, [...(byCap.get(bytes) ?? []), `.${ext}`])
    }
    const perExtension = [...byCap].map(([bytes, exts]) => `${exts.join(' ')}: ${size(bytes)}`)
    const cap = [size(rule.documentedMaxFileBytes ?? facts.documentedMaxFileBytes), ...perExtension].join('; ')
    const source = rule.source ? `[doc](${encodeURI(rule.source)})` : '—'
    return `| \`${purpose}\` | ${extensions} | ${cap} | ${rule.maxFiles?.toLocaleString('en-US') ?? '—'} | ${rule.content ? 'yes' : 'no (409, no call)'} | ${source} | ${cell(rule.note ?? '')} |`
  })
  return [
    '| purpose | extensions | documented size cap | files per account | content | source | where the docs are silent or disagree |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n')
}

function accountLines(facts: ProviderFacts, variable: string): string {
  const account = [
    facts.maxFiles !== null ? `${facts.maxFiles.toLocaleString('en-US')} files` : undefined,
    facts.maxTotalBytes !== null ? `${size(facts.maxTotalBytes)} in all` : undefined,
  ].filter(Boolean)
  return [
    `- Default purpose: \`${facts.defaultPurpose}\` (\`${variable}_DEFAULT_PURPOSE\`).`,
    `- Operator's per-file cap \`${variable}_MAX_FILE_BYTES\`: ${size(facts.maxFileBytes)} by default. The documented caps below apply beneath it: a file is accepted up to the smaller of the two.`,
    `- Provider-wide documented per-file cap: ${size(facts.documentedMaxFileBytes)}.${account.length ? ` Account: ${account.join(', ')} (\`${variable}_MAX_FILES\`, \`${variable}_MAX_TOTAL_BYTES\`).` : ''}`,
    `- Pages read: ${(facts.docs?.sources ?? []).map((u) => `<${encodeURI(u)}>`).join(', ')}.`,
  ].join('\n')
}

interface ErrorCase {
  provider: 'kimi' | 'glm' | 'gemini'
  status: number
  code?: string
  type?: string
  message?: string
  meaning: string
}

const errorCases: ErrorCase[] = [
  { provider: 'glm', status: 429, code: '1302', meaning: 'too many concurrent requests' },
  { provider: 'glm', status: 429, code: '1303', meaning: 'requests too frequent' },
  { provider: 'glm', status: 429, code: '1305', meaning: 'traffic limit triggered' },
  { provider: 'glm', status: 429, code: '1312', meaning: 'model overloaded, try later' },
  { provider: 'glm', status: 429, code: '1304', meaning: 'daily call cap reached' },
  { provider: 'glm', status: 429, code: '1313', meaning: 'fair-use restriction on the account' },
  { provider: 'glm', status: 429, code: '1113', meaning: 'account in arrears' },
  { provider: 'glm', status: 429, code: '1308', meaning: 'usage limit reached, resets at next_flush_time' },
  { provider: 'glm', status: 429, code: '1309', meaning: 'GLM Coding Plan expired' },
  { provider: 'glm', status: 429, code: '1310', meaning: 'weekly/monthly limit reached' },
  { provider: 'glm', status: 429, code: '1112', meaning: 'account locked' },
  { provider: 'glm', status: 401, code: '1000', meaning: 'authentication failed' },
  { provider: 'glm', status: 434, code: '434', meaning: 'no permission for the files API' },
  { provider: 'glm', status: 435, code: '435', meaning: 'file larger than 100 MB' },
  { provider: 'glm', status: 400, code: '1301', meaning: 'unsafe content' },
  { provider: 'glm', status: 500, code: '500', meaning: 'server error' },
  { provider: 'kimi', status: 429, type: 'rate_limit_reached_error', meaning: 'rate limit' },
  { provider: 'kimi', status: 429, type: 'engine_overloaded_error', meaning: 'overloaded' },
  { provider: 'kimi', status: 429, type: 'exceeded_current_quota_error', meaning: 'out of credit' },
  {
    provider: 'kimi',
    status: 403,
    type: 'exceeded_current_quota_error',
    message: 'insufficient balance',
    meaning: 'insufficient balance',
  },
  { provider: 'kimi', status: 403, type: 'permission_denied_error', meaning: 'API not open to this key' },
  { provider: 'kimi', status: 401, type: 'invalid_authentication_error', meaning: 'bad key' },
  {
    provider: 'kimi',
    status: 400,
    type: 'invalid_request_error',
    message: 'exceeded the max file count 1000',
    meaning: 'file count',
  },
  { provider: 'kimi', status: 400, type: 'content_filter', meaning: 'content refused' },
  { provider: 'kimi', status: 500, type: 'server_error', meaning: 'server error' },
  { provider: 'gemini', status: 429, type: 'RESOURCE_EXHAUSTED', meaning: 'rate limit exceeded' },
  {
    provider: 'gemini',
    status: 429,
    type: 'RESOURCE_EXHAUSTED',
    message: 'Storage quota for the project has been exhausted.',
    meaning: 'not documented; taken as the 20 GB project storage being full',
  },
  { provider: 'gemini', status: 503, type: 'UNAVAILABLE', meaning: 'overloaded or down' },
  { provider: 'gemini', status: 500, type: 'INTERNAL', meaning: 'server error' },
  { provider: 'gemini', status: 504, type: 'DEADLINE_EXCEEDED', meaning: 'processing timeout' },
  {
    provider: 'gemini',
    status: 400,
    type: 'INVALID_ARGUMENT',
    message: 'API key not valid. Please pass a valid API key.',
    meaning: 'bad key',
  },
  { provider: 'gemini', status: 400, type: 'FAILED_PRECONDITION', meaning: 'billing not enabled / region' },
  { provider: 'gemini', status: 403, type: 'PERMISSION_DENIED', meaning: 'key lacks permission' },
  { provider: 'gemini', status: 400, type: 'INVALID_ARGUMENT', meaning: 'malformed request' },
]

function errorTable(): string {
  const dialects: Record<ErrorCase['provider'], ErrorDialect> = {
    kimi: kimiDialect.classifyError,
    glm: glmDialect.classifyError,
    gemini: geminiErrors,
  }
  const label = { kimi: 'Kimi', glm: 'GLM', gemini: 'Gemini' }
  const yes = (b: boolean) => (b ? 'yes' : 'no')
  const rows = errorCases.map((c) => {
    const err = mapUpstreamError(
      {
        provider: c.provider,
        op: 'upload',
        status: c.status,
        type: c.type,
        code: c.code,
        message: c.message ?? '',
        retryAfterMs: undefined,
        limitBytes: 0,
      },
      dialects[c.provider],
    )
    const f = classifyFailure(err)
    const facade = f.quotaExhausted ? '429 `insufficient_quota`' : `${errorCatalog[err.code].status}`
    return `| ${label[c.provider]} | ${c.status} \`${c.code ?? c.type}\` | ${c.meaning} | \`${err.code}\` ${err.status} | ${yes(f.retryable)} | ${yes(f.countsTowardBreaker)} | ${facade}, \`x-should-retry: ${f.clientMayRetry}\` |`
  })
  return [
    '| provider | answer | what the docs say it means | filegate answers | retried | counts toward the breaker | OpenAI facade |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n')
}

export function renderProvidersDoc(): string {
  const kimi = kimiFacts()
  const glmChina = glmFacts()
  const glmIntl = glmFacts('https://api.z.ai/api/paas/v4')
  const gemini = geminiFacts()
  return `<!-- Generated from src/providers/*-facts.ts and the error classifiers by \`npm run docs:providers\`. Do not edit by hand. -->
# Providers: what their docs say, and what filegate does with it

Provider docs read on **${DOCS_READ_ON}**. Every row below is a row of the facts tables in
\`src/providers/kimi-facts.ts\`, \`src/providers/glm-facts.ts\` and \`src/providers/gemini-facts.ts\`, with the page it comes from; where the
docs are silent or disagree, the last column says so and says what filegate does. \`GET /v1/limits\`
serves the same facts at run time, with live counts.

How a size is decided: the operator's cap (\`KIMI_MAX_FILE_BYTES\`, \`GLM_MAX_FILE_BYTES\`) is the ceiling;
the purpose's documented cap and a documented per-extension cap (GLM images) apply beneath it. A file
over the limit is refused with 413 \`FILE_TOO_LARGE\` while it streams in; an extension the purpose does
not list is refused with 415 \`UNSUPPORTED_FILE_TYPE\` before any byte is read; a documented file count
(GLM) is counted over every tenant and refused with 507 \`PROVIDER_QUOTA_EXCEEDED\` before the provider is
called. \`GET /v1/files/{id}/content\` asks the provider only for purposes whose content it documents;
other purposes answer 409 \`CONTENT_UNAVAILABLE\` without a provider call.

## Kimi (Moonshot)

The international pages (platform.moonshot.ai, platform.kimi.ai) and the China pages
(platform.moonshot.cn) document the same purposes, formats and caps, so the facts are the same for
\`https://api.moonshot.ai/v1\` and \`https://api.moonshot.cn/v1\`.

${accountLines(kimi, 'KIMI')}

${purposeTable(kimi)}

## GLM (Zhipu), China endpoint \`https://open.bigmodel.cn/api/paas/v4\` (the default)

${accountLines(glmChina, 'GLM')}

${purposeTable(glmChina)}

## GLM, international endpoint \`https://api.z.ai/api/paas/v4\`

With \`GLM_BASE_URL\` on api.z.ai, the facts follow docs.z.ai, which documents only \`agent\`, with other
formats, size and count than docs.bigmodel.cn. For the purposes docs.z.ai is silent on, the
docs.bigmodel.cn rows apply, as their notes say.

${accountLines(glmIntl, 'GLM')}

${purposeTable(glmIntl)}

## Gemini (Google), \`https://generativelanguage.googleapis.com\`

The key goes in \`x-goog-api-key\` (\`GEMINI_API_KEY\`). Gemini has no purpose: filegate calls its one kind
of file \`file\` (its default; there is no \`GEMINI_DEFAULT_PURPOSE\`). The file id filegate reports
(\`provider_file_id\`, and the id the OpenAI facade shows) is the id in Gemini's resource name
\`files/<id>\`; a generateContent call refers to the file as \`files/<id>\`.

${accountLines(gemini, 'GEMINI').replace(/^- Default purpose: .*\n/, '')}

${purposeTable(gemini)}

- Uploads use the resumable protocol: a \`start\` request, then the body in 8 MiB chunks, the last one
  \`upload, finalize\`. A chunk that fails (5xx, 429, a broken connection) is resumed from the offset
  Gemini reports (\`query\`), up to \`RETRY_MAX_ATTEMPTS\` - 1 times per chunk, never restarted from zero. One
  chunk is held in memory per upload (at most 8 MiB × \`PROVIDER_MAX_CONCURRENT_UPLOADS\`). A file whose
  resumes run out is resumed on the next attempt from the offset reported; a body streamed through
  (\`X-Content-SHA256\`) has one attempt, inside which a failed chunk is still resumed from the chunk in
  memory; if Gemini reports fewer bytes than that chunk's start, the streamed upload fails (it cannot be
  rewound) and the client sends it again.
- Files expire after 48 hours: a file's \`expires_at\` is the earlier of the client's \`expires_in\` and
  Gemini's \`expirationTime\` (to the second); the expired sweep then deletes the row like any other
  expiry (Gemini's own delete having come first answers 404, which counts as deleted).
- Gemini processes a file after upload: \`state\` PROCESSING → ACTIVE or FAILED is the File object's
  \`provider_state\` (\`processing\`, \`active\`, \`failed\`; null for the other providers).
  \`GET /v1/files/{id}\` (and the facade's retrieve) ask Gemini again while it is \`processing\`; a FAILED
  file becomes \`status: failed\` with Gemini's message in \`error\`, and its copy is deleted by the
  orphan sweep (or at once when the same content is uploaded again).
- Uploaded files cannot be downloaded: \`GET /v1/files/{id}/content\` answers 409
  \`CONTENT_UNAVAILABLE\` without a call.
- Where the docs and the issue disagree: the docs give 429 \`RESOURCE_EXHAUSTED\` as a rate limit to wait
  out, and name no error for a full project; filegate counts \`GEMINI_MAX_TOTAL_BYTES\` (20 GB) itself
  and refuses with 507 before calling, and takes a \`RESOURCE_EXHAUSTED\` whose message names storage as
  the project being full (not retried).

## Provider errors: one classification

Each provider answer is classified once (src/providers/errors.ts and the dialects in kimi.ts, glm.ts and gemini.ts):
which catalogue code it becomes, whether filegate retries it, whether it counts toward the provider's
circuit breaker, and what the OpenAI facade answers. openai-node obeys \`x-should-retry\` before the
status, so the facade sets it from this classification; an exhausted quota answers as OpenAI does, 429
\`insufficient_quota\` (the SDK's \`RateLimitError\`), never retried. This table is computed from the
classifiers themselves.

${errorTable()}

Error shapes, as documented: Gemini google.rpc.Status \`{"error":{"code","message","status"}}\`
(<https://ai.google.dev/gemini-api/docs/troubleshooting>); Kimi \`{"error":{"type","message"}}\`; GLM \`{"error":{"code":"<string>","message"}}\`
(<https://docs.bigmodel.cn/cn/api/api-code>, <https://docs.z.ai/api-reference/api-code>). GLM 1308 names
the time its limit resets (\`next_flush_time\`); filegate reports the message and does not wait for it.

## File objects

- GLM's file object is \`{id, object, bytes, created_at, filename, purpose}\`: no \`status\`; filegate
  needs none (an upload that answered 200 is complete).
- Kimi's carries \`status\` and \`status_details\`; the current upload page shows \`"ready"\` (older examples
  \`"ok"\`). filegate treats a successful upload as completed whatever the value.
`
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href
if (isMain) {
  const text = renderProvidersDoc()
  if (process.argv.includes('--check')) {
    const committed = await readFile(providersDocPath, 'utf8').catch(() => '')
    if (committed !== text) {
      console.error('docs/providers.md is out of date: run `npm run docs:providers`')
      process.exit(1)
    }
  } else {
    await writeFile(providersDocPath, text)
    console.log(`wrote ${providersDocPath}`)
  }
}
