/**
 * Google Gemini's Files API, as its docs say (read on DOCS_READ_ON):
 * - ai.google.dev/gemini-api/docs/files: "store up to 20 GB of files per project, with a per-file
 *   maximum size of 2 GB. Files are stored for 48 hours"; during that time the file's metadata can
 *   be read but "you can't download the file"; delete and list.
 * - ai.google.dev/api/files: media.upload (the resumable protocol), files.get, files.list
 *   (pageSize, pageToken → {files, nextPageToken}), files.delete; the File resource (name
 *   "files/<id>", displayName, sizeBytes, createTime, expirationTime, state PROCESSING → ACTIVE |
 *   FAILED, error).
 * - ai.google.dev/gemini-api/docs/troubleshooting: the error statuses.
 * One endpoint for every region, so the rows do not depend on the base URL.
 */
import { DOCS_READ_ON, MB, type ProviderFacts } from './catalog.js'

const FILES_GUIDE = 'https://ai.google.dev/gemini-api/docs/files'
const FILES_API = 'https://ai.google.dev/api/files'
const ERRORS = 'https://ai.google.dev/gemini-api/docs/troubleshooting'

const GB = 1024 * MB

export function geminiFacts(baseUrl = 'https://generativelanguage.googleapis.com'): ProviderFacts {
  return {
    kind: 'gemini',
    baseUrl,
    // "a per-file maximum size of 2 GB": the default operator cap is the documented one.
    maxFileBytes: 2 * GB,
    documentedMaxFileBytes: 2 * GB,
    // No file count is documented; "up to 20 GB of files per project".
    maxFiles: null,
    maxTotalBytes: 20 * GB,
    // Gemini has no purpose: every upload is a file for prompts. filegate names that one purpose
    // `file` (as it does Anthropic's), so dedup, caps and the File object work unchanged.
    defaultPurpose: 'file',
    purposes: {
      file: {
        extensions: null,
        content: false,
        source: FILES_GUIDE,
        note: 'Gemini has no purpose; filegate calls its one kind of file `file`. Uploaded files cannot be downloaded (content: 409, no call). Supported formats are MIME types checked by Gemini (a refused type ends FAILED); files expire after 48 hours (`expires_at` = `expirationTime`)',
      },
    },
    docs: {
      region: 'global (generativelanguage.googleapis.com)',
      readOn: DOCS_READ_ON,
      sources: [FILES_GUIDE, FILES_API, ERRORS],
    },
  }
}
