/**
 * The `filegate` command line (commander): one sub-command per operator job. runCli returns the
 * exit code instead of exiting, so the executable (main.ts) and `npm run db:migrate` share it.
 * Each command's module (and the configuration's) is loaded when the command runs: `--help`, a
 * usage error or `keys hash` answer without loading the store, the providers and the S3 client.
 */
import { readFileSync } from 'node:fs'
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import type { Config } from '../config.js'
import { cleanupJobs, defaultJobs } from '../domain/cleanup-jobs.js'
import { CliError, type CliIo, exitCodes } from './io.js'

const exitCodeHelp = `
Exit codes:
  0  success
  1  the command ran and something failed (a doctor check, a cleanup job, the migration)
  2  usage error (unknown command or option, bad argument)
  3  the environment is not a valid filegate configuration

Configuration comes from the environment, as for the service (README, .env.example).`

function version(): string {
  for (const path of ['../../package.json', '../../../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as { version: string }).version
    } catch {
      // The other layout (sources via tsx, or the compiled dist/).
    }
  }
  return 'unknown'
}

const jsonOption = () => new Option('--json', 'print the result as JSON on stdout')

function positiveSeconds(raw: string): string {
  if (!/^\d+(\.\d+)?$/.test(raw) || Number(raw) <= 0) throw new InvalidArgumentError('a positive number of seconds')
  return raw
}

export async function runCli(argv: string[], io: CliIo & { stdin: AsyncIterable<Buffer | string> }): Promise<number> {
  let code: number = exitCodes.ok
  const config = async (): Promise<Config> => {
    const { ConfigError, loadConfig } = await import('../config.js')
    try {
      return loadConfig(io.env)
    } catch (err) {
      if (err instanceof ConfigError) throw new CliError(`filegate: ${err.message}`, exitCodes.config)
      throw err
    }
  }

  const program = new Command('filegate')
    .description('Operate a filegate deployment: migrations, cleanup sweeps, API keys, health checks')
    .version(version(), '-V, --version')
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', exitCodeHelp)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })

  program
    .command('migrate')
    .description('apply pending database migrations (what the service does at start), then exit')
    .addOption(jsonOption())
    .action(async (opts) => {
      const { migrateCommand } = await import('./migrate.js')
      code = await migrateCommand(await config(), io, opts)
    })

  program
    .command('cleanup')
    .description(
      'run the cleanup sweeps now, in this process, against the configured database and providers ' +
        '(same code and leases as the scheduled sweeps; works while the service is down)',
    )
    .option('--dry-run', 'report the candidates, change nothing')
    .option('--jobs <list>', `comma list of ${cleanupJobs.join(', ')}`, defaultJobs.join(','))
    .option('--limit <n>', 'at most this many candidates per job')
    .option('--verbose', 'log each job on stderr')
    .addOption(jsonOption())
    .addHelpText('after', '\nA terminal gets a progress bar on stderr; otherwise one line per job on stdout.')
    .action(async (opts) => {
      const { cleanupCommand } = await import('./cleanup.js')
      code = await cleanupCommand(await config(), io, opts)
    })

  const keys = program
    .command('keys')
    .description('keys kept in the database (create, list, revoke, rotate) and API_KEYS entries (hash, new)')
  keys
    .command('hash')
    .description('print the sha256:<hex> form of a key for API_KEYS (tenant:sha256:<hex>)')
    .argument('<key>', 'the key, or - to read it from stdin (keeps it out of shell history)')
    .addOption(jsonOption())
    .action(async (key: string, opts) => {
      const { keysHashCommand } = await import('./env-keys.js')
      code = await keysHashCommand(key, io, opts)
    })
  keys
    .command('create')
    .description('create a key in the database and print it (shown once; only its SHA-256 is kept)')
    .requiredOption('--tenant <tenant>', 'the tenant the key acts for')
    .option('--name <name>', 'a label for people')
    .option('--scopes <list>', 'comma list of files:read, files:write, keys, admin', 'files:read,files:write')
    .option('--providers <list>', 'comma list of the providers it may upload to (default: every provider)')
    .option('--expires-in <seconds>', 'seconds until it expires (default: never)')
    .addOption(jsonOption())
    .action(async (opts) => {
      const { keysCreateCommand } = await import('./keys.js')
      code = await keysCreateCommand(await config(), io, opts)
    })
  keys
    .command('list')
    .description("list the keys in the database (every tenant's, or --tenant's), newest first")
    .option('--tenant <tenant>', 'only this tenant')
    .addOption(jsonOption())
    .action(async (opts) => {
      const { keysListCommand } = await import('./keys.js')
      code = await keysListCommand(await config(), io, opts)
    })
  keys
    .command('revoke')
    .description('revoke a key: every replica refuses it within a second')
    .argument('<id>', 'the key id (the part after fg_)')
    .addOption(jsonOption())
    .action(async (id: string, opts) => {
      const { keysRevokeCommand } = await import('./keys.js')
      code = await keysRevokeCommand(await config(), io, id, opts)
    })
  keys
    .command('rotate')
    .description('give a key a new secret (same id) and print it; the old one works for --grace-seconds')
    .argument('<id>', 'the key id (the part after fg_)')
    .option('--grace-seconds <n>', 'how long the old secret keeps working (0 to 86400)', '0')
    .addOption(jsonOption())
    .action(async (id: string, opts) => {
      const { keysRotateCommand } = await import('./keys.js')
      code = await keysRotateCommand(await config(), io, id, opts)
    })
  keys
    .command('new')
    .description('make a strong random key (256 bits) for a tenant and print its API_KEYS entry')
    .argument('<tenant>', 'the tenant, or * for an admin key')
    .addOption(jsonOption())
    .action(async (tenant: string, opts) => {
      const { keysNewCommand } = await import('./env-keys.js')
      code = keysNewCommand(tenant, io, opts)
    })

  program
    .command('doctor')
    .description(
      'check the configuration, the database and schema version, and each configured provider key ' +
        '(one authenticated list call); one line per check',
    )
    .option('--timeout <seconds>', 'per check', positiveSeconds, '10')
    .addOption(jsonOption())
    .action(async (opts) => {
      const { doctorCommand } = await import('./doctor.js')
      code = await doctorCommand(io, opts)
    })

  // Sub-commands inherit exitOverride and the output streams from their parent when created.
  const withExitCodes = (command: Command): void => {
    for (const sub of command.commands) {
      sub.addHelpText('after', exitCodeHelp)
      withExitCodes(sub)
    }
  }
  withExitCodes(program)

  try {
    await program.parseAsync(argv, { from: 'user' })
    return code
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version "fail" with exit code 0; everything else commander refuses is usage.
      return err.exitCode === 0 ? exitCodes.ok : exitCodes.usage
    }
    if (err instanceof CliError) {
      io.stderr.write(`${err.message}\n`)
      return err.exitCode
    }
    io.stderr.write(`filegate: ${err instanceof Error ? err.message : String(err)}\n`)
    return exitCodes.failed
  }
}
