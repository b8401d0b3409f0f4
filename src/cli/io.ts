/** What a CLI command writes to and returns: streams to write on, and the documented exit codes. */

/** Exit codes scripts can rely on (also in `filegate --help`). */
export const exitCodes = {
  ok: 0,
  /** The command ran and something failed: a doctor check, a cleanup job, a migration. */
  failed: 1,
  /** The command line is wrong: unknown command or option, a bad argument. */
  usage: 2,
  /** The environment is not a valid filegate configuration. */
  config: 3,
} as const

export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean }
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }
  /** The environment the configuration is read from (process.env in the executable). */
  env: Record<string, string | undefined>
}

/** A failure that ends the command with `exitCode` and `message` on stderr. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = exitCodes.failed,
  ) {
    super(message)
    this.name = 'CliError'
  }
}

export const writeJson = (io: CliIo, value: unknown) => io.stdout.write(`${JSON.stringify(value, null, 2)}\n`)
