/**
 * Client filenames are untrusted: reduce them to a safe basename before they reach a log, the
 * database or a provider's Content-Disposition. Keeps Unicode letters (Chinese names are the
 * norm for Kimi/GLM users), drops paths, control and bidi-override characters, and bounds the
 * length to 255 UTF-8 bytes while keeping the extension.
 */
const maxBytes = 255

// biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point
const unsafe = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g

export function sanitizeFilename(raw: string | undefined): string {
  let name = raw ?? ''
  // Every step is one pass over the name: a hostile 80 KB filename (as much as a multipart part
  // header holds) costs microseconds, never a held event loop.
  name = name.slice(Math.max(name.lastIndexOf('/'), name.lastIndexOf('\\')) + 1)
  name = name
    .normalize('NFC')
    .replace(unsafe, '')
    .replace(/["<>:|?*]/g, '_')
    .trim()
  name = name.replace(/^\.+/, '').trim()
  if (name === '' || name === '.' || name === '..') name = 'file'
  if (Buffer.byteLength(name) > maxBytes) {
    const ext = extensionOf(name)
    const suffix = ext && ext.length <= 16 ? `.${ext}` : ''
    const stem = suffix ? name.slice(0, -suffix.length) : name
    name = prefixWithin(stem, maxBytes - Buffer.byteLength(suffix)) + suffix
  }
  return name
}

/** The longest prefix of `text` that fits in `budget` UTF-8 bytes, cut between characters, in one pass. */
function prefixWithin(text: string, budget: number): string {
  let used = 0
  let end = 0
  for (const char of text) {
    const point = char.codePointAt(0) as number
    const size = point < 0x80 ? 1 : point < 0x800 ? 2 : point < 0x10000 ? 3 : 4
    if (used + size > budget) break
    used += size
    end += char.length
  }
  return text.slice(0, end)
}

/** Lower-case extension without the dot; '' when there is none. */
export function extensionOf(filename: string): string {
  const dot = filename.lastIndexOf('.')
  return dot > 0 && dot < filename.length - 1 ? filename.slice(dot + 1).toLowerCase() : ''
}
