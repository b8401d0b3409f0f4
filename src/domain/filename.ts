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
  let name = (raw ?? '').normalize('NFC')
  name = name.split(/[\\/]/).pop() ?? ''
  name = name
    .replace(unsafe, '')
    .replace(/["<>:|?*]/g, '_')
    .trim()
  name = name.replace(/^\.+/, '').trim()
  if (name === '' || name === '.' || name === '..') name = 'file'
  if (Buffer.byteLength(name) > maxBytes) {
    const ext = extensionOf(name)
    const suffix = ext && ext.length <= 16 ? `.${ext}` : ''
    let stem = suffix ? name.slice(0, -suffix.length) : name
    while (Buffer.byteLength(stem) + Buffer.byteLength(suffix) > maxBytes) stem = [...stem].slice(0, -1).join('')
    name = stem + suffix
  }
  return name
}

/** Lower-case extension without the dot; '' when there is none. */
export function extensionOf(filename: string): string {
  const dot = filename.lastIndexOf('.')
  return dot > 0 && dot < filename.length - 1 ? filename.slice(dot + 1).toLowerCase() : ''
}
