/** The upload spool: hashed and counted while written, limited, removed on failure; stale spools swept. */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, statSync } from 'node:fs'
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable, Writable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import {
  HashCounter,
  memorySpoolBytes,
  prepareSpoolDir,
  removeSpool,
  removeStaleSpools,
  spoolToFile,
  spoolWriteBatchBytes,
} from '../../src/domain/spool.js'
import { errors, isAppError } from '../../src/errors.js'
import { writeAll } from '../../src/file-batches.js'

let dir: string
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'filegate-spool-unit-'))
})
after(() => rm(dir, { recursive: true, force: true }))

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const chunks = (data: Buffer, size: number) =>
  Readable.from(
    Array.from({ length: Math.ceil(data.length / size) }, (_, i) => data.subarray(i * size, (i + 1) * size)),
  )

describe('spoolToFile', () => {
  test('writes the stream to a private temp file with its SHA-256 and size', async () => {
    const sub = await mkdtemp(join(dir, 'ok-'))
    const data = randomBytes(300_000)
    const spool = await spoolToFile(chunks(data, 7000), {
      dir: sub,
      maxBytes: data.length,
      onLimit: () => new Error('limit'),
    })
    assert.equal(spool.bytes, data.length)
    assert.equal(spool.sha256, sha(data))
    assert.ok(spool.path, 'a body over memorySpoolBytes goes to disk')
    assert.equal(spool.buffer, undefined)
    assert.deepEqual(await readFile(spool.path), data)
    assert.match(spool.path, new RegExp(`fg-.+-${process.pid}-[0-9a-f]{16}\\.part$`))
    await removeSpool(spool)
    assert.deepEqual(await readdir(sub), [])
  })

  test('a body of many write batches arrives whole and in order, from chunks of any size', async () => {
    const sub = await mkdtemp(join(dir, 'batches-'))
    const data = randomBytes(spoolWriteBatchBytes * 9 + 12_345)
    for (const size of [65_536, 1_000, spoolWriteBatchBytes * 3]) {
      const spool = await spoolToFile(chunks(data, size), {
        dir: sub,
        maxBytes: 1e9,
        onLimit: () => new Error('limit'),
      })
      assert.equal(spool.bytes, data.length)
      assert.equal(spool.sha256, sha(data))
      assert.ok(spool.path)
      assert.ok((await readFile(spool.path)).equals(data), `chunks of ${size}`)
      await removeSpool(spool)
    }
    assert.deepEqual(await readdir(sub), [])
  })

  test('holds at most two write batches: the source waits while the disk is behind', async () => {
    const sub = await mkdtemp(join(dir, 'backpressure-'))
    const chunk = Buffer.alloc(65_536, 1)
    let pushed = 0
    let maxAhead = 0
    const total = 200
    /** The spill file's size right now (synchronously: no write completes while it is read). */
    const onDisk = () => {
      const name = readdirSync(sub)[0]
      return name ? statSync(join(sub, name)).size : 0
    }
    const source = new Readable({
      // Each pull is the spool asking for more: what was pushed and is not on disk yet is held in
      // memory at that moment (a write in progress counts as held, an overestimate).
      read() {
        maxAhead = Math.max(maxAhead, pushed * chunk.length - onDisk())
        pushed++
        this.push(pushed > total ? null : chunk)
      },
    })
    const spool = await spoolToFile(source, { dir: sub, maxBytes: 1e9, onLimit: () => new Error('limit') })
    assert.equal(spool.bytes, total * chunk.length)
    // Held: the batch being written and the one filling, plus the chunks in the source's own buffer
    // and the memory threshold's chunk. Without backpressure the source would run the whole 13 MB
    // ahead of the disk.
    assert.ok(maxAhead <= 4 * spoolWriteBatchBytes, `ahead of the disk: ${maxAhead} bytes`)
    await removeSpool(spool)
  })

  test('while the mirror is full, what the spool holds goes to disk at once, not when its batch fills', async () => {
    const sub = await mkdtemp(join(dir, 'mirror-'))
    const data = randomBytes(memorySpoolBytes + 6 * 16_384)
    const source = new PassThrough()
    // A mirror that takes nothing until released: its buffer fills after a few chunks.
    const held: (() => void)[] = []
    const mirrored: Buffer[] = []
    const mirror = new Writable({
      highWaterMark: 32_768,
      write(chunk: Buffer, _enc, done) {
        mirrored.push(chunk)
        held.push(done)
      },
    })
    const spooling = spoolToFile(source, {
      dir: sub,
      maxBytes: 1e9,
      onLimit: () => new Error('limit'),
      mirror: () => mirror,
    })
    // Written chunk by chunk until the spool stops reading (the mirror refused more).
    let written = 0
    while (written < data.length && !source.isPaused()) {
      source.write(data.subarray(written, written + 16_384))
      written = Math.min(data.length, written + 16_384)
      await new Promise((r) => setImmediate(r))
    }
    /**
     * The spill file's size once it holds `expected` bytes, or after two seconds: the writes go
     * through the thread pool, so on a loaded machine they may land a little after the spool asked.
     * While the spool waits for the mirror nothing else can write them: without the early write
     * the file stays empty however long this waits.
     */
    const onDisk = async (expected: number) => {
      let size = 0
      for (const deadline = Date.now() + 2_000; size !== expected && Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 20))
        const name = readdirSync(sub)[0]
        size = name ? statSync(join(sub, name)).size : 0
      }
      return size
    }
    assert.ok(source.isPaused() && held.length > 0, 'the mirror refused more and the spool waits for it')
    const read = written - source.readableLength
    assert.ok(read > memorySpoolBytes && read < spoolWriteBatchBytes, `read ${read}`)
    // Less than a batch was read, and all of it is on disk while the spool waits for the mirror.
    assert.equal(await onDisk(read), read)
    source.end(data.subarray(written))
    const release = setInterval(() => {
      for (const done of held.splice(0)) done()
    }, 5)
    try {
      const spool = await spooling
      assert.ok(spool.path)
      assert.deepEqual(await readFile(spool.path), data)
      assert.deepEqual(Buffer.concat(mirrored), data)
      await removeSpool(spool)
    } finally {
      clearInterval(release)
    }
  })

  test('keeps a body up to memorySpoolBytes in memory: no file at all', async () => {
    const sub = await mkdtemp(join(dir, 'mem-'))
    const data = randomBytes(memorySpoolBytes)
    const spool = await spoolToFile(chunks(data, 1000), { dir: sub, maxBytes: 1e9, onLimit: () => new Error('limit') })
    assert.equal(spool.path, undefined)
    assert.deepEqual(spool.buffer, data)
    assert.equal(spool.sha256, sha(data))
    assert.deepEqual(await readdir(sub), [])
    // One byte more spills everything to disk, in order.
    const more = randomBytes(memorySpoolBytes + 1)
    const big = await spoolToFile(chunks(more, 1000), { dir: sub, maxBytes: 1e9, onLimit: () => new Error('limit') })
    assert.ok(big.path)
    assert.deepEqual(await readFile(big.path), more)
    await removeSpool(big)
    assert.deepEqual(await readdir(sub), [])
  })

  test('refuses limit + 1 bytes with onLimit() and removes the partial file', async () => {
    const sub = await mkdtemp(join(dir, 'limit-'))
    await assert.rejects(
      spoolToFile(chunks(Buffer.alloc(1001), 100), {
        dir: sub,
        maxBytes: 1000,
        onLimit: () => errors.fileTooLarge('glm', 1000),
      }),
      (err: unknown) => isAppError(err) && err.code === 'FILE_TOO_LARGE' && err.extensions.limit_bytes === 1000,
    )
    assert.deepEqual(await readdir(sub), [])
  })

  test('a source a parser truncated at its own limit is refused, not taken as whole', async () => {
    const sub = await mkdtemp(join(dir, 'truncated-'))
    const source = Object.assign(chunks(Buffer.alloc(500), 100), { truncated: false })
    source.on('end', () => {
      source.truncated = true
    })
    await assert.rejects(
      spoolToFile(source, { dir: sub, maxBytes: 10_000, onLimit: () => errors.fileTooLarge('kimi', 10_000) }),
      (err: unknown) => isAppError(err) && err.code === 'FILE_TOO_LARGE',
    )
    assert.deepEqual(await readdir(sub), [])
  })

  test('a failing source (client abort) rejects and leaves no file, also mid-write', async () => {
    const sub = await mkdtemp(join(dir, 'abort-'))
    const source = new PassThrough()
    const pending = spoolToFile(source, { dir: sub, maxBytes: 1e9, onLimit: () => new Error('limit') })
    source.write(Buffer.alloc(10_000))
    // at once: before the spool has even made its directory
    source.destroy(new Error('aborted'))
    await assert.rejects(pending, /aborted/)
    const late = new PassThrough()
    const writing = spoolToFile(late, { dir: sub, maxBytes: 1e9, onLimit: () => new Error('limit') })
    late.write(Buffer.alloc(10_000))
    setTimeout(() => late.destroy(new Error('aborted late')), 20)
    await assert.rejects(writing, /aborted late/)
    assert.deepEqual(await readdir(sub), [])
  })
})

describe('writeAll', () => {
  test('continues a short write where it stopped, and surfaces the error a retry meets', async () => {
    const disk = Buffer.alloc(20)
    const calls: string[] = []
    const file = {
      // Takes only the first 7 bytes of the batch, as libuv reports a write the disk cut short.
      writev: async (buffers: readonly NodeJS.ArrayBufferView[], position?: number | null) => {
        const all = Buffer.concat(buffers as Buffer[])
        all.copy(disk, position ?? 0, 0, 7)
        calls.push(`writev ${position}`)
        return { bytesWritten: 7, buffers: buffers as NodeJS.ArrayBufferView[] }
      },
      write: async (buffer: Buffer, offset: number, length: number, position: number) => {
        buffer.copy(disk, position, offset, offset + length)
        calls.push(`write ${position} ${length}`)
        return { bytesWritten: length, buffer }
      },
    }
    await writeAll(file as never, [Buffer.from('hello '), Buffer.from('world')], 11, 3)
    assert.equal(disk.subarray(3, 14).toString(), 'hello world')
    assert.deepEqual(calls, ['writev 3', 'write 10 4'])
    const full = {
      ...file,
      write: async () => {
        throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })
      },
    }
    await assert.rejects(writeAll(full as never, [Buffer.from('hello world')], 11, 0), /no space/)
  })
})

describe('HashCounter', () => {
  test('passes bytes through while hashing and counting', async () => {
    const counter = new HashCounter(100, () => new Error('limit'))
    const out: Buffer[] = []
    for await (const c of counter.pass(Readable.from([Buffer.from('hel'), Buffer.from('lo')]))) out.push(c)
    assert.equal(Buffer.concat(out).toString(), 'hello')
    assert.equal(counter.bytes, 5)
    assert.equal(counter.digest(), sha(Buffer.from('hello')))
    assert.equal(counter.failure, undefined)
  })

  test('fails with onLimit() at limit + 1 bytes, before passing them on', async () => {
    const counter = new HashCounter(4, () => errors.fileTooLarge('kimi', 4))
    const out: Buffer[] = []
    await assert.rejects(
      async () => {
        for await (const c of counter.pass(Readable.from([Buffer.from('abc'), Buffer.from('de')]))) out.push(c)
      },
      (err: unknown) => isAppError(err) && err.code === 'FILE_TOO_LARGE',
    )
    assert.equal(Buffer.concat(out).toString(), 'abc')
    assert.ok(counter.failure && isAppError(counter.failure))
  })
})

describe('HashCounter.senderFailure', () => {
  test("tells the sender's failures (limit, broken source, slow while the consumer timed out) from none", async () => {
    const limited = new HashCounter(1, () => errors.fileTooLarge('kimi', 1))
    await assert.rejects(async () => {
      for await (const _ of limited.pass(Readable.from([Buffer.from('ab')]))) void _
    })
    assert.equal((limited.senderFailure(false) as { code?: string }).code, 'FILE_TOO_LARGE')

    const broken = new HashCounter(100, () => new Error('limit'))
    async function* breaks() {
      yield Buffer.from('a')
      throw new Error('Unexpected end of multipart data')
    }
    await assert.rejects(async () => {
      for await (const _ of broken.pass(breaks())) void _
    })
    const failure = broken.senderFailure(false)
    assert.ok(isAppError(failure) && failure.status === 400, "a broken body is the client's 400")

    const slow = new HashCounter(100, () => new Error('limit'))
    let release: () => void = () => {}
    async function* stalls() {
      yield Buffer.from('a')
      await new Promise<void>((resolve) => {
        release = resolve
      })
    }
    const chunks = slow.pass(stalls())
    await chunks.next()
    const pending = chunks.next()
    await new Promise((r) => setImmediate(r))
    assert.equal(slow.waitingForSource, true)
    assert.equal(slow.senderFailure(false), undefined, 'waiting alone is no failure')
    assert.match(String(slow.senderFailure(true)?.message), /too slowly/)
    release()
    await pending
    assert.equal(slow.waitingForSource, false)
    assert.equal(slow.senderFailure(true), undefined, "not waiting: a timeout is the consumer's")
  })
})

describe('removeStaleSpools', () => {
  test('removes spools of gone processes of this host at any age, old ones of other hosts, never a live peer or foreign files', async () => {
    const sub = await mkdtemp(join(dir, 'stale-'))
    const host = hostname().replace(/[^A-Za-z0-9_.-]/g, '_')
    const old = new Date(Date.now() - 3_600_000)
    const names = {
      deadOld: `fg-${host}-999999999-${'a'.repeat(16)}.part`,
      deadYoung: `fg-${host}-999999998-${'b'.repeat(16)}.part`,
      livePeerOld: `fg-${host}-${process.ppid}-${'c'.repeat(16)}.part`,
      otherHostOld: `fg-other-host-123-${'d'.repeat(16)}.part`,
      otherHostYoung: `fg-other-host-124-${'e'.repeat(16)}.part`,
      ownYoung: `fg-${host}-${process.pid}-${'f'.repeat(16)}.part`,
      foreign: 'notes.txt',
    }
    for (const name of Object.values(names)) await writeFile(join(sub, name), 'x')
    for (const name of [names.deadOld, names.livePeerOld, names.otherHostOld, names.foreign]) {
      await utimes(join(sub, name), old, old)
    }
    const removed = await removeStaleSpools(sub, 60_000)
    assert.equal(removed, 3)
    assert.deepEqual(
      (await readdir(sub)).sort(),
      [names.foreign, names.livePeerOld, names.otherHostYoung, names.ownYoung].sort(),
    )
    assert.equal(await removeStaleSpools(join(sub, 'missing'), 1000), 0)
  })
})

describe('prepareSpoolDir', () => {
  test('creates the directory 0700', async () => {
    const fresh = join(dir, 'fresh', 'spool')
    await prepareSpoolDir(fresh)
    assert.equal((await stat(fresh)).mode & 0o777, 0o700)
  })

  test('refuses a directory other users can write to, or a symlink', async () => {
    const open = join(dir, 'open-to-all')
    await mkdir(open)
    await chmod(open, 0o777)
    await assert.rejects(prepareSpoolDir(open), /UPLOAD_TMP_DIR .* is writable by other users \(mode 777\)/)
    await chmod(open, 0o770)
    await assert.rejects(prepareSpoolDir(open), /writable by other users/)
    const link = join(dir, 'link')
    await symlink(await mkdtemp(join(dir, 'target-')), link)
    await assert.rejects(prepareSpoolDir(link), /is not a directory/)
  })

  test('refuses a directory owned by another user', async (t) => {
    // Only root can give a directory away; elsewhere the case cannot be set up.
    if (process.getuid?.() !== 0) return t.skip('needs root to chown a directory to another user')
    const foreign = join(dir, 'foreign')
    await mkdir(foreign, { mode: 0o700 })
    await chown(foreign, 65534, 65534)
    await assert.rejects(prepareSpoolDir(foreign), /is owned by uid 65534, not by this process \(uid 0\)/)
  })
})
