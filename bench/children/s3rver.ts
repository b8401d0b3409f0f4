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

const { server, endpoint } = await runS3rver(directory, bucket)
process.on('disconnect', () => {
  void server.close().finally(() => process.exit(0))
})
process.stdout.write(`s3rver listening on ${endpoint}\n`)
