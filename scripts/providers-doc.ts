/**
 * `npm run docs:providers`: writes docs/providers.md from the provider facts in code
 * (src/providers/<kind>-facts.ts) and from the error classifiers themselves, so the
 * page users read is the table filegate enforces. `--check` compares instead of writing (a unit
 * test does the same).
 */
import { readFile, writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { errorCatalog } from '../src/errors.js'
import { anthropicDialect } from '../src/providers/anthropic.js'
import { anthropicFacts } from '../src/providers/anthropic-facts.js'
import { DOCS_READ_ON, openAiCompatibleDefaults, type ProviderFacts } from '../src/providers/catalog.js'
import { classifyFailure, type ErrorDialect, mapUpstreamError } from '../src/providers/errors.js'
import { geminiErrors } from '../src/providers/gemini.js'
import { geminiFacts } from '../src/providers/gemini-facts.js'
import { glmDialect } from '../src/providers/glm.js'
import { glmFacts } from '../src/providers/glm-facts.js'
import { kimiDialect } from '../src/providers/kimi.js'
import { kimiFacts } from '../src/providers/kimi-facts.js'
import { openAiCompatibleDialect } from '../src/providers/openai-compatible.js'
import { openAiFacts } from '../src/providers/openai-facts.js'
import { defaultAutoProviders } from '../src/providers/resolve.js'

export const providersDocPath = resolve(fileURLToPath(new URL('..', import.meta.url)), 'docs/providers.md')

const MB = 1024 * 1024
const GB = 1024 * MB
const TB = 1024 * GB
function size(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '—'
  if (bytes >= TB && ((bytes * 10) / TB) % 1 === 0) return `${bytes / TB} TB`
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

/** `purposeVariable`: whether `<VARIABLE>_DEFAULT_PURPOSE` exists (Kimi, GLM); elsewhere the default is fixed. */
function accountLines(facts: ProviderFacts, variable: string, purposeVariable = true): string {
  const account = [
    facts.maxFiles !== null ? `${facts.maxFiles.toLocaleString('en-US')} files` : undefined,
    facts.maxTotalBytes !== null ? `${size(facts.maxTotalBytes)} in all` : undefined,
  ].filter(Boolean)
  return [
    purposeVariable
      ? `- Default purpose: \`${facts.defaultPurpose}\` (\`${variable}_DEFAULT_PURPOSE\`).`
      : `- Default purpose: \`${facts.defaultPurpose}\`.`,
    `- Operator's per-file cap \`${variable}_MAX_FILE_BYTES\`: ${size(facts.maxFileBytes)} by default. The documented caps below apply beneath it: a file is accepted up to the smaller of the two.`,
    `- Provider-wide documented per-file cap: ${size(facts.documentedMaxFileBytes)}.${account.length ? ` Account: ${account.join(', ')} (\`${variable}_MAX_FILES\`, \`${variable}_MAX_TOTAL_BYTES\`).` : ''}`,
    `- Default base URL \`${variable}_BASE_URL\`: \`${facts.baseUrl}\`.`,
    ...(facts.expiresAfter
      ? [
          `- A file's \`expires_in\` is passed on as the provider's own expiry when it lies within ${facts.expiresAfter.minSeconds}–${facts.expiresAfter.maxSeconds} seconds ([doc](${encodeURI(facts.expiresAfter.source)})); outside that range nothing is sent and filegate's expiry sweep alone deletes the file.`,
        ]
      : []),
    `- Pages read on ${facts.docs?.readOn ?? DOCS_READ_ON}: ${(facts.docs?.sources ?? []).map((u) => `<${encodeURI(u)}>`).join(', ')}.`,
  ].join('\n')
}

interface ErrorCase {
  provider: 'kimi' | 'glm' | 'openai' | 'anthropic' | 'gemini'
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
  { provider: 'openai', status: 429, code: 'insufficient_quota', meaning: 'out of credit or over the billing limit' },
  { provider: 'openai', status: 429, code: 'rate_limit_exceeded', meaning: 'rate limit' },
  { provider: 'openai', status: 401, code: 'invalid_api_key', meaning: 'bad key' },
  { provider: 'openai', status: 500, type: 'server_error', meaning: 'server error' },
  { provider: 'openai', status: 503, type: 'server_error', meaning: 'overloaded' },
  { provider: 'anthropic', status: 429, type: 'rate_limit_error', meaning: 'rate limit' },
  { provider: 'anthropic', status: 529, type: 'overloaded_error', meaning: 'API temporarily overloaded' },
  { provider: 'anthropic', status: 500, type: 'api_error', meaning: 'internal error' },
  { provider: 'anthropic', status: 400, type: 'invalid_request_error', meaning: 'bad request' },
  { provider: 'anthropic', status: 401, type: 'authentication_error', meaning: 'bad key' },
  { provider: 'anthropic', status: 403, type: 'permission_error', meaning: 'key may not use the resource' },
  {
    provider: 'anthropic',
    status: 403,
    type: 'permission_error',
    message: 'file storage limit reached',
    meaning: 'storage full (not documented; see above)',
  },
  { provider: 'anthropic', status: 404, type: 'not_found_error', meaning: 'no such file' },
  { provider: 'anthropic', status: 413, type: 'request_too_large', meaning: 'over 500 MB' },
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

const providerTitle: Record<ErrorCase['provider'], string> = {
  kimi: 'Kimi',
  glm: 'GLM',
  openai: 'OpenAI',
  anthropic: 'Anthropic',
  gemini: 'Gemini',
}

function errorTable(): string {
  const dialects: Record<ErrorCase['provider'], ErrorDialect> = {
    kimi: kimiDialect.classifyError,
    glm: glmDialect.classifyError,
    openai: openAiCompatibleDialect.classifyError,
    anthropic: anthropicDialect.classifyError,
    gemini: geminiErrors,
  }
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
    return `| ${providerTitle[c.provider]} | ${c.status} \`${c.code ?? c.type}\` | ${c.meaning} | \`${err.code}\` ${err.status} | ${yes(f.retryable)} | ${yes(f.countsTowardBreaker)} | ${facade}, \`x-should-retry: ${f.clientMayRetry}\` |`
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
  const openai = openAiFacts()
  const anthropic = anthropicFacts()
  const compatible = { ...openAiCompatibleDefaults, baseUrl: '(its base_url)' }
  const gemini = geminiFacts()
  return `<!-- Generated from src/providers/*-facts.ts and the error classifiers by \`npm run docs:providers\`. Do not edit by hand. -->
# Providers: what their docs say, and what filegate does with it

Provider docs read on **${DOCS_READ_ON}**. Every row below is a row of the facts tables in
\`src/providers/<kind>-facts.ts\` (kimi, glm, openai, anthropic, gemini), with the page it comes from; where the
docs are silent or disagree, the last column says so and says what filegate does. \`GET /v1/limits\`
serves the same facts at run time, with live counts.

How a size is decided: the operator's cap (\`<P>_MAX_FILE_BYTES\` for P in KIMI, GLM, OPENAI, ANTHROPIC) is the ceiling;
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

## OpenAI (native), the provider named \`openai\`

Configured when \`OPENAI_API_KEY\` is set. Its wire is the OpenAI-style files client every kind shares
(\`Authorization: Bearer\`, multipart \`purpose\` + \`file\`, cursor pages \`after\`/\`limit\`/\`order\`).

${accountLines(openai, 'OPENAI', false)}

${purposeTable(openai)}

## Anthropic, the provider named \`anthropic\`

Configured when \`ANTHROPIC_API_KEY\` is set. Every call carries \`x-api-key\`, \`anthropic-version: 2023-06-01\`
and \`anthropic-beta: files-api-2025-04-14\` (the Files API pages still require the beta header). The upload
is a multipart \`file\` with no other field; filegate files every Anthropic upload under the purpose
\`file\`. The file object \`{id, type: "file", filename, mime_type, size_bytes, created_at (RFC 3339),
downloadable}\` becomes filegate's (\`size_bytes\` → \`bytes\`, \`created_at\` → unix seconds). Lists page with
\`limit\` (1–1000) and \`after_id\` = the previous page's \`last_id\` while \`has_more\`.

${accountLines(anthropic, 'ANTHROPIC', false)}

${purposeTable(anthropic)}

## Gemini (Google), \`https://generativelanguage.googleapis.com\`

The key goes in \`x-goog-api-key\` (\`GEMINI_API_KEY\`). Gemini has no purpose: filegate calls its one kind
of file \`file\` (its default; there is no \`GEMINI_DEFAULT_PURPOSE\`). The file id filegate reports
(\`provider_file_id\`, and the id the OpenAI facade shows) is the id in Gemini's resource name
\`files/<id>\`; a generateContent call refers to the file as \`files/<id>\`.

${accountLines(gemini, 'GEMINI', false)}

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

## OpenAI-compatible providers: \`EXTRA_PROVIDERS\` without a \`kind\`

An entry without \`kind\` is a generic OpenAI-compatible files API (kind \`openai\` in \`/v1/limits\`), with
these defaults unless it names \`purposes\`, \`extensions\`, \`max_file_bytes\`, \`max_files\`,
\`max_total_bytes\` or \`default_purpose\`. It is never sent \`expires_after\`: that is OpenAI's own field.

- Default purpose: \`${compatible.defaultPurpose}\`; operator's per-file cap ${size(compatible.maxFileBytes)}; no documented cap, no account cap.

${purposeTable(compatible)}

## A second account of any kind: \`EXTRA_PROVIDERS\` with a \`kind\`

An entry may name \`kind\`: \`kimi\`, \`glm\`, \`openai\`, \`anthropic\` or \`gemini\`. It then speaks that kind's wire and
inherits that kind's documented facts for its \`base_url\` (Kimi and GLM follow the region the URL
belongs to), with its own \`api_key\` and, when given, its own \`max_file_bytes\`, \`max_files\`,
\`max_total_bytes\` and \`default_purpose\` (which must be one of the kind's purposes). \`purposes\` and
\`extensions\` are refused with a kind: a kind brings its documented ones (\`ALLOWED_EXTENSIONS\` still
narrows every provider). Names \`kimi\`, \`glm\`, \`openai\`, \`anthropic\`, \`gemini\` and \`auto\` are reserved.

\`\`\`
EXTRA_PROVIDERS='[{"name":"claude-eu","kind":"anthropic","base_url":"https://api.anthropic.com/v1","api_key":"sk-ant-…"}]'
\`\`\`

## \`provider=auto\`: \`AUTO_PROVIDERS\`

\`provider=auto\` tries the providers named in \`AUTO_PROVIDERS\` (default \`${defaultAutoProviders}\`) in that order,
skipping the unconfigured ones, those whose purposes or extensions do not take the file, those too small
for it and those whose circuit is open; a retryable failure (or a full account) moves on to the next one.
A provider left out of \`AUTO_PROVIDERS\` is only used when named. An unknown or repeated name stops
start-up, reported with every other configuration problem.

## Where the docs and the issue disagree, or are silent

- **Anthropic beta header.** The issue asks for the Files API beta header only if the docs still require
  it. The API reference and the Files API guide read on ${DOCS_READ_ON} still require
  \`anthropic-beta: files-api-2025-04-14\`, so filegate sends it. (A third-party guide reports the Files
  API generally available without the header; Anthropic's own pages read here do not say so. A beta
  header the API no longer needs is not an error.)
- **Anthropic storage cap.** The guide states 100 GB per organization (third-party pages quote 500 GB
  or 1 TB); \`ANTHROPIC_MAX_TOTAL_BYTES\` defaults to the 100 GB and can be raised. The answer Anthropic
  gives when the storage is full is not documented: a 403 \`permission_error\` whose message speaks of
  storage, a quota or a limit is taken as \`PROVIDER_QUOTA_EXCEEDED\` (507), never retried; any other 403
  is a key problem (\`PROVIDER_ERROR\`).
- **Anthropic content.** The issue says content is served for downloadable files only. Only files
  created by skills or the code execution tool are downloadable; an uploaded file never is, so every file
  filegate uploads answers 409 \`CONTENT_UNAVAILABLE\` without a provider call.
- **Anthropic 529 \`overloaded_error\`.** Retried as the issue says, and answered (once the retries are
  spent) as 429 \`PROVIDER_RATE_LIMITED\` with the provider's Retry-After, as Kimi's
  \`engine_overloaded_error\` is.
- **OpenAI caps.** The issue gives 512 MB a file; the API reference also documents 2.5 TB per project
  ("no organization-wide storage limit"; older pages said 100 GB per organization) and Batch input up
  to 200 MB (older pages: 100 MB). \`OPENAI_MAX_TOTAL_BYTES\` defaults to the 2.5 TB.
- **OpenAI \`expires_after\`.** Sent only for an \`expires_in\` of ${openai.expiresAfter?.minSeconds}–${openai.expiresAfter?.maxSeconds} seconds; outside it
  OpenAI would refuse the upload, so nothing is sent and filegate's own expiry sweep deletes the file.
  OpenAI's \`expires_at\` (batch files expire after 30 days unless told otherwise) is read into the
  provider file as its own expiry.
- **Gemini storage and 429.** The docs give 429 \`RESOURCE_EXHAUSTED\` as a rate limit to wait out (the
  issue: retryable), and name no error for a full project (20 GB). filegate counts
  \`GEMINI_MAX_TOTAL_BYTES\` itself and refuses with 507 before calling, and takes a \`RESOURCE_EXHAUSTED\`
  whose message names storage as the project being full: \`PROVIDER_QUOTA_EXCEEDED\`, not retried.
- **Gemini purpose.** Gemini has none; filegate files every Gemini upload under \`file\`, as Anthropic's.
- **OpenAI content.** The reference documents the content endpoint for every file but names no purpose
  it serves. OpenAI answers 400 "Not allowed to download files of purpose: user_data" for \`user_data\`,
  \`assistants\`, \`fine-tune\` and \`evals\` files and serves \`batch\` and \`vision\` ones, as developers
  report on its forum (the last page listed above); filegate answers the others 409
  \`CONTENT_UNAVAILABLE\` without a call, as for Kimi images and Anthropic, rather than pass on a 422.

## Provider errors: one classification

Each provider answer is classified once (src/providers/errors.ts and the dialects in kimi.ts, glm.ts,
openai-compatible.ts, anthropic.ts and gemini.ts):
which catalogue code it becomes, whether filegate retries it, whether it counts toward the provider's
circuit breaker, and what the OpenAI facade answers. openai-node obeys \`x-should-retry\` before the
status, so the facade sets it from this classification; an exhausted quota answers as OpenAI does, 429
\`insufficient_quota\` (the SDK's \`RateLimitError\`), never retried. This table is computed from the
classifiers themselves.

${errorTable()}

Error shapes, as documented: Kimi \`{"error":{"type","message"}}\`; GLM \`{"error":{"code":"<string>","message"}}\`
(<https://docs.bigmodel.cn/cn/api/api-code>, <https://docs.z.ai/api-reference/api-code>); OpenAI
\`{"error":{"message","type","param","code"}}\` (<https://platform.openai.com/docs/guides/error-codes>);
Anthropic \`{"type":"error","error":{"type","message"},"request_id"}\` (<https://docs.claude.com/en/api/errors>); Gemini google.rpc.Status
\`{"error":{"code","message","status"}}\` (<https://ai.google.dev/gemini-api/docs/troubleshooting>). GLM 1308 names
the time its limit resets (\`next_flush_time\`); filegate reports the message and does not wait for it.

## File objects

- GLM's file object is \`{id, object, bytes, created_at, filename, purpose}\`: no \`status\`; filegate
  needs none (an upload that answered 200 is complete).
- Kimi's carries \`status\` and \`status_details\`; the current upload page shows \`"ready"\` (older examples
  \`"ok"\`). filegate treats a successful upload as completed whatever the value.
- OpenAI's is \`{id, object, bytes, created_at, expires_at, filename, purpose, status}\`; \`expires_at\`
  (unix seconds, null when kept until deleted) is the provider's own expiry.
- Anthropic's is \`{id, type, filename, mime_type, size_bytes, created_at, downloadable}\`: no purpose,
  an RFC 3339 \`created_at\`.
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
