/**
 * Moonshot Kimi, as its docs say (read on DOCS_READ_ON). One row per purpose, each with its page.
 * The international (platform.moonshot.ai / platform.kimi.ai) and China (platform.moonshot.cn)
 * pages document the same purposes, formats and caps, so the rows do not depend on the base URL;
 * only `docs.region` says which pages apply.
 */
import { DOCS_READ_ON, hostOf, MB, type ProviderFacts } from './catalog.js'

const FILES_CN = 'https://platform.moonshot.cn/docs/api/files'
const FILES_AI = 'https://platform.kimi.ai/docs/api/files-upload'
const VISION = 'https://platform.moonshot.ai/docs/guide/use-kimi-vision-model'

/**
 * "Supported formats" of the files API, in the order the page lists them ("… .tsx 等格式": the
 * page ends the list with "etc."; filegate takes the list as it stands).
 */
// biome-ignore format: one documented list, kept as the page orders it
const fileExtract = [
  'pdf', 'txt', 'csv', 'doc', 'docx', 'xls', 'xlsx', 'ppt', 'pptx', 'md', 'jpeg', 'png', 'bmp', 'gif', 'svg',
  'svgz', 'webp', 'ico', 'xbm', 'dib', 'pjp', 'tif', 'pjpeg', 'avif', 'dot', 'apng', 'epub', 'tiff', 'jfif',
  'html', 'json', 'mobi', 'log', 'go', 'h', 'c', 'cpp', 'cxx', 'cc', 'cs', 'java', 'js', 'css', 'jsp', 'php',
  'py', 'py3', 'asp', 'yaml', 'yml', 'ini', 'conf', 'ts', 'tsx',
  // Not in the list, which names .jpeg, .jfif, .pjpeg and .pjp: .jpg is the usual name of the same
  // JPEG format, accepted as such.
  'jpg',
]

/** The vision guide's "Supported Formats", given as media subtypes: image/png, jpeg, webp, gif. */
const image = ['png', 'jpeg', 'jpg', 'webp', 'gif']

/** The same list's video subtypes: mp4, mpeg, mov, avi, x-flv (.flv), mpg, webm, wmv, 3gpp (.3gp). */
const video = ['mp4', 'mpeg', 'mov', 'avi', 'flv', 'mpg', 'webm', 'wmv', '3gp']

export function kimiFacts(baseUrl = 'https://api.moonshot.ai/v1'): ProviderFacts {
  const china = hostOf(baseUrl).endsWith('.cn')
  return {
    kind: 'kimi',
    baseUrl,
    // "Each file must not exceed 100 MB" (files-upload): the default operator cap is the documented one.
    maxFileBytes: 100 * MB,
    documentedMaxFileBytes: 100 * MB,
    // "A maximum of 1,000 files … the total size of all uploaded files must not exceed 10 GB."
    maxFiles: 1000,
    maxTotalBytes: 10 * 1024 * MB,
    defaultPurpose: 'file-extract',
    purposes: {
      'file-extract': {
        extensions: fileExtract,
        content: true,
        source: FILES_CN,
        note: 'GET /files/{id}/content returns the extracted text (JSON) of file-extract files only',
      },
      image: { extensions: image, content: false, source: VISION },
      video: { extensions: video, content: false, source: VISION },
      batch: {
        extensions: ['jsonl'],
        content: false,
        source: FILES_AI,
        note: 'batch input, .jsonl; no size of its own is documented, so the 100 MB per-file cap applies',
      },
    },
    docs: {
      region: china ? 'China (api.moonshot.cn)' : 'international (api.moonshot.ai)',
      readOn: DOCS_READ_ON,
      sources: [FILES_CN, FILES_AI, VISION, 'https://www.kimi.com/help/kimi-api/api-error-codes'],
    },
  }
}
