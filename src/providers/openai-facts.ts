/**
 * OpenAI's own files API, as its docs say (read on DOCS_READ_ON). The API reference
 * (platform.openai.com/docs/api-reference/files/create) documents the purposes, the 512 MB per
 * file, 2.5 TB per project ("no organization-wide storage limit"), Batch input of .jsonl up to
 * 200 MB, fine-tuning .jsonl only, and `expires_after` (anchor `created_at`, 3600–2592000 seconds;
 * batch files expire after 30 days by default, the others are kept until deleted). The content
 * endpoint (files/retrieve-contents) is documented for any file id, but OpenAI serves only some
 * purposes: it answers 400 "Not allowed to download files of purpose: user_data" (and the same for
 * assistants, fine-tune and evals) and serves batch and vision files, as reported on its developer
 * forum (DOWNLOADS). filegate answers the refused ones 409 CONTENT_UNAVAILABLE without a call.
 */
import { DOCS_READ_ON, MB, type ProviderFacts } from './catalog.js'

const CREATE = 'https://platform.openai.com/docs/api-reference/files/create'
const UPLOADS = 'https://platform.openai.com/docs/api-reference/uploads/create'
const CONTENT = 'https://platform.openai.com/docs/api-reference/files/retrieve-contents'
const VISION_FT = 'https://platform.openai.com/docs/guides/vision-fine-tuning'
const ERRORS = 'https://platform.openai.com/docs/guides/error-codes'
/** The reference names no downloadable purposes; OpenAI's answers per purpose are collected here. */
const DOWNLOADS =
  'https://community.openai.com/t/file-uploads-error-why-can-t-i-download-files-with-purpose-user-data/1357013'

/** Vision fine-tuning takes JPEG, PNG and WEBP images; GIF is accepted as vision input elsewhere. */
const images = ['png', 'jpeg', 'jpg', 'webp', 'gif']

/** A purpose whose files OpenAI does not serve (DOWNLOADS): filegate does not ask. */
const notDownloadable = (purpose: string) =>
  `OpenAI refuses its download ("Not allowed to download files of purpose: ${purpose}"): content answers 409 without a call`

export function openAiFacts(baseUrl = 'https://api.openai.com/v1'): ProviderFacts {
  return {
    kind: 'openai',
    baseUrl,
    // "Individual files can be up to 512 MB" in one request; larger ones go through the Uploads API
    // (openai-uploads.ts): "an Upload can accept at most 8 GB in total" (API reference, Uploads: create).
    maxFileBytes: 8 * 1024 * MB,
    documentedMaxFileBytes: 8 * 1024 * MB,
    maxFiles: null,
    // "Each project can store up to 2.5 TB of files in total" (an API key belongs to one project).
    maxTotalBytes: 2.5 * 1024 * 1024 * MB,
    defaultPurpose: 'user_data',
    purposes: {
      assistants: { extensions: null, content: false, source: CREATE, note: notDownloadable('assistants') },
      batch: {
        extensions: ['jsonl'],
        documentedMaxFileBytes: 200 * MB,
        content: true,
        source: CREATE,
        note: 'the Batch API takes .jsonl up to 200 MB; batch files expire at OpenAI after 30 days unless expires_after says otherwise; OpenAI serves their content',
      },
      'fine-tune': { extensions: ['jsonl'], content: false, source: CREATE, note: notDownloadable('fine-tune') },
      vision: { extensions: images, content: true, source: VISION_FT, note: 'OpenAI serves their content' },
      user_data: {
        extensions: null,
        content: false,
        source: CREATE,
        note: `flexible file type for any purpose; ${notDownloadable('user_data')}`,
      },
      evals: { extensions: ['jsonl'], content: false, source: CREATE, note: notDownloadable('evals') },
    },
    docs: {
      region: 'api.openai.com',
      readOn: DOCS_READ_ON,
      sources: [CREATE, UPLOADS, CONTENT, VISION_FT, ERRORS, DOWNLOADS],
    },
    // "The number of seconds after the anchor time that the file will expire. Must be between 3600
    // (1 hour) and 2592000 (30 days)."
    expiresAfter: { minSeconds: 3600, maxSeconds: 2_592_000, source: CREATE },
  }
}
