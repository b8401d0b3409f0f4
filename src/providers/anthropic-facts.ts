/**
 * Anthropic's Files API, as its docs say (read on DOCS_READ_ON): the Files API guide
 * (docs.claude.com/en/docs/build-with-claude/files) and the API reference pages
 * (docs.claude.com/en/api/files-create, -list, -metadata, -content, -delete). Uploads carry no
 * purpose; filegate files them under the purpose `file`. "Maximum file size: 500 MB",
 * "Total storage: 100 GB per organization". Only files created by skills or the code execution
 * tool are downloadable, never an uploaded one, so filegate serves no content for them.
 */
import { DOCS_READ_ON, MB, type ProviderFacts } from './catalog.js'

const GUIDE = 'https://docs.claude.com/en/docs/build-with-claude/files'
const CREATE = 'https://docs.claude.com/en/api/files-create'
const LIST = 'https://docs.claude.com/en/api/files-list'
const ERRORS = 'https://docs.claude.com/en/api/errors'

/** The one purpose filegate files Anthropic uploads under: the API itself takes none. */
export const ANTHROPIC_PURPOSE = 'file'

export function anthropicFacts(baseUrl = 'https://api.anthropic.com/v1'): ProviderFacts {
  return {
    kind: 'anthropic',
    baseUrl,
    maxFileBytes: 500 * MB,
    documentedMaxFileBytes: 500 * MB,
    maxFiles: null,
    // The guide's "100 GB per organization"; an API key sees its workspace's files only, so
    // filegate counts what it uploaded with this key against it.
    maxTotalBytes: 100 * 1024 * MB,
    defaultPurpose: ANTHROPIC_PURPOSE,
    purposes: {
      [ANTHROPIC_PURPOSE]: {
        extensions: null,
        content: false,
        source: GUIDE,
        note: 'the API takes no purpose; uploaded files are not downloadable (only files created by skills or the code execution tool are), so content answers 409 without a call',
      },
    },
    docs: { region: 'api.anthropic.com', readOn: DOCS_READ_ON, sources: [GUIDE, CREATE, LIST, ERRORS] },
  }
}
