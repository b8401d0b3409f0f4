/** A parsed provider failure as the files client hands it to the classifiers, for table tests. */
import type { UpstreamError } from '../../src/providers/errors.js'

export const upstream = (over: Partial<UpstreamError>): UpstreamError => ({
  provider: 'glm',
  op: 'upload',
  status: 400,
  type: undefined,
  code: undefined,
  message: '',
  retryAfterMs: undefined,
  limitBytes: 20,
  ...over,
})
