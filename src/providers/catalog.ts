/**
 * What each provider documents about its files API: purposes, extensions, size caps.
 * Sources (re-checked for SPEC §3): Moonshot "Files" API reference (platform.moonshot.ai/docs/api/files)
 * and Zhipu "File management" reference (docs.bigmodel.cn/api-reference). Extensions are lower-case,
 * without the dot. `null` extensions means the provider does not restrict them.
 */

export type ProviderKind = 'kimi' | 'glm' | 'openai'

export interface PurposeRule {
  /** Allowed extensions for this purpose; null = any. */
  extensions: readonly string[] | null
  /** A per-extension cap inside this purpose. */
  maxBytesByExtension?: Readonly<Record<string, number>>
}

export interface ProviderFacts {
  kind: ProviderKind
  baseUrl: string
  maxFileBytes: number
  /** Account caps; null = not documented / unlimited. */
  maxFiles: number | null
  maxTotalBytes: number | null
  defaultPurpose: string
  purposes: Readonly<Record<string, PurposeRule>>
}

const images = ['jpg', 'jpeg', 'png', 'bmp', 'gif', 'webp', 'tif', 'tiff', 'avif', 'svg', 'ico']

/** Moonshot lists these for file-extract (documents, images, code and text formats). */
const kimiExtract = [
  'pdf',
  'txt',
  'csv',
  'doc',
  'docx',
  'xls',
  'xlsx',
  'ppt',
  'pptx',
  'md',
  'markdown',
  'epub',
  'mobi',
  'html',
  'htm',
  'json',
  'jsonl',
  'log',
  'xml',
  'yaml',
  'yml',
  'ini',
  'conf',
  'toml',
  'rtf',
  'go',
  'h',
  'c',
  'cpp',
  'cxx',
  'cc',
  'hpp',
  'cs',
  'java',
  'js',
  'mjs',
  'ts',
  'tsx',
  'jsx',
  'css',
  'jsp',
  'php',
  'py',
  'py3',
  'rb',
  'rs',
  'sh',
  'sql',
  'swift',
  'kt',
  'scala',
  'asp',
  'vue',
  ...images,
]

const MB = 1024 * 1024

export const providerFacts: Readonly<Record<'kimi' | 'glm', ProviderFacts>> = {
  kimi: {
    kind: 'kimi',
    baseUrl: 'https://api.moonshot.ai/v1',
    maxFileBytes: 100 * MB,
    maxFiles: 1000,
    maxTotalBytes: 10 * 1024 * MB,
    defaultPurpose: 'file-extract',
    purposes: {
      'file-extract': { extensions: kimiExtract },
      image: { extensions: images },
      video: { extensions: ['mp4', 'mov', 'avi', 'mkv', 'webm', 'flv', 'wmv', 'mpeg', 'mpg', '3gp'] },
    },
  },
  glm: {
    kind: 'glm',
    baseUrl: 'https://open.bigmodel.cn/api/paas/v4',
    maxFileBytes: 20 * MB,
    maxFiles: null,
    maxTotalBytes: null,
    defaultPurpose: 'file-extract',
    purposes: {
      agent: {
        extensions: ['pdf', 'doc', 'docx', 'xls', 'xlsx', 'ppt', 'pptx', 'txt', 'md', 'csv', ...images],
        maxBytesByExtension: Object.fromEntries(images.map((ext) => [ext, 5 * MB])),
      },
      'file-extract': {
        extensions: ['pdf', 'doc', 'docx', 'xls', 'xlsx', 'ppt', 'pptx', 'txt', 'md', 'csv', ...images],
        maxBytesByExtension: Object.fromEntries(images.map((ext) => [ext, 5 * MB])),
      },
      batch: { extensions: ['jsonl'] },
      'code-interpreter': {
        extensions: ['pdf', 'doc', 'docx', 'xls', 'xlsx', 'ppt', 'pptx', 'txt', 'md', 'csv', 'json', 'py', ...images],
      },
      'voice-clone-input': { extensions: ['mp3', 'wav', 'm4a'] },
    },
  },
}

/** Defaults for an extra OpenAI-compatible provider configured by environment. */
export const openAiCompatibleDefaults: Omit<ProviderFacts, 'baseUrl'> = {
  kind: 'openai',
  maxFileBytes: 512 * MB,
  maxFiles: null,
  maxTotalBytes: null,
  defaultPurpose: 'user_data',
  purposes: {
    assistants: { extensions: null },
    batch: { extensions: ['jsonl'] },
    'fine-tune': { extensions: ['jsonl'] },
    vision: { extensions: images },
    user_data: { extensions: null },
    evals: { extensions: ['jsonl'] },
    'file-extract': { extensions: null },
  },
}
