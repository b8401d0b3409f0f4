/**
 * s3rver (the S3 REST API over a directory: multipart uploads, CopyObject, path-style addressing,
 * any signature made with its fixed keys S3RVER/S3RVER) in its own process, serving one bucket from
 * S3RVER_DIR, so its request parsing and disk writes do not share an event loop with the load
 * generator. Ready when it prints `s3rver listening on <endpoint>` on stdout; it exits when the
 * parent's IPC channel closes (the parent exited or stopped it).
 */
import { runS3rver } from '../../tests/fakes/s3-server.js'

const directory = process.env.S3RVER_DIR
const bucket = process.env.S3RVER_BUCKET
if (!directory || !bucket) throw new Error('S3RVER_DIR and S3RVER_BUCKET are required')

// s3rver's filesystem store opens a PUT's staging file lazily, with no 'error' listener: when the
// client's connection is reset mid-body (the soak's store front does this on purpose), s3rver
// removes the staging file first and the late open throws ENOENT out of the event loop. That is
// the stand-in store's fault, not the service's: the request is already over, so the error is
// noted and the store keeps serving. Any other uncaught error still ends the process.
process.on('uncaughtException', (err: NodeJS.ErrnoException) => {
  if (err.code === 'ENOENT' && typeof err.path === 'string' && err.path.startsWith(directory)) {
    process.stderr.write(`s3rver: ignored a late open of a removed staging file (${err.path})\n`)
    return
  }
  throw err
})

const { server, endpoint } = await runS3rver(directory, bucket)
process.on('disconnect', () => {
  void server.close().finally(() => process.exit(0))
})
process.stdout.write(`s3rver listening on ${endpoint}\n`)
