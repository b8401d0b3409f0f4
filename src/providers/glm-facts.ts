/**
 * Zhipu GLM, as its docs say (read on DOCS_READ_ON). The China endpoint (open.bigmodel.cn) and the
 * international one (api.z.ai) are documented on different sites that disagree: docs.bigmodel.cn
 * documents five purposes with their own formats, sizes and counts; docs.z.ai documents only
 * `agent`, with other numbers. The facts follow the configured base URL; where docs.z.ai is silent,
 * the docs.bigmodel.cn row applies and says so.
 */
import { DOCS_READ_ON, hostOf, MB, type ProviderFacts, type PurposeRule } from './catalog.js'

const UPLOAD_CN = 'https://docs.bigmodel.cn/api-reference/文件-api/上传文件'
const CONTENT_CN = 'https://docs.bigmodel.cn/api-reference/文件-api/获取文件内容'
const EXTRACT_CN = 'https://docs.bigmodel.cn/cn/guide/tools/file-extract'
const UPLOAD_AI = 'https://docs.z.ai/api-reference/agents/file-upload'
const CODES = 'https://docs.bigmodel.cn/cn/api/api-code'

const images = ['png', 'jpg', 'jpeg']
/** "图片大小不超过5M": images 5 MB inside file-extract, code-interpreter and agent. */
const imageCap = Object.fromEntries(images.map((ext) => [ext, 5 * MB]))
const officeAndText = ['pdf', 'docx', 'doc', 'xls', 'xlsx', 'txt', 'png', 'jpg', 'jpeg', 'csv']

const contentDisagreement =
  'content: the current 获取文件内容 page says batch and file-extract; an older page (文件内容) says batch only; filegate follows the current page'

/** docs.bigmodel.cn 上传文件, one row per `purpose` value it documents. */
const chinaPurposes: Record<string, PurposeRule> = {
  batch: {
    extensions: ['jsonl'],
    documentedMaxFileBytes: 100 * MB,
    maxFiles: 1000,
    content: true,
    source: UPLOAD_CN,
    note: contentDisagreement,
  },
  'file-extract': {
    extensions: ['pdf', 'docx', 'doc', 'xls', 'xlsx', 'ppt', 'pptx', 'png', 'jpg', 'jpeg', 'csv'],
    maxBytesByExtension: imageCap,
    documentedMaxFileBytes: 50 * MB,
    maxFiles: 100,
    content: true,
    source: EXTRACT_CN,
    note: `some versions of the upload page leave file-extract out of the purpose list; the file-extract guide documents it. ${contentDisagreement}`,
  },
  'code-interpreter': {
    extensions: officeAndText,
    maxBytesByExtension: imageCap,
    documentedMaxFileBytes: 20 * MB,
    maxFiles: 100,
    content: false,
    source: UPLOAD_CN,
  },
  agent: {
    extensions: officeAndText,
    maxBytesByExtension: imageCap,
    documentedMaxFileBytes: 20 * MB,
    maxFiles: 1000,
    content: false,
    source: UPLOAD_CN,
  },
  'voice-clone-input': {
    extensions: ['mp3', 'wav'],
    content: false,
    source: UPLOAD_CN,
    note: 'no size or count documented for this purpose; the 100 MB of HTTP 435 applies',
  },
}

/** docs.z.ai documents `agent` only: 100 files, 100 MB, pdf, doc, xlsx, ppt, txt, jpg, png. */
const internationalPurposes: Record<string, PurposeRule> = {
  ...Object.fromEntries(
    Object.entries(chinaPurposes).map(([purpose, rule]) => [
      purpose,
      {
        ...rule,
        note: `docs.z.ai is silent on this purpose; the docs.bigmodel.cn row applies${rule.note ? `. ${rule.note}` : ''}`,
      },
    ]),
  ),
  agent: {
    extensions: ['pdf', 'doc', 'xlsx', 'ppt', 'txt', 'jpg', 'png'],
    documentedMaxFileBytes: 100 * MB,
    maxFiles: 100,
    content: false,
    source: UPLOAD_AI,
    note: 'docs.bigmodel.cn documents agent differently (more formats, 20 MB, 1,000 files); api.z.ai follows docs.z.ai',
  },
}

export const isInternationalGlm = (baseUrl: string) => hostOf(baseUrl).endsWith('z.ai')

export function glmFacts(baseUrl = 'https://open.bigmodel.cn/api/paas/v4'): ProviderFacts {
  const international = isInternationalGlm(baseUrl)
  return {
    kind: 'glm',
    baseUrl,
    // This product's cap, not a documented one: agent (the default purpose) is documented at 20 MB.
    maxFileBytes: 20 * MB,
    // HTTP 435 "File size exceeds 100MB" (error code table): the largest documented size.
    documentedMaxFileBytes: 100 * MB,
    maxFiles: null,
    maxTotalBytes: null,
    defaultPurpose: 'agent',
    purposes: international ? internationalPurposes : chinaPurposes,
    docs: {
      region: international ? 'international (api.z.ai)' : 'China (open.bigmodel.cn)',
      readOn: DOCS_READ_ON,
      sources: international
        ? [UPLOAD_AI, UPLOAD_CN, CONTENT_CN, 'https://docs.z.ai/api-reference/api-code']
        : [UPLOAD_CN, EXTRACT_CN, CONTENT_CN, CODES],
    },
  }
}
